"""Mixed precision for training: the same rule for every task.

``train.fp16`` / ``train.bf16`` ask for mixed precision. What cannot work is refused with the
fix; what only cannot *speed up* here falls back, loudly:

* float16 on a T5-family model (mT5): refused, its activations overflow to NaN;
* float16 without a CUDA GPU: refused, there is nothing to run it on;
* bfloat16 without a GPU that has it: a warning, and float32, so a recipe written for a GPU
  (``configs/summarizer/mt5-small.yaml``) still runs on a laptop, slowly but correctly.

Example:
    >>> from training.config import TrainConfig
    >>> training_precision(TrainConfig(), "bert")
    'float32'
"""

from __future__ import annotations

import logging
from typing import Literal

import torch

from inference.loading import T5_FAMILY
from training.config import ConfigError, TrainConfig

log = logging.getLogger(__name__)

Precision = Literal["float32", "float16", "bfloat16"]


def training_precision(train_cfg: TrainConfig, model_type: str) -> Precision:
    """The precision training will use for a ``model_type`` model under ``train_cfg``.

    Example:
        >>> from training.config import TrainConfig
        >>> training_precision(TrainConfig(fp16=True), "mt5")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        training.config.ConfigError: train.fp16: mt5 models overflow to NaN in float16 ...; use train.bf16=true ...
    """
    if train_cfg.fp16 and model_type in T5_FAMILY:
        raise ConfigError(
            f"train.fp16: {model_type} models overflow to NaN in float16 (their activations exceed "
            "its range); use train.bf16=true on a GPU that supports bfloat16, or train in float32 (train.fp16=false)"
        )
    if train_cfg.fp16 and not torch.cuda.is_available():
        raise ConfigError(
            "train.fp16: float16 mixed precision needs a CUDA GPU and none is visible; set train.fp16=false"
        )
    if train_cfg.bf16 and not (torch.cuda.is_available() and torch.cuda.is_bf16_supported()):
        log.warning("train.bf16: no GPU with bfloat16 support here (NVIDIA Ampere or newer); training in float32")
        return "float32"
    return "float16" if train_cfg.fp16 else "bfloat16" if train_cfg.bf16 else "float32"

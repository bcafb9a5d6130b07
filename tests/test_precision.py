"""Mixed precision in training: one rule for the classifier and the summarizer."""

from __future__ import annotations

import pytest
import torch

from training.config import ConfigError, TrainConfig
from training.precision import training_precision


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the fallback on machines without a GPU")
@pytest.mark.parametrize("model_type", ["mt5", "bert"])
def test_bf16_falls_back_to_float32_without_a_gpu_for_every_task(model_type, caplog) -> None:
    # A GPU recipe (mt5-small.yaml has bf16: true) still runs on a laptop, and says so.
    assert training_precision(TrainConfig(bf16=True), model_type) == "float32"
    assert "train.bf16" in caplog.text and "float32" in caplog.text


def test_fp16_is_refused_for_t5_models_wherever_they_train() -> None:
    with pytest.raises(ConfigError, match="train.fp16: mt5 models overflow to NaN"):
        training_precision(TrainConfig(fp16=True), "mt5")


def test_float32_is_the_default() -> None:
    assert training_precision(TrainConfig(), "bert") == "float32"

"""Fast CPU engines behind ``Classifier`` and ``Summarizer``: ONNX Runtime and CTranslate2.

``Classifier.from_pretrained(..., backend="onnx", quantize="int8")`` and
``Summarizer.from_pretrained(..., backend="ctranslate2", quantize="int8")`` come here;
``backend="fast"`` names each model's fastest engine, so one flag serves both models of
``khabar predict --backend fast``. The model
directory is converted on first use and the result cached beside it (see
:mod:`inference.fast.cache`); tokenization, normalization, batching and length sorting stay in
the classes, so both backends see exactly the same token ids.

The engines are the optional extra ``pip install khabar[fast]``; this module imports them only
when an engine is asked for.

Example:
    >>> import tempfile, torch
    >>> from training.tiny import build_tiny_classifier
    >>> engine = classifier_engine(build_tiny_classifier(tempfile.mkdtemp()), "onnx", "int8")
    >>> ids = torch.tensor([[2, 40, 41, 3]])
    >>> engine(ids, torch.ones_like(ids)).dtype
    torch.float32
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch

from inference.backends import CLASSIFIER_BACKENDS, SUMMARIZER_BACKENDS

__all__ = ["CLASSIFIER_BACKENDS", "SUMMARIZER_BACKENDS", "classifier_engine", "summarizer_engine"]


class ClassifierEngine(Protocol):
    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor: ...


class SummarizerEngine(Protocol):
    def generate(self, input_ids: list[list[int]], generation: dict) -> list[list[int]]: ...


def classifier_engine(model_dir: str | Path, backend: str, quantize: str | None = "int8") -> ClassifierEngine:
    """An engine returning the classifier's logits for ``(input_ids, attention_mask)``.

    Example:
        >>> try:
        ...     classifier_engine("models/tiny/classifier", "tensorrt", None)
        ... except ValueError as err:
        ...     print(err)
        unknown classifier backend 'tensorrt'; choose one of: torch, onnx, fast, auto
    """
    _check(backend, CLASSIFIER_BACKENDS, "classifier")
    from inference.fast.onnx_classifier import OnnxClassifier

    return OnnxClassifier.from_model_dir(model_dir, quantize)


def summarizer_engine(model_dir: str | Path, backend: str, quantize: str | None = "int8") -> SummarizerEngine:
    """An engine whose ``generate(input_ids, generation)`` returns summary token ids.

    Example:
        >>> try:
        ...     summarizer_engine("models/tiny/summarizer", "onnx", None)
        ... except ValueError as err:
        ...     print(err)
        unknown summarizer backend 'onnx'; choose one of: torch, ctranslate2, fast, auto
    """
    _check(backend, SUMMARIZER_BACKENDS, "summarizer")
    from inference.fast.ct2_summarizer import Ct2Summarizer

    return Ct2Summarizer.from_model_dir(model_dir, quantize)


def _check(backend: str, known: tuple[str, ...], task: str) -> None:
    # "torch" is served by the classes themselves through transformers; it is among the known
    # names so the error for an unknown one shows every choice a user has.
    if backend not in known:
        raise ValueError(f"unknown {task} backend {backend!r}; choose one of: {', '.join(known)}")
    if backend == "torch":
        raise ValueError(f"the torch {task} backend runs in transformers itself and has no engine here")

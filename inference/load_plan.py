"""What both model classes decide before loading weights: config, tokenizer, engine, device, precision.

:meth:`Classifier.from_pretrained <inference.classifier.Classifier.from_pretrained>` and
:meth:`Summarizer.from_pretrained <inference.summarizer.Summarizer.from_pretrained>` call
:func:`plan_load` and then load their own weights or engine with the plan; the settings are
checked here, before any weights are read.

Example:
    >>> import tempfile
    >>> from training.tiny import build_tiny_classifier
    >>> plan = plan_load("classifier", build_tiny_classifier(tempfile.mkdtemp()), "cpu", "float32", None, "torch")
    >>> plan.backend, plan.dtype, plan.precision
    ('torch', torch.float32, 'torch float32')
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from inference.backends import unfollowed_settings
from inference.devices import DeviceError, resolve_device
from inference.loading import (
    ModelKind,
    ModelNotFoundError,
    is_local,
    load_config_and_tokenizer,
    model_max_length,
    normalization_folder,
    saved_generation_config,
    text_digits,
    text_normalization_version,
)
from inference.normalize import load_normalization
from inference.precision import auto_engine, model_dtype, precision_label


@dataclass(frozen=True)
class LoadPlan:
    """How to load one model: its ``config`` and ``tokenizer``, and the engine, device and precision.

    ``dtype`` is the torch weights' precision (``None`` for a fast engine, which takes ``quantize``);
    ``auto`` says ``dtype="auto"`` (or, for a fast engine, ``backend="auto"``) chose it, for the ``precision`` label.

    Example:
        >>> plan = LoadPlan("org/m", None, None, "onnx", torch.device("cpu"), None, "int8", False)
        >>> plan.precision
        'onnx int8'
    """

    source: str
    config: object
    tokenizer: object
    backend: str
    device: torch.device
    dtype: torch.dtype | None
    quantize: str | None
    auto: bool
    decoding: object = None  # a local summarizer's saved GenerationConfig, read once here

    @property
    def precision(self) -> str:
        """The engine and number format, e.g. ``"torch bfloat16 (auto)"``."""
        return precision_label(self.backend, self.dtype, self.quantize, self.auto)

    def model_settings(self) -> dict:
        """The keyword arguments both model classes take from the loaded model (lengths, text policy, names).

        Example:
            >>> import tempfile
            >>> from training.tiny import build_tiny_classifier
            >>> plan = plan_load("classifier", build_tiny_classifier(tempfile.mkdtemp()), "cpu", None, None, "torch")
            >>> sorted(plan.model_settings())
            ['device', 'digits', 'max_length', 'name', 'normalization_version', 'precision']
        """
        return {
            "max_length": model_max_length(self.tokenizer, self.config),
            "digits": text_digits(self.source),
            "normalization_version": text_normalization_version(self.source),
            "device": self.device,
            "name": self.source,
            "precision": self.precision,
        }


def plan_load(
    kind: ModelKind,
    path_or_id: str | os.PathLike,
    device: str | torch.device | None,
    dtype: str | torch.dtype | None,
    quantize: str | None,
    backend: str,
) -> LoadPlan:
    """Read a ``kind`` model's config and tokenizer and choose its engine, device and precision.

    ``backend="auto"`` becomes the fastest engine installed here (a fast engine then runs int8);
    ``"torch"`` takes ``device`` and ``dtype`` (``"auto"`` as :mod:`inference.precision` says);
    any other backend is a fast CPU engine (:func:`engine_device`).

    Example:
        >>> import tempfile
        >>> from training.tiny import build_tiny_summarizer
        >>> plan_load("summarizer", build_tiny_summarizer(tempfile.mkdtemp()), "cpu", None, "int8", "torch").precision
        'torch int8'
    """
    if quantize not in (None, "int8"):  # checked before backend="auto" picks an engine that is int8 anyway
        raise ValueError(f"unknown quantize {quantize!r}; choose 'int8' or None")
    if not isinstance(path_or_id, (str, os.PathLike)):
        raise TypeError(f"a {kind} loads from a directory path or a hub id, not {type(path_or_id).__name__}")
    source = str(path_or_id)
    if Path(source).expanduser().is_file():
        raise ModelNotFoundError(f"{source} is a file; give the {kind}'s directory")
    config, tokenizer = load_config_and_tokenizer(source, kind)
    local = is_local(source)
    # Read now, so a damaged normalization.json stops the load before weights are read or converted.
    load_normalization(normalization_folder(source))
    # Read now, so a damaged generation_config.json stops the load on every backend.
    decoding = saved_generation_config(source, config) if kind == "summarizer" and local else None
    # Saved settings a fast engine would ignore: auto then stays on torch, an explicit engine is refused.
    unfollowed = unfollowed_settings(decoding.to_diff_dict()) if decoding else []
    chose_engine = backend == "auto"
    if chose_engine:
        backend = auto_engine(kind, resolve_device(device), local, dtype, config.model_type, unfollowed)
        quantize = quantize if backend == "torch" else "int8"
    if backend == "torch":
        target = resolve_device(device)
        chosen, auto = model_dtype(kind, dtype, target, config.model_type, quantize)
    else:
        _check_engine_follows(unfollowed, backend, source)
        target = engine_device(device, None if dtype == "auto" else dtype, backend, source)
        chosen, auto = None, chose_engine
    return LoadPlan(source, config, tokenizer, backend, target, chosen, quantize, auto, decoding)


def _check_engine_follows(unfollowed: list[str], backend: str, source: str) -> None:
    """Refuse a fast engine for a summarizer whose saved decoding it would ignore (the answers would differ)."""
    if unfollowed:
        raise ValueError(
            f"{source}: its saved decoding (generation_config.json) sets {', '.join(unfollowed)}, which the "
            f"{backend} backend cannot apply; load it with backend='torch' (--backend torch), or remove them there"
        )


def engine_device(
    device: str | torch.device | None, dtype: str | torch.dtype | None, backend: str, path_or_id: str
) -> torch.device:
    """The device of a fast engine (``backend`` other than ``"torch"``): always the CPU.

    Such engines read a local directory and pick their precision from ``quantize``, so an
    explicit GPU, a ``dtype`` or a hub id is refused with the fix.

    Example:
        >>> engine_device("auto", None, "onnx", ".")
        device(type='cpu')
        >>> engine_device("cpu", "bf16", "onnx", ".")
        Traceback (most recent call last):
        ...
        ValueError: dtype is for backend='torch'; backend 'onnx' takes quantize='int8' or None
    """
    if device not in (None, "auto") and resolve_device(device).type != "cpu":
        raise DeviceError(f"backend {backend!r} runs on the CPU; use device='cpu' or backend='torch'")
    if dtype is not None:
        raise ValueError(f"dtype is for backend='torch'; backend {backend!r} takes quantize='int8' or None")
    if not is_local(path_or_id):
        raise ValueError(f"backend {backend!r} needs a local model directory; download {path_or_id} first")
    return torch.device("cpu")

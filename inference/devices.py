"""Where a model runs and in what precision: the device and dtype policy of every backend.

The CPU's automatic precision (bfloat16 with AMX or AMD's AVX512-BF16, float32 elsewhere) is
measured and chosen in :mod:`inference.precision`; this module checks the device a user asks for
and the dtype a GPU or an explicit setting gives.

Example:
    >>> resolve_device("cpu")
    device(type='cpu')
    >>> resolve_dtype("bf16", torch.device("cpu"), "bert")
    torch.bfloat16
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch

logger = logging.getLogger(__name__)

# Models whose activations overflow float16 and produce empty or garbage output.
T5_FAMILY = ("t5", "mt5", "umt5", "longt5", "switch_transformers")
_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
}


class DeviceError(ValueError):
    """A device that does not exist here, or a setting it cannot run.

    Example:
        >>> issubclass(DeviceError, ValueError)
        True
    """


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """The torch device for ``device``: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
        >>> resolve_device("gpu")
        Traceback (most recent call last):
        ...
        inference.devices.DeviceError: unknown device 'gpu': use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        target = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise DeviceError(f"unknown device {device!r}: use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'") from None
    if target.type == "cpu":
        return target
    if target.type == "cuda":
        return _checked_cuda(target)
    if target.type == "mps":
        if not torch.backends.mps.is_available():
            raise DeviceError("device 'mps': Apple MPS is not available here; use device='cpu'")
        return target
    raise DeviceError(f"unknown device {device!r}: use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")


def _checked_cuda(target: torch.device) -> torch.device:
    if not torch.cuda.is_available():
        raise DeviceError(f"device '{target}': CUDA is not available here (no GPU, or a CPU build of torch); use 'cpu'")
    count = torch.cuda.device_count()
    if target.index is not None and target.index >= count:
        raise DeviceError(f"device '{target}': this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    return target


def resolve_dtype(
    dtype: str | torch.dtype | None, device: torch.device, model_type: str, quantize: str | None = None
) -> torch.dtype:
    """The weights' precision: ``dtype`` if given, else half precision on a GPU and float32 elsewhere.

    On a GPU the default is bfloat16 where the GPU supports it; otherwise float16, except for
    T5-family models (mT5), whose activations overflow float16: they stay in float32 and an
    explicit float16 is refused. ``quantize="int8"`` needs float32 weights on the CPU.

    Example:
        >>> resolve_dtype(None, torch.device("cpu"), "bert")
        torch.float32
        >>> resolve_dtype("fp16", torch.device("cpu"), "mt5")
        Traceback (most recent call last):
        ...
        ValueError: dtype float16 breaks mt5 models (activations overflow, ...); use 'bfloat16' or 'float32'
    """
    t5_family = model_type in T5_FAMILY
    if quantize is not None:
        return _int8_dtype(dtype, device, quantize)
    if dtype is None or dtype == "auto":
        if device.type != "cuda":
            return torch.float32
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32 if t5_family else torch.float16
    chosen = dtype if isinstance(dtype, torch.dtype) else _DTYPES.get(str(dtype).lower())
    if chosen not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"unknown dtype {dtype!r}; choose float32, bfloat16 or float16")
    if chosen == torch.float16 and t5_family:
        raise ValueError(
            f"dtype float16 breaks {model_type} models (activations overflow, output is empty or garbage); "
            "use 'bfloat16' or 'float32'"
        )
    return chosen


def _int8_dtype(dtype: str | torch.dtype | None, device: torch.device, quantize: str) -> torch.dtype:
    if quantize != "int8":
        raise ValueError(f"unknown quantize {quantize!r}; choose 'int8' or None")
    if device.type != "cpu":
        raise DeviceError(
            f"quantize='int8' is dynamic quantization for the CPU: add device='cpu', or leave it out on {device} "
            "(half precision is the GPU default)"
        )
    if dtype not in (None, "auto", torch.float32, "float32", "fp32"):
        raise ValueError(f"quantize='int8' starts from float32 weights; leave dtype out (got {dtype!r})")
    return torch.float32


def halved_while_out_of_memory(run: Callable[[Sequence], Any], batch: Sequence, join: Callable, what: str) -> Any:
    """``run(batch)``, split in halves (``join`` puts the answers back together) while a GPU runs out
    of memory: long beams of long articles, or two models sharing one GPU in ``khabar serve``.

    Example:
        >>> def two_at_most(items):
        ...     if len(items) > 2:
        ...         raise torch.OutOfMemoryError("simulated")
        ...     return [item * 10 for item in items]
        >>> halved_while_out_of_memory(two_at_most, [1, 2, 3, 4, 5], list.__add__, "articles")
        [10, 20, 30, 40, 50]
    """
    try:
        return run(batch)
    except torch.OutOfMemoryError:
        if len(batch) == 1:
            raise
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        logger.info("out of GPU memory at %d %s a batch; halving the batch", len(batch), what)
        half = len(batch) // 2
        first = halved_while_out_of_memory(run, batch[:half], join, what)
        return join(first, halved_while_out_of_memory(run, batch[half:], join, what))

"""Refuse a broken model directory at load time, in one line, before it gives wrong answers.

``transformers`` loads a directory without tokenizer files (falling back to a default
tokenizer), fills weights missing from the checkpoint (a classification head the config
promises) with random values, and happily loads NaN weights: each gives a run that succeeds
with meaningless output. Its own errors for a corrupted ``.safetensors`` file or a pickle
that is not plain weights are long and, for the pickle, advise loading it unsafely. The
checks here turn each into a :class:`BrokenModelError` naming the directory and the fix.

Example:
    >>> import tempfile
    >>> check_model_files(tempfile.mkdtemp())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    inference.model_checks.BrokenModelError: cannot load ...: no tokenizer files (...)
"""

from __future__ import annotations

import errno
import pickle
from pathlib import Path

import torch

# What save_pretrained writes for the tokenizers khabar's models use (fast or slow, BERT or mT5).
# What save_pretrained writes for a tokenizer (vocab.json: byte-level BPE ones such as RoBERTa's).
TOKENIZER_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
    "vocab.json",
)
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "*.safetensors.index.json", "pytorch_model.bin.index.json")


class BrokenModelError(ValueError):
    """A model directory that is incomplete or damaged; the message names what is wrong.

    Example:
        >>> issubclass(BrokenModelError, ValueError)
        True
    """


def has_tokenizer_files(folder: str | Path) -> bool:
    """Whether ``folder`` holds a saved tokenizer (without one, transformers builds an empty tokenizer).

    Example:
        >>> import tempfile
        >>> has_tokenizer_files(tempfile.mkdtemp())
        False
    """
    return any((Path(folder).expanduser() / name).is_file() for name in TOKENIZER_FILES)


def check_model_files(path: str | Path) -> None:
    """Refuse a local model directory without tokenizer files or without weights.

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / "tokenizer.json").write_text("{}")
        >>> check_model_files(folder)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        inference.model_checks.BrokenModelError: cannot load ...: no weights (model.safetensors ...)
    """
    folder = Path(path).expanduser()
    if not has_tokenizer_files(folder):
        raise BrokenModelError(
            f"cannot load {path}: no tokenizer files ({', '.join(TOKENIZER_FILES[:3])}, ...); "
            "save the tokenizer into the model directory (tokenizer.save_pretrained)"
        )
    if not any(next(folder.glob(pattern), None) for pattern in WEIGHT_PATTERNS):
        raise BrokenModelError(f"cannot load {path}: no weights (model.safetensors or pytorch_model.bin)")


def check_loaded(model: torch.nn.Module, loading_info: dict, path: str) -> None:
    """Refuse weights the checkpoint lacked (so they are random) or weights that are NaN or infinite.

    Example:
        >>> layer = torch.nn.Linear(2, 2)
        >>> with torch.no_grad():
        ...     _ = layer.weight.fill_(float("nan"))
        >>> check_loaded(layer, {}, "m")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        inference.model_checks.BrokenModelError: cannot load m: weight 'weight' holds NaN or infinite values; ...
    """
    missing = sorted(loading_info.get("missing_keys") or [])
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise BrokenModelError(
            f"cannot load {path}: its weights lack {missing[0]!r}{more}, which the config needs "
            "(they would be random); is this the right checkpoint for the model?"
        )
    for name, tensor in (*model.named_parameters(), *model.named_buffers()):
        if tensor.is_floating_point() and not _finite(tensor.detach()):
            raise BrokenModelError(
                f"cannot load {path}: weight {name!r} holds NaN or infinite values; the checkpoint is damaged"
            )


def _finite(tensor: torch.Tensor) -> bool:
    """Whether every value is finite: NaN spreads to the min or max and inf is one of them.

    About ten times faster than ``isfinite(t).all()`` on a CPU (no boolean copy of the weights),
    so checking a base-size model at load costs a fraction of a second.
    """
    if tensor.numel() == 0:
        return True
    try:
        low, high = torch.aminmax(tensor)
    except RuntimeError:  # a dtype or device without aminmax
        return bool(torch.isfinite(tensor).all())
    return bool(torch.isfinite(low)) and bool(torch.isfinite(high))


def weights_error(path: str, exc: BaseException) -> BrokenModelError:
    """A one-line error for a failure to read the weights in ``path``, without torch's unsafe advice.

    Example:
        >>> str(weights_error("m", pickle.UnpicklingError("Weights only load failed ... weights_only=False")))
        'cannot load m: its pytorch_model.bin holds Python objects besides weights, which could run code; ...'
    """
    if isinstance(exc, pickle.UnpicklingError) or "weights_only" in str(exc):
        return BrokenModelError(
            f"cannot load {path}: its pytorch_model.bin holds Python objects besides weights, which could run code; "
            "khabar loads plain weights only (re-save the model with save_pretrained to get model.safetensors)"
        )
    if type(exc).__name__ == "SafetensorError" or "safetensors" in type(exc).__module__.lower():
        return BrokenModelError(f"cannot load {path}: its .safetensors weights are damaged ({first_line(exc)})")
    return BrokenModelError(f"cannot load {path}: {first_line(exc)}")


DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
"""The errors of a write that found no room: the disk, or the account's quota, is full."""


def error_line(exc: BaseException) -> str:
    """An exception as one line: ``file: reason`` for a file the system refused, else its message with
    line breaks joined (some libraries' messages span lines).

    Example:
        >>> error_line(PermissionError(13, "Permission denied", "out/report.md"))
        'out/report.md: Permission denied'
        >>> error_line(RuntimeError("cannot open:  model.bin")), error_line(KeyError())
        ('cannot open: model.bin', 'KeyError')
    """
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {' '.join(str(exc.strerror or exc).split())}"
    return " ".join(str(exc).split()) or type(exc).__name__


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when empty): one-line errors quote it.

    Example:
        >>> first_line(OSError("no such file\\nmore detail")), first_line(KeyError())
        ('no such file', 'KeyError')
    """
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

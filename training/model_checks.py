"""Check a model directory before training or evaluation reads it, and load its weights safely.

A checkpoint is data, never code: a directory whose configs name their own Python classes
(``auto_map``) is refused, as inference refuses it, instead of letting ``transformers`` ask
"run the custom code? [y/N]" on stdin. Labels must be numbered ``0..N-1`` and the weights must be
readable; each problem is one :class:`~training.config.ConfigError` naming the key and the file,
raised before any data is read.

Example:
    >>> import tempfile
    >>> from training.tiny import build_tiny_classifier
    >>> check_model_source(str(build_tiny_classifier(tempfile.mkdtemp())), "model.name_or_path")
"""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from inference.model_checks import first_line
from training.config import ConfigError

# The files in which transformers looks for ``auto_map`` (classes defined by the checkpoint's own code).
CODE_CONFIGS = ("config.json", "tokenizer_config.json", "processor_config.json", "preprocessor_config.json")


def check_model_source(source: str, key: str) -> None:
    """Refuse a local model (directory or ``config.json``) with custom code, gapped labels or broken weights.

    A hub id passes: ``from_pretrained(..., trust_remote_code=False)`` refuses its custom code.

    Example:
        >>> import json, tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / "config.json").write_text(json.dumps({"auto_map": {"AutoConfig": "evil.X"}}))
        >>> check_model_source(str(folder), "model.name_or_path")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        training.config.ConfigError: model.name_or_path: .../config.json names its own Python code (auto_map ...
    """
    path = Path(source).expanduser()
    if path.is_file():
        _check_config_file(path, key)
        return
    if not path.is_dir():
        return
    for name in CODE_CONFIGS:
        if (path / name).is_file():
            _check_config_file(path / name, key)
    safetensors = sorted(path.glob("*.safetensors"))
    for weights in safetensors:
        _check_safetensors(weights, key)
    if not safetensors:  # only then does transformers fall back to pickled weights
        for weights in sorted(path.glob("pytorch_model*.bin")):  # not training_args.bin, a pickled object
            _check_pickle(weights, key)


def _check_config_file(path: Path, key: str) -> None:
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"{key}: {path}: not a readable JSON config ({first_line(error)})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{key}: {path}: expected a JSON object")
    if values.get("auto_map"):
        raise ConfigError(
            f"{key}: {path} names its own Python code (auto_map {json.dumps(values['auto_map'])}); "
            "khabar never runs a checkpoint's code: start from a model type transformers ships"
        )
    if "id2label" in values:
        check_label_ids(values["id2label"], f"{key}: {path}")


def check_label_ids(id2label: object, where: str) -> None:
    """Refuse an ``id2label`` whose ids are not exactly ``0..N-1`` (a gap would shift every topic).

    Example:
        >>> check_label_ids({"0": "economy", "1": "sports"}, "config.json")
        >>> check_label_ids({"0": "economy", "2": "sports"}, "config.json")
        Traceback (most recent call last):
        ...
        training.config.ConfigError: config.json: id2label ids must be 0..1 without gaps, got 0, 2
    """
    if not isinstance(id2label, dict):
        raise ConfigError(f"{where}: id2label must map ids to labels, got {type(id2label).__name__}")
    try:
        ids = sorted(int(label_id) for label_id in id2label)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: id2label ids must be whole numbers, got {', '.join(map(str, id2label))}") from None
    if ids != list(range(len(ids))):
        raise ConfigError(
            f"{where}: id2label ids must be 0..{len(ids) - 1} without gaps, got {', '.join(map(str, ids))}"
        )


def _check_safetensors(path: Path, key: str) -> None:
    # Opening reads only the header, and checks that the tensors it lists fill the file exactly.
    try:
        with safe_open(str(path), framework="pt") as weights:
            weights.keys()
    except (OSError, SafetensorError) as error:
        raise ConfigError(f"{key}: {path}: corrupted safetensors file ({first_line(error)})") from None


def _check_pickle(path: Path, key: str) -> None:
    # torch's weights-only unpickler builds tensors and containers and nothing else; a zip archive
    # (torch.save's format since 1.6) is memory-mapped, so the check reads little of a large file.
    try:
        torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as error:
        raise ConfigError(f"{key}: {path}: {_refused(error)}") from None
    except (OSError, RuntimeError, EOFError, ValueError) as error:
        raise ConfigError(f"{key}: {path}: corrupted weights file ({first_line(error)})") from None


def load_weights(auto_class: type, source: str, key: str, **kwargs):
    """``auto_class.from_pretrained(source, **kwargs)`` without custom code, preferring safetensors.

    A pickle that holds anything but tensors is refused (never loaded with ``weights_only=False``);
    every failure is a one-line :class:`ConfigError` naming ``key`` and the model.

    Example:
        >>> import tempfile
        >>> from transformers import AutoModelForSequenceClassification as Auto
        >>> from training.tiny import build_tiny_classifier
        >>> load_weights(Auto, str(build_tiny_classifier(tempfile.mkdtemp())), "model.name_or_path").config.num_labels
        7
        >>> load_weights(Auto, tempfile.mkdtemp(), "model.name_or_path")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        training.config.ConfigError: model.name_or_path: cannot load the weights of ...
    """
    local = Path(source).expanduser().is_dir()
    # With safetensors present, a pickle beside them is never opened.
    safetensors = True if local and any(Path(source).expanduser().glob("*.safetensors")) else None
    try:
        return auto_class.from_pretrained(source, trust_remote_code=False, use_safetensors=safetensors, **kwargs)
    except pickle.UnpicklingError as error:
        raise ConfigError(f"{key}: {source}: {_refused(error)}") from None
    except (OSError, ValueError, RuntimeError, SafetensorError) as error:
        raise ConfigError(f"{key}: cannot load the weights of {source!r}: {first_line(error)}") from None


def _refused(error: BaseException) -> str:
    """Why a pickle was refused, without torch's advice to load it with ``weights_only=False``."""
    reason = "it holds objects other than tensors"
    for line in str(error).splitlines():
        if "GLOBAL" in line or "Unsupported" in line:
            reason = line.strip().rstrip(".")
            break
    return f"refused its pickled weights: {reason}; khabar loads only plain tensors (save the model as safetensors)"

"""Which models and decoding settings wrote an output, so ``--resume`` never mixes two of them in one file.

A ``khabar predict`` output resumed with another classifier, another summarizer or other decoding
settings would hold two models' answers, row by row, with nothing in the file to tell them apart.
So a run notes beside the output (in its run file, see :mod:`inference.batch.locking`) what
produced it, and a resume with anything else is refused before a model loads.

A model is known by its content, not its path: a model directory moved or copied elsewhere is
the same model, and one retrained in place is not. The digest covers the files a model is loaded
from (configs, tokenizer, normalization, weights), not the card, metrics or logs training leaves
beside them; it reads each small file whole and, of a weights file, its size with its first and
last MiB: a safetensors file begins with its tensors' names and offsets, and any
retraining rewrites the values at both ends; reading 1 GB on every run would not be free. A hub
id is known by its name.

Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "config.json").write_text("{}")
    >>> record = model_record(str(folder), num_beams=4, max_new_tokens=None)
    >>> sorted(record), record["num_beams"]
    (['content', 'defaults', 'max_new_tokens', 'model', 'num_beams'], 4)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

# Files up to this size are hashed whole; above it, their size and both ends.
_WHOLE_UP_TO = 16 << 20
_END = 1 << 20
# Written beside a model by training and evaluation; no model reads them.
_REPORTS = {"metrics.json", "trainer_state.json", "training_args.bin", "samples.jsonl", "training_log.jsonl"}
_VOCABULARIES = {"vocab.txt", "merges.txt"}


def content_digest(model_dir: str | Path) -> str | None:
    """SHA-256 over a model directory's files (see the module docstring); None when it is not a directory.

    Hidden files and folders (the engine conversion cache) and training's reports are left out.

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / "config.json").write_text('{"a": 1}')
        >>> before = content_digest(folder)
        >>> _ = (folder / "config.json").write_text('{"a": 2}')
        >>> content_digest(folder) == before, content_digest("org/hub-id")
        (False, None)
    """
    folder = Path(model_dir)
    if not folder.is_dir():
        return None
    digest = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        if path.is_file() and loaded_from(path.name):
            digest.update(f"{path.name}\0{path.stat().st_size}\0".encode())
            digest.update(sampled_bytes(path))
    return digest.hexdigest()


def loaded_from(name: str) -> bool:
    """Whether a file of this name in a model directory is read when the model loads.

    Example:
        >>> [loaded_from(n) for n in ("model.safetensors", "config.json", "metrics.json", "README.md")]
        [True, True, False, False]
    """
    if name.startswith(".") or name in _REPORTS:
        return False
    return name in _VOCABULARIES or Path(name).suffix in (".json", ".safetensors", ".bin", ".model")


def is_sampled(path: Path) -> bool:
    """Whether :func:`sampled_bytes` reads only both ends of ``path`` (a file over 16 MiB).

    Example:
        >>> is_sampled(Path(__file__))
        False
    """
    return path.stat().st_size > _WHOLE_UP_TO


def sampled_bytes(path: Path) -> bytes:
    """The whole file up to 16 MiB; of a larger one (weights), its first and last MiB.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "config.json"
        >>> _ = path.write_text("{}")
        >>> sampled_bytes(path)
        b'{}'
    """
    with open(path, "rb") as f:
        if not is_sampled(path):
            return f.read()
        head = f.read(_END)
        f.seek(-_END, 2)
        return head + f.read(_END)


# Decoding settings a run may leave to the model (None): it then decodes with the saved default.
_DECODING_DEFAULTS = {"num_beams": 1, "max_new_tokens": None}


def model_record(model: str, **settings: Any) -> dict[str, Any]:
    """What is noted of one model: its name as given, its content digest, the settings it ran with and
    the model's saved decoding defaults (so leaving ``--num-beams`` to a model whose default is 4 and
    giving ``--num-beams 4`` are the same run).

    Example:
        >>> model_record("org/hub-id", num_beams=None)
        {'model': 'org/hub-id', 'content': None, 'num_beams': None, 'defaults': {}}
    """
    return {"model": model, "content": content_digest(model), **settings, "defaults": saved_decoding(model)}


def saved_decoding(model: str) -> dict[str, Any]:
    """The decoding defaults in a local model's ``generation_config.json``; empty for a hub id or no file.

    A file that cannot be read is empty here: loading the model refuses it in one line.

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / "generation_config.json").write_text('{"num_beams": 4, "max_length": 64}')
        >>> saved_decoding(str(folder))
        {'num_beams': 4, 'max_new_tokens': None}
    """
    try:
        saved = json.loads((Path(model).expanduser() / "generation_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(saved, dict):
        return {}
    return {name: saved.get(name, default) for name, default in _DECODING_DEFAULTS.items()}


def model_difference(kind: str, before: dict[str, Any] | None, now: dict[str, Any]) -> str | None:
    """How the ``kind`` model or its settings differ from what wrote the output; None when they do not.

    Nothing noted (an output from an earlier version, or another task) is no difference. A setting
    left to the model (``None``) and the model's saved default for it are the same setting.

    Example:
        >>> old = {"model": "a", "content": "1", "num_beams": 4}
        >>> model_difference("summarizer", old, {"model": "b", "content": "1", "num_beams": 4}) is None  # moved
        True
        >>> model_difference("summarizer", old, {"model": "a", "content": "2", "num_beams": 4})
        'the summarizer a changed since (its files differ)'
        >>> model_difference("summarizer", old, {"model": "a", "content": "1", "num_beams": 1})
        'it was written with --num-beams 4, not 1'
        >>> default = {"model": "a", "content": "1", "num_beams": None, "defaults": {"num_beams": 4}}
        >>> model_difference("summarizer", old, default) is None  # left to the model, whose default is 4
        True
    """
    if not before:
        return None
    same_model = (
        before.get("content") == now["content"]
        if before.get("content") and now["content"]
        else before.get("model") == now["model"]
    )
    if not same_model:
        if before.get("model") == now["model"]:
            return f"the {kind} {now['model']} changed since (its files differ)"
        return f"it was written with the {kind} {before.get('model')}, not {now['model']}"
    # The same model content has the same saved defaults: now's stand for both runs.
    defaults = now.get("defaults") or {}
    for name, value in now.items():
        if name in ("model", "content", "defaults"):
            continue
        was = before.get(name)
        if _effective(was, name, defaults) != _effective(value, name, defaults):
            flag = "--" + name.replace("_", "-")
            return f"it was written with {flag} {_shown(name, was)}, not {_shown(name, value)}"
    return None


def _effective(value: Any, name: str, defaults: dict[str, Any]) -> Any:
    """A setting as the model applies it: ``None`` is its saved default, where one is known."""
    return defaults.get(name) if value is None and defaults.get(name) is not None else value


def _shown(name: str, value: Any) -> str:
    if value is not None:
        return str(value)
    return "(not given)" if name.endswith("_column") else "(the model's default)"

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
    (['content', 'max_new_tokens', 'model', 'num_beams'], 4)
"""

from __future__ import annotations

import hashlib
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
            digest.update(_sampled_bytes(path))
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


def _sampled_bytes(path: Path) -> bytes:
    with open(path, "rb") as f:
        if path.stat().st_size <= _WHOLE_UP_TO:
            return f.read()
        head = f.read(_END)
        f.seek(-_END, 2)
        return head + f.read(_END)


def model_record(model: str, **settings: Any) -> dict[str, Any]:
    """What is noted of one model: its name as given, its content digest, and the settings it ran with.

    Example:
        >>> model_record("org/hub-id", num_beams=None)
        {'model': 'org/hub-id', 'content': None, 'num_beams': None}
    """
    return {"model": model, "content": content_digest(model), **settings}


def model_difference(kind: str, before: dict[str, Any] | None, now: dict[str, Any]) -> str | None:
    """How the ``kind`` model or its settings differ from what wrote the output; None when they do not.

    Nothing noted (an output from an earlier version, or another task) is no difference.

    Example:
        >>> old = {"model": "a", "content": "1", "num_beams": 4}
        >>> model_difference("summarizer", old, {"model": "b", "content": "1", "num_beams": 4}) is None  # moved
        True
        >>> model_difference("summarizer", old, {"model": "a", "content": "2", "num_beams": 4})
        'the summarizer a changed since (its files differ)'
        >>> model_difference("summarizer", old, {"model": "a", "content": "1", "num_beams": 1})
        'it was written with --num-beams 4, not 1'
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
    for name, value in now.items():
        if name not in ("model", "content") and before.get(name) != value:
            flag = "--" + name.replace("_", "-")
            return f"it was written with {flag} {_shown(name, before.get(name))}, not {_shown(name, value)}"
    return None


def _shown(name: str, value: Any) -> str:
    if value is not None:
        return str(value)
    return "(none)" if name.endswith("_column") else "(the model's default)"

"""Convert a model directory once and keep the result beside it.

A conversion lives in ``MODEL_DIR/.khabar-cache/<kind>-<key>/``. The key hashes the name, size and
modification time of every file in the model directory together with the conversion settings and
engine version, so retraining (which rewrites the weights) or upgrading the engine builds a fresh
conversion instead of serving a stale one. When the model directory cannot be written (a read-only
mount, a shared install), the conversion goes to the user cache, ``$KHABAR_CACHE`` or
``~/.cache/khabar``, in a folder named after the model directory's path.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)
CACHE_DIRNAME = ".khabar-cache"
DONE_FILE = "khabar-conversion.json"


def user_cache_dir() -> Path:
    """The per-user cache root: ``$KHABAR_CACHE`` when set, else ``~/.cache/khabar``.

    Example:
        >>> import os
        >>> os.environ["KHABAR_CACHE"] = "/tmp/khabar-cache-doc"
        >>> str(user_cache_dir())
        '/tmp/khabar-cache-doc'
        >>> del os.environ["KHABAR_CACHE"]
    """
    return Path(os.environ.get("KHABAR_CACHE") or Path.home() / ".cache" / "khabar")


def fingerprint(model_dir: str | Path) -> str:
    """Hash of the name, size and modification time of each file in ``model_dir``.

    Reading sizes and times, not contents, keeps a cache hit instant on a 1 GB checkpoint; any
    ``save_pretrained`` rewrites the files, so a retrained model never matches an old conversion.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "model.safetensors").write_bytes(b"1234")
        >>> before = fingerprint(d)
        >>> _ = (d / "model.safetensors").write_bytes(b"12345")
        >>> fingerprint(d) == before
        False
    """
    digest = hashlib.sha256()
    for path in sorted(Path(model_dir).iterdir()):
        if path.is_file() and not path.name.startswith("."):
            stat = path.stat()
            digest.update(f"{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def cache_roots(model_dir: str | Path) -> list[Path]:
    """Where conversions of ``model_dir`` may live, in order of preference.

    Example:
        >>> [p.name for p in cache_roots("/models/summarizer")][0]
        '.khabar-cache'
    """
    model_dir = Path(model_dir).resolve()
    path_key = hashlib.sha256(str(model_dir).encode()).hexdigest()[:12]
    return [model_dir / CACHE_DIRNAME, user_cache_dir() / f"{model_dir.name}-{path_key}"]


def cached_conversion(model_dir: str | Path, kind: str, settings: dict, build: Callable[[Path], None]) -> Path:
    """The folder holding the ``kind`` conversion of ``model_dir``, built by ``build(folder)`` on first use.

    ``settings`` (engine version, quantization...) is part of the key: changing it builds anew.
    The build writes into a temporary folder that is renamed into place only when complete, so an
    interrupted conversion is never mistaken for a finished one.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "config.json").write_text("{}")
        >>> build = lambda out: (out / "engine.txt").write_text("converted")
        >>> first = cached_conversion(d, "demo", {"quantize": "int8"}, build)
        >>> (first / "engine.txt").read_text(), first.parent.name
        ('converted', '.khabar-cache')
        >>> cached_conversion(d, "demo", {"quantize": "int8"}, print) == first  # reused, not rebuilt
        True
    """
    key = json.dumps({**settings, "kind": kind, "model": fingerprint(model_dir)}, sort_keys=True)
    name = f"{kind}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    roots = cache_roots(model_dir)
    for root in roots:
        if (root / name / DONE_FILE).is_file():
            return root / name
    for root in roots:
        if _writable(root):
            log.info("converting %s for the %s engine (first use only; kept in %s)", model_dir, kind, root)
            return _build(root, name, key, build)
    raise PermissionError(f"cannot write a conversion of {model_dir} to any of: {', '.join(map(str, roots))}")


def _writable(root: Path) -> bool:
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = tempfile.mkdtemp(prefix=".probe-", dir=root)
    except OSError:
        return False
    os.rmdir(probe)
    return True


def _build(root: Path, name: str, key: str, build: Callable[[Path], None]) -> Path:
    final = root / name
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
    try:
        build(tmp)
        (tmp / DONE_FILE).write_text(json.dumps(json.loads(key), indent=2) + "\n")
        try:
            tmp.rename(final)
        except OSError:
            # Another process finished the same conversion first; theirs is as good as ours.
            if not (final / DONE_FILE).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _prune(root, keep=final)
    return final


def _prune(root: Path, keep: Path) -> None:
    """Delete conversions of the same kind made from older weights: they can never be hit again."""
    kind = keep.name.rsplit("-", 1)[0]
    for old in root.glob(f"{kind}-*"):
        if old != keep and old.is_dir() and len(old.name) == len(keep.name):
            shutil.rmtree(old, ignore_errors=True)

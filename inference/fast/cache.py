"""Convert a model directory once and keep the result beside it.

A conversion lives in ``MODEL_DIR/.khabar-cache/<kind>-<key>/``. The key hashes the files the
model loads from (see :func:`fingerprint`) together with the conversion settings and engine
version, so retraining, unpacking another release over the folder or upgrading the engine builds a
fresh conversion instead of serving a stale one. When the model directory cannot be written (a read-only
mount, a shared install), the conversion goes to the user cache, ``$KHABAR_CACHE`` or
``~/.cache/khabar``, in a folder named after the model directory's path.

Processes starting on the same model together take turns on a lock of the cache folder: one
converts, the others then open its result. What a conversion killed mid-way leaves behind is
removed by the next conversion in that folder.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import secrets
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from inference.batch.atomic import write_text_atomically
from inference.batch.provenance import loaded_from
from inference.model_checks import DISK_FULL_ERRNOS, error_line, nearly_full

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

T = TypeVar("T")
log = logging.getLogger(__name__)
CACHE_DIRNAME = ".khabar-cache"
DONE_FILE = "khabar-conversion.json"
# Conversions are written under this prefix and renamed to their final name only when complete.
TMP_PREFIX = ".converting-"
_OWNER_MARK = "@"  # a conversion folder ends with @host@pid@random: who writes it


class NoCacheForConversion(PermissionError):
    """No cache location can take a conversion: none is writable, or each one is full.

    ``backend="auto"`` then runs the model on torch instead; an explicit fast backend fails with this.
    """


_FULL_ERRNOS = (*DISK_FULL_ERRNOS, errno.EFBIG)  # EFBIG: past `ulimit -f`, as good as full here


def user_cache_dir() -> Path:
    """The per-user cache root: ``$KHABAR_CACHE`` when set, else ``~/.cache/khabar``.

    Raises ``RuntimeError`` (as :meth:`pathlib.Path.home` does) when neither is known.

    Example:
        >>> import os
        >>> os.environ["KHABAR_CACHE"] = "/tmp/khabar-cache-doc"
        >>> str(user_cache_dir())
        '/tmp/khabar-cache-doc'
        >>> del os.environ["KHABAR_CACHE"]
    """
    configured = os.environ.get("KHABAR_CACHE", "").strip()
    # Expanded and made absolute here: a service file's environment is not expanded by a shell, and a
    # relative folder would move with the working directory, converting again from each new one.
    if configured:
        return Path(configured).expanduser().absolute()
    if os.environ.get("HOME") == "":  # Path.home() would answer "/": a cache at the file system's root
        raise RuntimeError("HOME is empty")
    return Path.home() / ".cache" / "khabar"


def fingerprint(model_dir: str | Path) -> str:
    """Hash of the content of the files ``model_dir``'s model is loaded from (not its card, metrics or logs).

    Content, not names, sizes and times: weights retrained to the same size and unpacked from an
    archive that pins modification times (or edited with the time put back) must convert again,
    and a copied folder (new times, same bytes) must not. Hashing 1 GB of weights takes about a
    second, so a large file's hash is remembered by its size, times and inode (see
    :func:`_remembered_digest`): a load reads it once, not at every start.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "model.safetensors").write_bytes(b"1234")
        >>> before = fingerprint(d)
        >>> _ = (d / "model.safetensors").write_bytes(b"5678")
        >>> _ = (d / "README.md").write_text("a card")  # not read by the model: no new conversion
        >>> fingerprint(d) == before
        False
    """
    digest = hashlib.sha256()
    for path in sorted(Path(model_dir).iterdir()):
        if path.is_file() and loaded_from(path.name):
            digest.update(f"{path.name}\0{_remembered_digest(path)}\n".encode())
    return digest.hexdigest()


# Files up to this size are hashed at every load; larger ones once per size, times and inode.
_HASHED_EVERY_TIME = 16 << 20
_DIGESTS_FILE = "file-digests.json"
_KEPT_DIGESTS = 256
_digests: dict[str, str] = {}


def _remembered_digest(path: Path) -> str:
    """SHA-256 of ``path``'s bytes; for a large file, remembered (in this process and, where it can
    be written, in the user cache) under its path, size, modification and change times and inode,
    which any rewrite, copy or unpacking changes."""
    stat = path.stat()
    if stat.st_size <= _HASHED_EVERY_TIME:
        return _sha256(path)
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ctime_ns}|{stat.st_ino}"
    if key not in _digests:
        _digests.update(_saved_digests())
    if key not in _digests:
        _digests[key] = _sha256(path)
        _save_digests()
    return _digests[key]


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        if hasattr(hashlib, "file_digest"):  # Python 3.11+: reads in large blocks without the GIL
            return hashlib.file_digest(f, "sha256").hexdigest()
        digest = hashlib.sha256()
        while block := f.read(1 << 22):
            digest.update(block)
        return digest.hexdigest()


def _saved_digests() -> dict[str, str]:
    try:
        saved = json.loads((user_cache_dir() / _DIGESTS_FILE).read_text(encoding="utf-8"))
    except (OSError, RuntimeError, ValueError):  # none yet, no home, damaged: hash again
        return {}
    return {k: v for k, v in saved.items() if isinstance(v, str)} if isinstance(saved, dict) else {}


def _save_digests() -> None:
    """Keep the newest digests in the user cache, best effort: without it a large file is hashed once per process."""
    kept = dict(list(_digests.items())[-_KEPT_DIGESTS:])
    try:
        folder = user_cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        write_text_atomically(folder / _DIGESTS_FILE, json.dumps(kept, indent=0) + "\n")
    except (OSError, RuntimeError):
        pass


def cache_roots(model_dir: str | Path) -> list[Path]:
    """Where conversions of ``model_dir`` may live, in order of preference.

    Example:
        >>> [p.name for p in cache_roots("/models/summarizer")][0]
        '.khabar-cache'
    """
    model_dir = Path(model_dir).resolve()
    path_key = hashlib.sha256(str(model_dir).encode()).hexdigest()[:12]
    try:
        user = user_cache_dir()
    except RuntimeError:  # no home directory (HOME unset for an account without one): the model's folder only
        return [model_dir / CACHE_DIRNAME]
    return [model_dir / CACHE_DIRNAME, user / f"{model_dir.name}-{path_key}"]


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
    return _cached(model_dir, kind, settings, build)[0]


def open_cached(
    model_dir: str | Path, kind: str, settings: dict, build: Callable[[Path], None], open_engine: Callable[[Path], T]
) -> T:
    """``open_engine`` on the cached ``kind`` conversion of ``model_dir`` (see :func:`cached_conversion`).

    A cached conversion that no longer opens (a file truncated by a full disk, edited, half
    deleted) is converted again, once, with a warning; one that fails straight after converting
    is a ``ValueError`` naming its folder.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "config.json").write_text("{}")
        >>> build = lambda out: (out / "engine.txt").write_text("converted")
        >>> folder = cached_conversion(d, "demo", {}, build)
        >>> _ = (folder / "engine.txt").write_text("damaged")
        >>> def open_engine(folder):
        ...     if (folder / "engine.txt").read_text() != "converted":
        ...         raise RuntimeError("bad payload")
        ...     return "engine"
        >>> open_cached(d, "demo", {}, build, open_engine)
        'engine'
    """
    return _open(model_dir, kind, settings, build, open_engine, broken=())


def _open(
    model_dir: str | Path,
    kind: str,
    settings: dict,
    build: Callable[[Path], None],
    open_engine: Callable[[Path], T],
    broken: tuple[Path, ...],
) -> T:
    """:func:`open_cached`, passing over the ``broken`` cache roots: they hold a damaged conversion
    this process could not remove (a read-only mount)."""
    folder, fresh = _cached(model_dir, kind, settings, build, skip=broken)
    try:
        return open_engine(folder)
    except Exception as exc:  # noqa: BLE001 - each engine has its own error types for unreadable files
        if fresh:
            raise ValueError(f"cannot open the {kind} conversion in {folder}: {error_line(exc)}") from None
        problem = error_line(exc)
        log.warning("the cached %s conversion in %s cannot be opened (%s); converting again", kind, folder, problem)
        shutil.rmtree(folder, ignore_errors=True)
        if (folder / DONE_FILE).exists():  # could not be removed (read-only): convert in the next root
            others = [root for root in cache_roots(model_dir) if root not in (*broken, folder.parent)]
            if not any(map(_writable, others)):
                raise ValueError(f"cannot open the {kind} conversion in {folder}: {problem}; delete it") from None
            broken = (*broken, folder.parent)
    return _open(model_dir, kind, settings, build, open_engine, broken)


def _cached(
    model_dir: str | Path, kind: str, settings: dict, build: Callable[[Path], None], skip: tuple[Path, ...] = ()
) -> tuple[Path, bool]:
    """The conversion's folder, and whether it was built just now; the ``skip`` roots are passed over."""
    key = json.dumps({**settings, "kind": kind, "model": fingerprint(model_dir)}, sort_keys=True)
    name = f"{kind}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    roots = [root for root in cache_roots(model_dir) if root not in skip]
    for root in roots:
        if _finished(root / name):
            return root / name, False
    full = []
    for root in filter(_writable, roots):
        try:
            return _convert_in(root, name, key, build, f"{model_dir} for the {kind} engine")
        except OSError as exc:
            if exc.errno not in _FULL_ERRNOS:
                raise
            # The model's disk may be full while the user cache's is not: the conversion can live there.
            log.warning("no room for the %s conversion in %s (%s)", kind, root, exc.strerror)
            full.append(f"{root} ({exc.strerror})")
    if full:
        raise NoCacheForConversion(
            f"no room to write the {kind} conversion of {model_dir} in {', '.join(full)}: "
            "free some space, or set KHABAR_CACHE to a folder on another disk"
        )
    raise NoCacheForConversion(
        f"cannot write a conversion of {model_dir} to any of: {', '.join(map(str, roots))}; "
        "set KHABAR_CACHE to a folder you can write"
    )


def _convert_in(root: Path, name: str, key: str, build: Callable[[Path], None], what: str) -> tuple[Path, bool]:
    """Build conversion ``name`` in ``root`` unless the process this one waited for already did."""
    with _converting_in(root) as alone:
        if _finished(root / name):
            return root / name, False
        if alone:
            _remove_leftovers(root)
        log.info("converting %s (first use only; kept in %s)", what, root)
        return _build(root, name, key, build), True


def _finished(folder: Path) -> bool:
    # A folder another user converted and kept private raises PermissionError here; it is then as
    # good as absent, and the next root (this user's cache) is tried.
    try:
        return (folder / DONE_FILE).is_file()
    except OSError:
        return False


def _writable(root: Path) -> bool:
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = tempfile.mkdtemp(prefix=".probe-", dir=root)
    except OSError:
        return False
    os.rmdir(probe)
    return True


@contextmanager
def _converting_in(root: Path) -> Iterator[bool]:
    """Hold ``root``'s conversion lock; yields whether it is held (not where locks are unsupported).

    Processes starting on one model at once (ranks of a distributed run, server workers) would each
    convert it, with the memory of two model copies apiece; with the lock one converts and the others
    wait, then open its result. The system drops the lock of a process that dies, however it dies.
    """
    if fcntl is None:  # Windows: conversions may run side by side; the final rename keeps them apart
        yield False
        return
    fd = os.open(root, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another process converting in %s%s", root, _converters(root))
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # a file system without locks (some network mounts)
            yield False
            return
        yield True
    finally:
        os.close(fd)  # also releases the lock


def _converters(root: Path) -> str:
    """`` (process N on HOST)`` for each conversion being written in ``root``: a long wait can be looked into."""
    owners = []
    for folder in root.glob(f"{TMP_PREFIX}*"):
        parts = folder.name.rsplit(_OWNER_MARK, 3)
        if len(parts) == 4:
            owners.append(f"process {parts[2]} on {parts[1]}")
    return f" ({', '.join(sorted(owners))})" if owners else ""


def _remove_leftovers(root: Path) -> None:
    """Delete the half-written folders of conversions killed mid-way (SIGKILL, out of memory, power loss).

    Called with the root's lock held, but some shared file systems lock per machine only, so a
    folder is removed only when its converter is known dead: a process of this machine that no
    longer runs, or (another machine's, or unnamed) one untouched for a day. For a large model each
    such folder holds hundreds of megabytes.
    """
    for leftover in root.glob(f"{TMP_PREFIX}*"):
        if _abandoned(leftover):
            log.info("removing %s, left by a conversion that did not finish", leftover)
            shutil.rmtree(leftover, ignore_errors=True)


_HOST = socket.gethostname().replace(_OWNER_MARK, "_") or "host"
ABANDONED_AFTER_S = 24 * 3600


def _abandoned(folder: Path) -> bool:
    """Whether the conversion writing ``folder`` (named ``...@host@pid@random``) can no longer finish."""
    parts = folder.name.rsplit(_OWNER_MARK, 3)
    if len(parts) == 4 and parts[1] == _HOST and parts[2].isdigit() and not _running(int(parts[2])):
        return True
    # Another machine's, or a process id now in use again (a restarted container is process 1
    # again): no conversion takes a day, so an untouched folder that old is a dead one's.
    try:
        return time.time() - folder.stat().st_mtime > ABANDONED_AFTER_S
    except OSError:
        return False


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, run by another account
        return True
    return True


def _build(root: Path, name: str, key: str, build: Callable[[Path], None]) -> Path:
    final = root / name
    tmp = _new_folder(root, f"{TMP_PREFIX}{name}-")
    try:
        try:
            build(tmp)
        except Exception as exc:
            if isinstance(exc, OSError) or not nearly_full(root):
                raise
            raise OSError(errno.ENOSPC, "No space left on device", str(root)) from exc
        (tmp / DONE_FILE).write_text(json.dumps(json.loads(key), indent=2) + "\n")
        if final.is_dir() and not _finished(final):  # half deleted, or its marker removed: not a conversion
            shutil.rmtree(final)
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


def _new_folder(root: Path, prefix: str) -> Path:
    """A new, uniquely named folder with the permissions the umask gives (``mkdtemp``'s are owner-only).

    A conversion beside a shared model is used by every account that can read the model, so its
    folder must be as readable as the model directory's other files.
    """
    while True:
        owner = _OWNER_MARK.join((_HOST, str(os.getpid()), secrets.token_hex(4)))
        folder = root / f"{prefix}{_OWNER_MARK}{owner}"
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue


def _prune(root: Path, keep: Path) -> None:
    """Delete conversions of the same kind made from older weights: they can never be hit again."""
    kind = keep.name.rsplit("-", 1)[0]
    for old in root.glob(f"{kind}-*"):
        if old != keep and old.is_dir() and len(old.name) == len(keep.name):
            shutil.rmtree(old, ignore_errors=True)

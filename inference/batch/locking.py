"""One ``khabar predict`` per output file: an exclusive lock, held for the whole run.

The lock is taken on a small run file beside the output (``OUTPUT.khabar-run``), not on
the output itself, because ``--resume`` may replace the output with a rename (to drop error
records it retries) and a lock on the old file would not cover the new one. The run file
also records the running process's id, for the message another run gets, and the input's
fingerprint (see :mod:`inference.batch.fingerprint`).

On POSIX the lock is ``flock``: the system releases it when the process ends, however it
ends (SIGKILL included), so a crash never leaves a stale lock. Where ``fcntl`` is missing
(Windows) ``msvcrt.locking`` on one byte of the run file gives the same guarantee.

Example:
    >>> import tempfile, pathlib
    >>> output = str(pathlib.Path(tempfile.mkdtemp()) / "out.jsonl")
    >>> with OutputLock(output) as run:
    ...     run.save({"input": None})
    ...     try:
    ...         OutputLock(output).__enter__()
    ...     except OutputLocked as exc:
    ...         "in use by another khabar run" in str(exc)
    True
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

RUN_FILE_SUFFIX = ".khabar-run"
# msvcrt locks byte ranges; lock one far past the run file's text so reading it stays possible.
_WINDOWS_LOCK_OFFSET = 1 << 20


class OutputLocked(ValueError):
    """Another process holds the output's lock; the message names the file and, if known, the process.

    Example:
        >>> issubclass(OutputLocked, ValueError)
        True
    """


def run_file(output: str) -> Path:
    """The run file of ``output``: beside the real file, when ``output`` is a link, so every name of it shares one lock.

    Example:
        >>> run_file("/data/preds.jsonl").name
        'preds.jsonl.khabar-run'
    """
    real = Path(os.path.realpath(output))
    return real.with_name(real.name + RUN_FILE_SUFFIX)


class OutputLock:
    """An exclusive, non-blocking lock on ``output`` for as long as the ``with`` block runs.

    ``previous`` is what the run file held before this run (the last run's input fingerprint),
    ``save()`` replaces it. A second lock on the same output fails at once with
    :class:`OutputLocked`. A run file this lock created is removed again if the output was never
    written, so a run refused before writing leaves nothing behind.

    Example:
        >>> import tempfile, pathlib
        >>> output = pathlib.Path(tempfile.mkdtemp()) / "out.jsonl"
        >>> with OutputLock(str(output)) as run:
        ...     run.save({"input": {"size": 3}})
        >>> run_file(str(output)).exists()  # refused before writing: nothing left
        False
        >>> with OutputLock(str(output)) as run:
        ...     run.save({"input": {"size": 3}})
        ...     _ = output.write_text("")
        >>> with OutputLock(str(output)) as run:
        ...     run.previous["input"]
        {'size': 3}
    """

    def __init__(self, output: str) -> None:
        self.output = output
        self.path = run_file(output)
        self.previous: dict[str, Any] | None = None
        self._fd: int | None = None
        self._output_fd: int | None = None
        self._created = False

    def __enter__(self) -> OutputLock:
        self._created = not self.path.exists()
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                raise OutputLocked(f"-o {self.output}: no such directory {self.path.parent}") from None
            raise OutputLocked(f"-o {self.output}: cannot create its lock file {self.path}: {exc.strerror}") from None
        try:
            _lock(fd)
        except OSError:
            holder = _read(fd).get("pid")
            os.close(fd)
            who = f" (process {holder})" if isinstance(holder, int) else ""
            raise OutputLocked(
                f"-o {self.output}: in use by another khabar run{who}; wait for it to finish or write elsewhere"
            ) from None
        self._fd = fd
        try:
            self._output_fd = _lock_output(self.output)
        except OSError:
            self.__exit__()
            raise OutputLocked(
                f"-o {self.output}: in use by another khabar run writing it under another name (a hard link); "
                "wait for it to finish or write elsewhere"
            ) from None
        self.previous = _read(fd) or None
        try:
            self.save(self.previous or {})
        except OSError as exc:
            self.__exit__()
            raise OutputLocked(f"-o {self.output}: {unwritable_run_file(self.path, exc)}") from None
        return self

    def save(self, info: dict[str, Any]) -> None:
        """Replace the run file's content with ``info`` plus this process's id.

        Written over the old content, then cut to length: a write that fails (a full disk) leaves
        the old content, which a later ``--resume`` needs, rather than an emptied file. (The file
        is the lock, so it cannot be replaced by a rename.) The failure is an ``OSError``.
        """
        text = json.dumps({**info, "pid": os.getpid()}, ensure_ascii=False, indent=1).encode("utf-8")
        os.lseek(self._fd, 0, os.SEEK_SET)
        if os.write(self._fd, text) != len(text):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))
        os.ftruncate(self._fd, len(text))
        os.fsync(self._fd)

    def __exit__(self, *exc_info: object) -> None:
        if self._output_fd is not None:
            os.close(self._output_fd)
            self._output_fd = None
        if self._fd is not None:
            if self._created and not os.path.lexists(self.output):
                # A run refused before writing (a bad model, an unknown format) leaves nothing behind;
                # removed while still locked, so no other run is holding it.
                self.path.unlink(missing_ok=True)
            os.close(self._fd)  # closing releases the lock
            self._fd = None


def unwritable_run_file(path: Path, exc: OSError) -> str:
    """Why the run file at ``path`` could not be written, and what to do (its old content is kept).

    Example:
        >>> unwritable_run_file(Path("o.khabar-run"), OSError(28, "No space left on device"))  # doctest: +ELLIPSIS
        'cannot write its run file o.khabar-run: No space left on device; make room, then ...'
    """
    return f"cannot write its run file {path}: {exc.strerror or exc}; make room, then run the same command again"


def _lock_output(output: str) -> int | None:
    """Lock an existing output file itself, so two names of one file (hard links, whose run files
    differ) cannot be written at once; the open descriptor, or None (no file yet, or no flock).

    A new output has one name only. On Windows (no flock) the run file is the only lock.
    """
    if fcntl is None:
        return None
    try:
        fd = os.open(output, os.O_RDONLY)
    except OSError:
        return None  # not there yet, or unreadable: the writer reports that
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise
    return fd


def _lock(fd: int) -> None:
    """Take the lock without waiting; OSError when another process holds it."""
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    import msvcrt

    os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
    msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)


def _read(fd: int) -> dict[str, Any]:
    """The run file's JSON, or an empty dict when it is new or unreadable."""
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return _parsed(b"".join(chunks))


def read_run_file(output: str) -> dict[str, Any]:
    """What the run file of ``output`` notes (input, id column, models), without taking its lock;
    an empty dict when there is none or it cannot be read.

    Example:
        >>> read_run_file("/no/such/out.jsonl")
        {}
    """
    try:
        return _parsed(run_file(output).read_bytes())
    except OSError:
        return {}


def _parsed(data: bytes) -> dict[str, Any]:
    try:
        info = json.loads(data or b"{}")
    except (UnicodeDecodeError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}

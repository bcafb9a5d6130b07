"""Replace a file all at once: a temporary file in the same folder, then one rename.

A reader, or a crash, sees either the old file or the whole new one, never a part: the
rename of a file within one folder is atomic on POSIX and Windows file systems.

Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "out.txt"
    >>> with replaced_atomically(str(path)) as f:
    ...     _ = f.write(b"whole")
    >>> path.read_bytes()
    b'whole'
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

# Large enough to copy quickly, small enough to keep memory flat.
_COPY_CHUNK = 1 << 20


@contextlib.contextmanager
def replaced_atomically(path: str) -> Iterator[BinaryIO]:
    """Write ``path`` through a temporary file that replaces it only if the block ends without an error.

    On an error the temporary file is removed and ``path`` is left as it was.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "out.txt"
        >>> _ = path.write_bytes(b"old")
        >>> try:
        ...     with replaced_atomically(str(path)) as f:
        ...         _ = f.write(b"half")
        ...         raise OSError("disk full")
        ... except OSError:
        ...     pass
        >>> path.read_bytes(), len(list(path.parent.iterdir()))
        (b'old', 1)
    """
    with renamed_into_place(path) as temp, open(temp, "wb") as f:
        yield f


def write_text_atomically(path: str | Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) all at once; a failed write leaves the old file and nothing else.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "metrics.json"
        >>> write_text_atomically(path, "{}")
        >>> path.read_text()
        '{}'
    """
    with replaced_atomically(str(path)) as f:
        f.write(text.encode("utf-8"))


@contextlib.contextmanager
def renamed_into_place(path: str) -> Iterator[str]:
    """A temporary path beside ``path`` (same suffix) to write; renamed to ``path`` if the block succeeds.

    The new file keeps the permissions of the one it replaces (a new one gets the usual ones).

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "out.jsonl"
        >>> with renamed_into_place(str(path)) as temp:
        ...     _ = pathlib.Path(temp).write_text("{}")
        ...     temp.endswith(".jsonl"), path.exists()
        (True, False)
        >>> path.read_text()
        '{}'
    """
    target = Path(path)
    fd, temp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".part{target.suffix}", dir=target.parent)
    os.close(fd)
    try:
        yield temp
        with open(temp, "rb") as f:
            os.fsync(f.fileno())  # the data is on disk before the rename makes it the file
        if target.exists():
            shutil.copymode(target, temp)
        else:
            os.chmod(temp, 0o666 & ~current_umask())
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def drop_spans(path: str, spans: list[tuple[int, int]]) -> None:
    """Replace ``path`` by itself without the byte ranges ``spans`` (sorted, non-overlapping).

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "out.jsonl"
        >>> _ = path.write_bytes(b"keep\\ndrop\\nkeep\\n")
        >>> drop_spans(str(path), [(5, 10)])
        >>> path.read_bytes()
        b'keep\\nkeep\\n'
    """
    with open(path, "rb") as source, replaced_atomically(path) as out:
        position = 0
        for start, end in [*spans, (None, None)]:
            _copy(source, out, None if start is None else start - position)
            if end is not None:
                source.seek(end)
                position = end


def _copy(source: BinaryIO, out: BinaryIO, size: int | None) -> None:
    """Copy ``size`` bytes (all the rest when None) from ``source`` to ``out`` in chunks."""
    while size is None or size > 0:
        chunk = source.read(_COPY_CHUNK if size is None else min(size, _COPY_CHUNK))
        if not chunk:
            return
        out.write(chunk)
        if size is not None:
            size -= len(chunk)


def current_umask() -> int:
    """The process's umask (read by setting it and setting it back: there is no getter).

    Example:
        >>> 0 <= current_umask() <= 0o777
        True
    """
    mask = os.umask(0)
    os.umask(mask)
    return mask

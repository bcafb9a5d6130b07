"""Inputs that can be read only once: stdin, a pipe or FIFO named as a file (``/dev/stdin``, ``<(...)``).

A regular file is opened again for each check made before any work (its encoding, its CSV header,
its row count for the progress bar). A stream would lose the bytes each check read, and a FIFO
would wait for a second writer that never comes. So a stream is opened once, its first bytes are
read ahead for the same checks, and the reader gets them back in front of the rest: every row is
read once, and a stream gets the one-line errors a file gets.

Example:
    >>> import io
    >>> once = OnceInput.around(io.BufferedReader(io.BytesIO(b"id,article\\n1,text\\n")))
    >>> once.head.splitlines()[0], once.stream.read()
    (b'id,article', b'id,article\\n1,text\\n')
"""

from __future__ import annotations

import io
import os
import stat
from dataclasses import dataclass
from typing import BinaryIO

from inference.batch.formats import STDIO

# Read ahead: up to the end of the first line (a CSV header; the encoding checks sniff what is read
# by then), at most this much. A longer header goes unchecked until its rows are read.
HEAD_BYTES = 64 << 10


def is_stream(path: str) -> bool:
    """Whether the input at ``path`` can be read only once: ``-`` (stdin), a pipe, a FIFO or a device.

    Example:
        >>> is_stream("-"), is_stream("/dev/null"), is_stream(__file__)
        (True, True, False)
    """
    if path == STDIO:
        return True
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False  # missing or unreadable: opening it says why


@dataclass
class OnceInput:
    """A stream input read once: ``head`` holds its first bytes (for the checks), ``stream`` all of them.

    Example:
        >>> import io
        >>> OnceInput.around(io.BufferedReader(io.BytesIO(b""))).head
        b''
    """

    stream: BinaryIO
    head: bytes

    @classmethod
    def around(cls, source: BinaryIO) -> OnceInput:
        """Read ``source``'s head and wrap it so that reading starts again from its first byte."""
        head = _read_head(source)
        return cls(io.BufferedReader(_Replayed(head, source), buffer_size=1 << 16), head)

    @property
    def complete_first_line(self) -> bool:
        """Whether ``head`` holds the whole first line (else it is longer than :data:`HEAD_BYTES`)."""
        return b"\n" in self.head or len(self.head) < HEAD_BYTES


def _read_head(source: BinaryIO) -> bytes:
    """The first bytes of ``source``: what it gives until the end of its first line (or its end)."""
    chunks: list[bytes] = []
    size = 0
    while size < HEAD_BYTES:
        chunk = _read_some(source, HEAD_BYTES - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if b"\n" in chunk:  # a whole first line: enough to check, and a slow producer is not kept waiting
            break
    return b"".join(chunks)


class _Replayed(io.RawIOBase):
    """``head``, then the rest of ``source``: a raw stream for :class:`io.BufferedReader`."""

    def __init__(self, head: bytes, source: BinaryIO) -> None:
        super().__init__()
        self._head = memoryview(head)
        self._source = source

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = _read_some(self._source, len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _read_some(source: BinaryIO, most: int) -> bytes:
    """What ``source`` has now, up to ``most`` bytes (one read of a pipe, not a wait for ``most``)."""
    return source.read1(most) if hasattr(source, "read1") else source.read(most)

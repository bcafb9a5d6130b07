"""Keep a long ``khabar predict`` run's memory flat: give freed buffers back to the system.

glibc's allocator keeps freed memory for reuse. With batches of varying size this backfires:
its mmap threshold rises to the largest buffer freed so far (up to 32 MB), so later activations
come from the heap, the heap fragments, and a 10,000-row run peaked at 2 GB where 1,000 rows
needed 0.7 GB although no rows are kept. Two calls fix it (measured in ``python -m bench.rss``):

* :func:`keep_large_buffers_separate` pins the mmap threshold at 1 MiB, so each large tensor
  gets its own mapping and is returned the moment it is freed;
* :func:`release_freed_memory` (``malloc_trim``) after each batch returns what the small ones left.

Elsewhere (macOS, musl, Windows) these functions do nothing.

Example:
    >>> release_freed_memory() == (_libc() is not None)  # trimmed wherever glibc is found
    True
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

_M_MMAP_THRESHOLD = -3  # mallopt's parameter number in glibc's malloc.h
MMAP_THRESHOLD = 1 << 20


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


def keep_large_buffers_separate(threshold: int = MMAP_THRESHOLD) -> bool:
    """Serve allocations of ``threshold`` bytes and more with their own mapping, for the whole process.

    Leaves a ``MALLOC_MMAP_THRESHOLD_`` set in the environment alone: the user chose it.
    Returns whether the setting was made.

    Example:
        >>> from unittest import mock
        >>> with mock.patch.dict(os.environ, {"MALLOC_MMAP_THRESHOLD_": "65536"}):
        ...     keep_large_buffers_separate()  # the user's own setting wins
        False
        >>> keep_large_buffers_separate() == (_libc() is not None and "MALLOC_MMAP_THRESHOLD_" not in os.environ)
        True
    """
    libc = _libc()
    if libc is None or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, threshold))


def release_freed_memory() -> bool:
    """Return the allocator's free pages to the system; ``True`` if it could (glibc), else ``False``.

    Cheap next to a model batch (a few milliseconds), so ``khabar predict`` calls it after each.

    Example:
        >>> import sys
        >>> release_freed_memory() == (sys.platform == "linux" and _libc() is not None)
        True
    """
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True

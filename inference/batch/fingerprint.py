"""Tell whether the input of a ``--resume`` is the input the output was started from.

``--resume`` skips the rows whose ids are already in the output. If the input changed in
between (rows inserted, edited or removed), ids that are line numbers point at other rows
and the output silently mixes two inputs, so a run records its input's size and SHA-256 in
the output's run file (see :mod:`inference.batch.locking`) and a resume onto anything else is refused.

Hashing reads the whole input once: a few seconds for gigabytes, small beside running models
over it, and unlike sampled blocks it misses no edit.

Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "in.jsonl"
    >>> _ = path.write_text('{"id": "a"}\\n', encoding="utf-8")
    >>> fingerprint(str(path))["size"]
    12
"""

from __future__ import annotations

import hashlib
import os
import stat
from typing import Any

from inference.batch.streams import is_stream

_CHUNK = 1 << 20


def fingerprint(path: str) -> dict[str, Any] | None:
    """The size and SHA-256 of the regular file at ``path``; None for stdin, pipes and devices.

    Example:
        >>> fingerprint("-") is None, fingerprint("/dev/null") is None
        (True, True)
    """
    if is_stream(path):  # opening a FIFO would wait for a writer, and reading it would consume the input
        return None
    try:
        with open(path, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return None
            digest = hashlib.sha256()
            size = 0
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
    except OSError:
        return None
    return {"path": os.path.abspath(path), "size": size, "sha256": digest.hexdigest()}


def difference(before: dict[str, Any] | None, now: dict[str, Any] | None) -> str | None:
    """How the input changed between two fingerprints, or None when it did not (or cannot be told).

    Example:
        >>> difference({"size": 10, "sha256": "a"}, {"size": 12, "sha256": "b"})
        'its size changed from 10 to 12 bytes'
        >>> difference({"size": 10, "sha256": "a"}, {"size": 10, "sha256": "a"}) is None
        True
    """
    if not before or not now or "sha256" not in before:
        return None
    if before.get("size") != now["size"]:
        return f"its size changed from {before.get('size')} to {now['size']} bytes"
    if before["sha256"] != now["sha256"]:
        return "its content changed (same size, different SHA-256)"
    return None

"""Checks on the input and output files made before any work, each a one-line usage error.

* the input and the output must not be one file (``-o`` naming the input, a link to it, or
  the shell sending stdout into it): writing would destroy what is being read;
* an input in UTF-16 or UTF-32, or a JSON array where JSON Lines is expected, gets one error
  naming the encoding or format, instead of an error record on every line.

Example:
    >>> same_file("-", "-")
    False
"""

from __future__ import annotations

import os
import re
import stat
import sys

from inference.batch.formats import STDIO, UsageError

# Byte-order marks of the encodings people save "text" in by mistake (Windows editors, Excel).
_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)
_SNIFF_BYTES = 4096
_BINARY = "binary"
# An array of objects (or an empty one), on one line or pretty-printed. A first line such as
# `["a"]` or `[[[` is one bad row of a JSON Lines file, not an array file.
_JSON_ARRAY = re.compile(rb"\s*\[\s*[{\]]")


def _identity(path: str, stdio_fd: int | None) -> tuple[int, int] | None:
    """(device, inode) of a regular file named ``path`` (or behind ``stdio_fd`` for ``-``); None otherwise."""
    if path == STDIO and stdio_fd is None:
        return None
    try:
        info = os.fstat(stdio_fd) if path == STDIO else os.stat(path)
    except (OSError, ValueError):
        return None
    return (info.st_dev, info.st_ino) if stat.S_ISREG(info.st_mode) else None


def same_file(source: str, target: str) -> bool:
    """Whether reading ``source`` and writing ``target`` touch one regular file (links and ``-`` resolved).

    ``-`` is stdin for ``source`` and stdout for ``target``. A ``target`` that does not exist
    yet is a new file, never the source.

    Example:
        >>> import tempfile, pathlib, os
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / "in.jsonl").write_text("{}")
        >>> os.symlink(folder / "in.jsonl", folder / "link.jsonl")
        >>> same_file(str(folder / "in.jsonl"), str(folder / "link.jsonl")), same_file(str(folder / "in.jsonl"), "new")
        (True, False)
    """
    here = _identity(source, _fileno(sys.stdin))
    return here is not None and here == _identity(target, _fileno(sys.stdout))


def _fileno(stream: object) -> int | None:
    try:
        return stream.fileno()  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):  # replaced by an in-memory stream: not a file
        return None


def check_not_same_file(source: str, target: str, source_name: str = "INPUT") -> None:
    """Refuse to write ``target`` when it is the file ``source`` is read from.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "x.jsonl"
        >>> _ = path.write_text("{}")
        >>> check_not_same_file(str(path), str(path))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        inference.batch.formats.UsageError: -o .../x.jsonl: is the same file as INPUT .../x.jsonl; ...
    """
    if same_file(source, target):
        shown = "stdout" if target == STDIO else f"-o {target}"
        raise UsageError(
            f"{shown}: is the same file as {source_name} {_shown(source)}; "
            "writing it would destroy the input, so write to a new file"
        )


def _shown(path: str) -> str:
    return "(stdin)" if path == STDIO else path


# Compressed inputs would otherwise fail row by row as "not UTF-8".
_COMPRESSED = ((b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zstd"))
_DECOMPRESS = {"gzip": "zcat", "bzip2": "bzcat", "xz": "xzcat", "zstd": "zstdcat"}


def check_encoding_and_shape(path: str, fmt: str, head: bytes | None = None) -> None:
    """Refuse a compressed input, one in UTF-16/UTF-32, or a JSON array given as JSON Lines, with one clear error.

    ``head`` is the input's first bytes when they were read ahead (an input read only once, see
    :mod:`inference.batch.streams`); otherwise the file is opened and sniffed.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "in.jsonl"
        >>> _ = path.write_text('[{"id": 1}]', encoding="utf-8")
        >>> check_encoding_and_shape(str(path), "jsonl")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        inference.batch.formats.UsageError: INPUT .../in.jsonl: is a JSON array, not JSON Lines ...
    """
    if head is None:
        if path == STDIO:
            return  # stdin can be read only once: given no ``head`` read ahead, its rows are checked one by one
        try:
            with open(path, "rb") as f:
                head = f.read(_SNIFF_BYTES)
        except OSError:
            return  # reported by the reader, with the reason
    compressed = next((name for magic, name in _COMPRESSED if head.startswith(magic)), None)
    if compressed:
        raise UsageError(
            f"INPUT {path}: is {compressed}-compressed; decompress it first "
            f"(e.g. {_DECOMPRESS[compressed]} {path} | khabar predict - --input-format {fmt} ...)"
        )
    encoding = _wide_encoding(head)
    if encoding == _BINARY:
        raise UsageError(
            f"INPUT {path}: is mostly NUL bytes, so it is not UTF-8 text "
            "(binary data, or UTF-16/UTF-32 without a byte-order mark)"
        )
    if encoding:
        raise UsageError(
            f"INPUT {path}: is {encoding} text; khabar reads UTF-8, so convert it first "
            f"(e.g. iconv -f {encoding} -t UTF-8 {path} > new.{fmt})"
        )
    if _mostly_not_utf8(head):
        raise UsageError(
            f"INPUT {path}: is not UTF-8 text (most of its first non-ASCII bytes are not); khabar reads UTF-8, "
            f"so convert it first (Persian saved by Windows or Excel is usually Windows-1256: "
            f"iconv -f WINDOWS-1256 -t UTF-8 {path} > new.{fmt})"
        )
    if fmt == "jsonl" and _JSON_ARRAY.match(head.removeprefix(b"\xef\xbb\xbf")):
        raise UsageError(
            f"INPUT {path}: is a JSON array, not JSON Lines (one object per line); "
            f"convert it first (e.g. jq -c '.[]' {path} > new.jsonl)"
        )


def _mostly_not_utf8(head: bytes) -> bool:
    """Whether most non-ASCII characters of ``head`` are bytes UTF-8 cannot read: a file in a legacy
    encoding (Windows-1256, Latin-1), not a UTF-8 file with a damaged row (that one row is an error record).

    Example:
        >>> _mostly_not_utf8("خبر ورزشي امروز ".encode("cp1256") * 3), _mostly_not_utf8("خبر ورزشی امروز".encode())
        (True, False)
    """
    # surrogateescape keeps each byte UTF-8 cannot read as U+DC80-U+DCFF: a U+FFFD in the text
    # (left by an earlier lossy decoding) is a character, not a byte that could not be read.
    text = head.decode("utf-8", errors="surrogateescape")
    text = text[:-3] if len(head) >= _SNIFF_BYTES else text  # a cut head may end inside a character
    bad = sum(1 for char in text if "\udc80" <= char <= "\udcff")
    # At least a few words' worth: a handful of bad bytes are bad rows, each its own error record.
    return bad >= _LEGACY_MIN_BAD and bad * 2 > sum(1 for char in text if ord(char) > 0x7F)


_LEGACY_MIN_BAD = 32


def _wide_encoding(head: bytes) -> str | None:
    """UTF-16 or UTF-32 from a byte-order mark, or from NUL bytes, which UTF-8 text never holds;
    :data:`_BINARY` for NUL bytes in no such pattern."""
    for bom, name in _BOMS:
        if head.startswith(bom):
            return name
    pairs = head[: len(head) // 2 * 2]
    # A single stray NUL is a bad row, not an encoding.
    if not pairs.count(b"\x00") or pairs.count(b"\x00") < len(pairs) // 4:  # none, or a stray few
        return None
    # ASCII in UTF-16 has its NUL in every other byte, all on one side; /dev/zero has them on both.
    even, odd = pairs[0::2].count(0), pairs[1::2].count(0)
    return "UTF-16" if min(even, odd) * 8 < max(even, odd) else _BINARY

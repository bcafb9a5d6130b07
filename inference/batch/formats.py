"""The file formats ``khabar predict`` reads and writes, the fields of its records, and its usage error.

Input and output are JSONL, CSV or TSV, chosen by suffix; ``-`` is JSONL on stdin or stdout.

Example:
    >>> file_format("preds.tsv", "-o"), DELIMITERS["tsv"]
    ('tsv', '\\t')
"""

from __future__ import annotations

from pathlib import Path

STDIO = "-"
FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv"}
DELIMITERS = {"csv": ",", "tsv": "\t"}
# The fields a prediction record may carry, in output order; any other field is a kept input column.
OUTPUT_FIELDS = ("id", "line", "topic", "topic_score", "summary", "error")


_COMPRESSED_SUFFIXES = {".gz": "gzip", ".bz2": "bzip2", ".xz": "xz", ".zst": "zstd"}
_DECOMPRESS = {".gz": "zcat", ".bz2": "bzcat", ".xz": "xzcat", ".zst": "zstdcat"}


class UsageError(ValueError):
    """A mistake in the command line or its files: reported in one line, exit code 2.

    Example:
        >>> str(UsageError("in.txt: unknown format"))
        'in.txt: unknown format'
    """


def file_format(path: str, flag: str, explicit: str | None = None) -> str:
    """The format (``jsonl``, ``csv`` or ``tsv``) of ``path``: ``explicit``, else from its suffix; ``-`` is JSONL.

    Example:
        >>> file_format("news.CSV", "INPUT"), file_format("-", "-o"), file_format("/dev/stdin", "INPUT", "tsv")
        ('csv', 'jsonl', 'tsv')
    """
    if explicit is not None:
        return explicit
    if path == STDIO:
        return "jsonl"
    suffix = Path(path).suffix.lower()
    if suffix in _COMPRESSED_SUFFIXES and flag == "INPUT":  # its rows are not UTF-8: say so before the suffix
        inner = FORMATS.get(Path(Path(path).stem).suffix.lower(), "jsonl")
        raise UsageError(
            f"{flag} {path}: is {_COMPRESSED_SUFFIXES[suffix]}-compressed; decompress it first "
            f"(e.g. {_DECOMPRESS[suffix]} {path} | khabar predict - --input-format {inner} ...)"
        )
    if suffix not in FORMATS:
        raise UsageError(
            f"{flag} {path}: unknown format {suffix or '(no suffix)'!r}; use .jsonl, .csv or .tsv"
            + (" or name it with --input-format" if flag == "INPUT" else "")
        )
    return FORMATS[suffix]

"""Resume ``khabar predict`` onto an earlier output: which rows are done, and repair of a cut-off last record.

A row is known by its id and its input line together: ids alone can repeat (a CSV whose ids are
1..N beside an unreadable row, whose id is its line number; duplicated ids in the input), and a
count per id would then skip the wrong row and run another twice.

Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "out.jsonl"
    >>> _ = path.write_text('{"id": "a", "line": 1}\\n{"id": "b", "line": 2, "error": "x"}\\n', encoding="utf-8")
    >>> done = load_done(str(path), retry_errors=True)
    >>> dict(done.ids), done.retried
    ({('a', '1'): 1}, 1)
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from inference.batch.atomic import drop_spans
from inference.batch.formats import DELIMITERS, STDIO, UsageError, file_format
from inference.batch.reading import LineReader


@dataclass
class DoneRecords:
    """What an earlier run left in the output: how often each (id, line) occurs, bytes cut off, fields seen.

    ``retried`` counts error records removed so that their rows run again.

    Example:
        >>> DoneRecords(Counter({("a", "3"): 1}), 0).ids[("a", "3")]
        1
    """

    ids: Counter
    repaired_bytes: int
    fields: frozenset[str] = frozenset()
    retried: int = 0


@dataclass
class _Scan:
    """One pass over an output: ids of result records, where error records lie, where the good part ends."""

    ids: Counter = field(default_factory=Counter)
    fields: set[str] = field(default_factory=set)
    good_end: int = 0
    error_spans: list[tuple[int, int]] = field(default_factory=list)
    error_ids: Counter = field(default_factory=Counter)


# Every JSONL record khabar writes starts like this (json.dumps with the id first), so a cut-off
# last line that does not is someone else's data and is never truncated.
_RECORD_START = b'{"id": '


def load_done(path: str, retry_errors: bool = False) -> DoneRecords:
    """Read the ids already in the output at ``path`` and cut off a half-written last record.

    The whole file is checked to be khabar records (each with an ``id``) before
    anything is changed. Only the last record can be cut short by a crash (each batch is one
    flushed write), and only one that starts like a khabar record is cut off; any other damage
    means the file is not ours, and is a usage error. With ``retry_errors`` the error records
    are removed (the file is replaced atomically) so their rows run again.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "out.jsonl"
        >>> _ = path.write_text('{"id": "a", "line": 1}\\n{"id": "b", "li', encoding="utf-8")
        >>> done = load_done(str(path))
        >>> dict(done.ids), done.repaired_bytes, path.read_text(encoding="utf-8")
        ({('a', '1'): 1}, 15, '{"id": "a", "line": 1}\\n')
    """
    if path == STDIO:
        raise UsageError("--resume needs an output file, not stdout")
    if not Path(path).is_file() or Path(path).stat().st_size == 0:
        return DoneRecords(Counter(), 0)
    scan = (_done_jsonl if file_format(path, "-o") == "jsonl" else _done_csv)(path)
    size = Path(path).stat().st_size
    retried = 0
    try:
        if scan.good_end < size:
            with open(path, "r+b") as f:
                f.truncate(scan.good_end)
        if retry_errors and scan.error_spans:
            drop_spans(path, scan.error_spans)  # a copy without them replaces the file, or nothing changes
            retried = len(scan.error_spans)
    except OSError as exc:
        raise UsageError(
            f"-o {path}: cannot {'remove its error records' if scan.error_spans else 'repair it'} to resume "
            f"({exc.strerror or exc}); its records are unchanged: make room, then rerun the same command"
        ) from None
    if not retried:
        # Error records stay: their ids count as done.
        scan.ids.update(scan.error_ids)
    return DoneRecords(scan.ids, size - scan.good_end, frozenset(scan.fields), retried)


def done_key(record_id: object, line: object) -> tuple[str, str]:
    """How a row is known across runs: its id and its first input line, as the output writes them.

    Example:
        >>> done_key(7, 7) == done_key("7", "7"), done_key("7", 8) == done_key("7", 7)
        (True, False)
    """
    return str(record_id), str(line)


def _not_ours(path: str, line_no: int) -> UsageError:
    return UsageError(f"-o {path} line {line_no}: not a khabar record; cannot resume this file (it was left as it is)")


def _done_jsonl(path: str) -> _Scan:
    scan = _Scan()
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            record = _json_record(raw) if raw.endswith(b"\n") else None
            if record is None:
                cut_short = raw.startswith(_RECORD_START) or _RECORD_START.startswith(raw)
                if f.read(1) or not cut_short:
                    raise _not_ours(path, line_no)
                break
            if "error" in record:
                scan.error_spans.append((scan.good_end, scan.good_end + len(raw)))
                scan.error_ids[done_key(record["id"], record["line"])] += 1
            else:
                scan.ids[done_key(record["id"], record["line"])] += 1
            scan.fields.update(record)
            scan.good_end += len(raw)
    return scan


def _json_record(raw: bytes) -> dict | None:
    try:
        record = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    return record if isinstance(record, dict) and "id" in record and "line" in record else None


def _done_csv(path: str) -> _Scan:
    scan = _Scan()
    with open(path, "rb") as f:
        lines = LineReader(f)
        # strict: a record cut inside a quoted field must fail here, not be read as complete.
        reader = csv.reader(lines, delimiter=DELIMITERS[file_format(path, "-o")], strict=True)
        header = _complete_record(reader, lines)
        if header is None:
            if f.read(1):
                raise _not_ours(path, 1)
            return scan  # even the header was cut short: start the file again
        if "id" not in header or "line" not in header:
            raise UsageError(f"-o {path}: no 'id' and 'line' columns; cannot resume this file (it was left as it is)")
        scan.good_end = lines.offset
        error_column = header.index("error") if "error" in header else None
        while (values := _complete_record(reader, lines)) is not None and len(values) == len(header):
            record_id = done_key(values[header.index("id")], values[header.index("line")])
            if error_column is not None and values[error_column]:
                scan.error_spans.append((scan.good_end, lines.offset))
                scan.error_ids[record_id] += 1
            else:
                scan.ids[record_id] += 1
            scan.good_end = lines.offset
        if f.read(1):
            raise _not_ours(path, lines.line_no)
    scan.fields = set(header)
    return scan


def _complete_record(reader: Iterator[list[str]], lines: LineReader) -> list[str] | None:
    """The next CSV record if it was written out whole (ends with a line break), else None."""
    lines.start_record()
    try:
        values = next(reader)
    except (StopIteration, csv.Error):
        return None
    return values if lines.ended_with_newline else None

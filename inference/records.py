"""Read input rows and write prediction records for ``khabar predict``, one batch at a time.

Input is JSONL (one object per line), CSV or TSV with a header row, or ``-`` for JSONL on
stdin. Every row remembers the 1-based line where it starts: error records point at it, and
shard outputs are merged back into input order by it. A row that cannot be read (malformed
JSON, not UTF-8, a broken CSV record) still becomes a :class:`Row`, with ``problem`` set, so
the caller can write an error record and go on.

Output is JSONL, CSV or TSV (or ``-``: JSONL on stdout), appended and flushed once per batch,
so a crash loses at most the batch being written. :func:`load_done` repairs a half-written
last line and tells ``--resume`` which ids are already there.

Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "in.jsonl"
    >>> _ = path.write_text('{"id": "a", "article": "متن"}\\nnot json\\n', encoding="utf-8")
    >>> [(row.line, row.problem is None) for row in read_rows(str(path))]
    [(1, True), (2, False)]
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

STDIO = "-"
FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv"}
_DELIMITERS = {"csv": ",", "tsv": "\t"}
# Python's csv module refuses fields over 128 KiB by default, below our own text limit; raise it so
# a long article reaches the length check and gets a clear error record instead.
_CSV_FIELD_LIMIT = 2**31 - 1


class UsageError(ValueError):
    """A mistake in the command line or its files: reported in one line, exit code 2.

    Example:
        >>> str(UsageError("in.txt: unknown format"))
        'in.txt: unknown format'
    """


@dataclass(frozen=True)
class Row:
    """One input record: its 0-based position among records, its first line, and its fields.

    ``fields`` is None and ``problem`` says why when the record could not be read.

    Example:
        >>> Row(index=0, line=1, fields={"article": "متن"}).problem is None
        True
    """

    index: int
    line: int
    fields: dict[str, Any] | None
    problem: str | None = None


def file_format(path: str, flag: str) -> str:
    """The format (``jsonl``, ``csv`` or ``tsv``) of ``path`` from its suffix; ``-`` is JSONL.

    Example:
        >>> file_format("news.CSV", "INPUT"), file_format("-", "-o")
        ('csv', 'jsonl')
    """
    if path == STDIO:
        return "jsonl"
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(f"{flag} {path}: unknown format {suffix or '(no suffix)'!r}; use .jsonl, .csv or .tsv")
    return FORMATS[suffix]


def open_input(path: str, flag: str = "INPUT") -> BinaryIO:
    """Open ``path`` (or stdin for ``-``) for reading bytes; a missing file is a usage error.

    Example:
        >>> try:
        ...     open_input("no/such.jsonl")
        ... except UsageError as exc:
        ...     print(exc)
        INPUT no/such.jsonl: No such file or directory
    """
    if path == STDIO:
        return sys.stdin.buffer
    try:
        return open(path, "rb")  # noqa: SIM115 - the caller streams from it and closes it
    except OSError as exc:
        raise UsageError(f"{flag} {path}: {exc.strerror or exc}") from None


def read_rows(path: str, stream: BinaryIO | None = None, flag: str = "INPUT") -> Iterator[Row]:
    """Yield every record of the input at ``path`` lazily, in order, including unreadable ones.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "in.csv"
        >>> _ = path.write_text("id,article\\n7,متن\\n", encoding="utf-8")
        >>> next(read_rows(str(path))).fields
        {'id': '7', 'article': 'متن'}
    """
    fmt = file_format(path, flag)
    source = stream or open_input(path, flag)
    try:
        yield from _jsonl_rows(source) if fmt == "jsonl" else _csv_rows(source, _DELIMITERS[fmt])
    finally:
        if stream is None and source is not sys.stdin.buffer:
            source.close()


def csv_columns(path: str) -> list[str] | None:
    """The header of a CSV/TSV input, so a misspelled column is caught before any work; None for JSONL.

    Example:
        >>> csv_columns("-") is None
        True
    """
    fmt = file_format(path, "INPUT")
    if fmt == "jsonl":
        return None
    with open_input(path) as f:
        lines = _Lines(f)
        return next(csv.reader(lines, delimiter=_DELIMITERS[fmt]), [])


def count_rows(path: str) -> int | None:
    """How many records the input holds, for the progress bar's ETA; None for stdin.

    A quick pass over the file: far cheaper than running the models over it.

    Example:
        >>> count_rows("-") is None
        True
    """
    if path == STDIO:
        return None
    return sum(1 for _ in read_rows(path))


def _jsonl_rows(stream: BinaryIO) -> Iterator[Row]:
    index = 0
    for line_no, raw in enumerate(stream, start=1):
        if not raw.strip():
            continue  # blank lines (often a trailing one) are not records
        yield Row(index, line_no, *_parse_json_line(raw, first=line_no == 1))
        index += 1


def _parse_json_line(raw: bytes, first: bool) -> tuple[dict | None, str | None]:
    try:
        value = json.loads(raw.decode("utf-8-sig" if first else "utf-8"))
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8 text (byte {exc.start + 1} of the line)"
    except json.JSONDecodeError as exc:
        return None, f"malformed JSON: {exc.msg} at column {exc.colno}"
    if not isinstance(value, dict):
        return None, f"expected a JSON object, got {type_name(value)}"
    return value, None


class _Lines:
    """Decode a byte stream line by line for the csv module, counting lines and bytes read.

    A line that is not UTF-8 is decoded with replacement characters and remembered, so the
    record it belongs to can be reported instead of ending the whole run.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.line_no = 0
        self.offset = 0
        self.ended_with_newline = True
        self.bad_lines: set[int] = set()

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        raw = self._stream.readline()
        if not raw:
            raise StopIteration
        self.line_no += 1
        self.offset += len(raw)
        self.ended_with_newline = raw.endswith(b"\n")
        try:
            return raw.decode("utf-8-sig" if self.line_no == 1 else "utf-8")
        except UnicodeDecodeError:
            self.bad_lines.add(self.line_no)
            return raw.decode("utf-8", errors="replace")


def _csv_rows(stream: BinaryIO, delimiter: str) -> Iterator[Row]:
    csv.field_size_limit(_CSV_FIELD_LIMIT)
    lines = _Lines(stream)
    reader = csv.reader(lines, delimiter=delimiter)
    header = next(reader, None)
    if header is None:
        return
    index = 0
    while True:
        start = lines.line_no + 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield Row(index, start, None, f"malformed CSV: {exc}")
            index += 1
            continue
        if not values:
            continue  # a blank line
        yield Row(index, start, *_csv_fields(header, values, lines, start))
        index += 1


def _csv_fields(header: list[str], values: list[str], lines: _Lines, start: int) -> tuple[dict | None, str | None]:
    if any(start <= n <= lines.line_no for n in lines.bad_lines):
        lines.bad_lines.clear()
        return None, "not UTF-8 text"
    if len(values) > len(header):
        return None, f"{len(values)} fields but the header has {len(header)}"
    # A short row lacks its last columns; leaving them out makes a missing text column reportable.
    return dict(zip(header, values, strict=False)), None


def type_name(value: Any) -> str:
    """A user-facing name for the JSON type of ``value``.

    Example:
        >>> type_name(3), type_name(None), type_name(["a"])
        ('a number', 'null', 'a list')
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"


class RecordWriter:
    """Append prediction records to a JSONL/CSV/TSV file or stdout, one flushed write per batch.

    ``fields`` fixes the CSV columns (JSONL writes each record as it is). ``append=False``
    replaces the file. Appending to an existing CSV checks that its header matches, so a
    resumed run cannot shift columns.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "out.csv"
        >>> with RecordWriter(str(path), ["id", "topic"]) as out:
        ...     out.write([{"id": "a", "topic": "sports"}])
        >>> path.read_text(encoding="utf-8").splitlines()
        ['id,topic', 'a,sports']
    """

    def __init__(self, path: str, fields: list[str], append: bool = True) -> None:
        self.path = path
        self.format = file_format(path, "-o")
        self.fields = fields
        if path == STDIO:
            self._file = sys.stdout
        else:
            try:
                self._file = open(path, "a" if append else "w", encoding="utf-8", newline="")  # noqa: SIM115 - closed in close()
            except OSError as exc:
                raise UsageError(f"-o {path}: {exc.strerror or exc}") from None
        if self.format != "jsonl":
            self._start_csv()

    def _start_csv(self) -> None:
        if self.path != STDIO and Path(self.path).stat().st_size > 0:
            existing = csv_header(self.path)
            if existing != self.fields:
                self._file.close()
                raise UsageError(
                    f"-o {self.path}: its columns {existing} differ from this run's {self.fields}; "
                    "resume with the same --tasks and --keep-columns"
                )
        else:
            self._write_text(self._csv_text([dict(zip(self.fields, self.fields, strict=True))]))

    def write(self, records: Iterable[dict]) -> None:
        """Append ``records`` in one write and flush, so a crash never splits a batch mid-record."""
        if self.format == "jsonl":
            text = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
        else:
            text = self._csv_text(records)
        self._write_text(text)

    def _write_text(self, text: str) -> None:
        if text:
            self._file.write(text)
            self._file.flush()

    def _csv_text(self, records: Iterable[dict]) -> str:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, self.fields, delimiter=_DELIMITERS[self.format], lineterminator="\n")
        writer.writerows(records)
        return buffer.getvalue()

    def close(self) -> None:
        """Flush and close the file (stdout is only flushed)."""
        if self._file is sys.stdout:
            self._file.flush()
        else:
            self._file.close()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def csv_header(path: str) -> list[str]:
    """The header row of the CSV/TSV output at ``path``.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "out.tsv"
        >>> _ = path.write_text("id\\tline\\n", encoding="utf-8")
        >>> csv_header(str(path))
        ['id', 'line']
    """
    with open(path, encoding="utf-8", newline="") as f:
        return next(csv.reader(f, delimiter=_DELIMITERS[file_format(path, "-o")]), [])


@dataclass
class DoneRecords:
    """What an earlier run left in the output: how often each id occurs, bytes cut off, fields seen.

    Example:
        >>> DoneRecords(Counter({"a": 1}), 0).ids["a"]
        1
    """

    ids: Counter
    repaired_bytes: int
    fields: frozenset[str] = frozenset()


def load_done(path: str) -> DoneRecords:
    """Read the ids already in the output at ``path`` and cut off a half-written last record.

    Only the last record can be cut short by a crash (each batch is one flushed write); a
    damaged record anywhere else means the file is not ours, and is a usage error.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "out.jsonl"
        >>> _ = path.write_text('{"id": "a", "line": 1}\\n{"id": "b", "li', encoding="utf-8")
        >>> done = load_done(str(path))
        >>> dict(done.ids), done.repaired_bytes, path.read_text(encoding="utf-8")
        ({'a': 1}, 15, '{"id": "a", "line": 1}\\n')
    """
    if path == STDIO:
        raise UsageError("--resume needs an output file, not stdout")
    if not Path(path).is_file() or Path(path).stat().st_size == 0:
        return DoneRecords(Counter(), 0)
    ids, fields, good_end = (_done_jsonl if file_format(path, "-o") == "jsonl" else _done_csv)(path)
    size = Path(path).stat().st_size
    if good_end < size:
        with open(path, "r+b") as f:
            f.truncate(good_end)
    return DoneRecords(ids, size - good_end, frozenset(fields))


def _done_jsonl(path: str) -> tuple[Counter, set[str], int]:
    ids: Counter = Counter()
    fields: set[str] = set()
    good_end = 0
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            record = _json_record(raw) if raw.endswith(b"\n") else None
            if record is None:
                if f.read(1):
                    raise UsageError(f"-o {path} line {line_no}: not a khabar record; cannot resume this file")
                break
            ids[str(record["id"])] += 1
            fields.update(record)
            good_end += len(raw)
    return ids, fields, good_end


def _json_record(raw: bytes) -> dict | None:
    try:
        record = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) and "id" in record else None


def _done_csv(path: str) -> tuple[Counter, set[str], int]:
    ids: Counter = Counter()
    with open(path, "rb") as f:
        lines = _Lines(f)
        # strict: a record cut inside a quoted field must fail here, not be read as complete.
        reader = csv.reader(lines, delimiter=_DELIMITERS[file_format(path, "-o")], strict=True)
        header = _complete_record(reader, lines)
        if header is None:
            return ids, set(), 0  # even the header was cut short: start the file again
        if "id" not in header:
            raise UsageError(f"-o {path}: no 'id' column; cannot resume this file")
        good_end = lines.offset
        while (values := _complete_record(reader, lines)) is not None and len(values) == len(header):
            ids[values[header.index("id")]] += 1
            good_end = lines.offset
        if f.read(1):
            raise UsageError(f"-o {path} line {lines.line_no}: not a khabar record; cannot resume this file")
    return ids, set(header), good_end


def _complete_record(reader: Iterator[list[str]], lines: _Lines) -> list[str] | None:
    """The next CSV record if it was written out whole (ends with a line break), else None."""
    try:
        values = next(reader)
    except (StopIteration, csv.Error):
        return None
    return values if lines.ended_with_newline else None

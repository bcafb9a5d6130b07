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

import contextlib
import csv
import io
import json
import sys
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TextIO

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
    if suffix not in FORMATS:
        raise UsageError(
            f"{flag} {path}: unknown format {suffix or '(no suffix)'!r}; use .jsonl, .csv or .tsv"
            + (" or name it with --input-format" if flag == "INPUT" else "")
        )
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


def read_rows(path: str, stream: BinaryIO | None = None, flag: str = "INPUT", fmt: str | None = None) -> Iterator[Row]:
    """Yield every record of the input at ``path`` lazily, in order, including unreadable ones.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "in.csv"
        >>> _ = path.write_text("id,article\\n7,متن\\n", encoding="utf-8")
        >>> next(read_rows(str(path))).fields
        {'id': '7', 'article': 'متن'}
    """
    fmt = file_format(path, flag, fmt)
    source = stream or open_input(path, flag)
    try:
        yield from _jsonl_rows(source) if fmt == "jsonl" else _csv_rows(source, _DELIMITERS[fmt])
    finally:
        if stream is None and source is not sys.stdin.buffer:
            source.close()


def csv_columns(path: str, fmt: str | None = None) -> list[str] | None:
    """The header of a CSV/TSV input, so a misspelled column is caught before any work; None for JSONL.

    Example:
        >>> csv_columns("-") is None
        True
    """
    fmt = file_format(path, "INPUT", fmt)
    if fmt == "jsonl" or path == STDIO:
        return None  # stdin can be read only once: its header is checked as the rows are read
    with open_input(path) as f:
        lines = _Lines(f)
        return next(csv.reader(lines, delimiter=_DELIMITERS[fmt]), [])


def count_rows(path: str, fmt: str | None = None) -> int | None:
    """How many records the input holds, for the progress bar's ETA; None for stdin.

    A quick pass over the file: far cheaper than running the models over it.

    Example:
        >>> count_rows("-") is None
        True
    """
    if path == STDIO:
        return None
    return sum(1 for _ in read_rows(path, fmt=fmt))


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
        # Some messages end in "starting at" already ("Unterminated string starting at").
        return None, f"malformed JSON: {exc.msg.removesuffix(' at')} at column {exc.colno}"
    except RecursionError:
        return None, "malformed JSON: nested too deeply to read"
    if not isinstance(value, dict):
        return None, f"expected a JSON object, got {type_name(value)}"
    return value, None


class _Lines:
    """Decode a byte stream line by line for the csv module, counting lines and bytes read.

    A line that is not UTF-8 is decoded with replacement characters and flagged, so the record
    it belongs to can be reported instead of ending the whole run. The lines of the record being
    read are kept, so a record broken by a stray quote can give its lines back to be read again.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._read = 0  # physical lines taken from the stream
        self._replay: deque[_Line] = deque()
        self.line_no = 0
        self.offset = 0
        self.ended_with_newline = True
        self.record: list[_Line] = []

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = self._replay.popleft() if self._replay else self._next_line()
        self.line_no = line.number
        self.ended_with_newline = line.text.endswith("\n")
        self.record.append(line)
        return line.text

    def _next_line(self) -> _Line:
        raw = self._stream.readline()
        if not raw:
            raise StopIteration
        self._read += 1
        self.offset += len(raw)
        try:
            return _Line(self._read, raw.decode("utf-8-sig" if self._read == 1 else "utf-8"), bad=False)
        except UnicodeDecodeError:
            return _Line(self._read, raw.decode("utf-8", errors="replace"), bad=True)

    def start_record(self) -> None:
        """Forget the lines of the previous record."""
        self.record = []

    def read_again(self, lines: list[_Line]) -> None:
        """Give ``lines`` back: they are read before anything new from the stream."""
        self._replay.extendleft(reversed(lines))


@dataclass(frozen=True)
class _Line:
    number: int
    text: str
    bad: bool


def _csv_rows(stream: BinaryIO, delimiter: str) -> Iterator[Row]:
    csv.field_size_limit(_CSV_FIELD_LIMIT)
    lines = _Lines(stream)
    # strict: text after a closing quote (`"a" b`) is an error, not silently glued to the field.
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    broken = None
    try:
        header = next(reader, None)
    except csv.Error as exc:
        header, broken = None, exc
    if header is None:
        if lines.record:
            yield Row(0, 1, None, f"malformed CSV header: {broken}")
        return
    index = 0
    while True:
        lines.start_record()
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield Row(index, _first_line(lines), None, _broken_record(lines, f"malformed CSV: {exc}"))
            index += 1
            continue
        if not values:
            continue  # a blank line
        if len(values) > len(header) and len(lines.record) > 1:
            problem = f"{len(values)} fields but the header has {len(header)}"
            yield Row(index, _first_line(lines), None, _broken_record(lines, problem))
        else:
            yield Row(index, _first_line(lines), *_csv_fields(header, values, lines.record))
        index += 1


def _first_line(lines: _Lines) -> int:
    return lines.record[0].number if lines.record else lines.line_no


def _broken_record(lines: _Lines, problem: str) -> str:
    """Why a record is broken; one spread over several lines gives back all but its first.

    A quote left open reads on through the next lines and swallows them; reading them again,
    each on its own, accounts for every line instead of losing them inside one bad record.
    """
    taken = lines.record
    if len(taken) < 2:
        return problem
    lines.read_again(taken[1:])
    return f"{problem} (a quoted field opened here is not closed properly by line {taken[-1].number})"


def _csv_fields(header: list[str], values: list[str], taken: list[_Line]) -> tuple[dict | None, str | None]:
    if any(line.bad for line in taken):
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

    def __init__(self, path: str, fields: list[str], append: bool = True, resumable: bool = True) -> None:
        self.path = path
        self.resumable = resumable
        self.format = file_format(path, "-o")
        self.fields = fields
        self.written = 0
        self._failed = False
        if path == STDIO:
            self._file = sys.stdout
        else:
            try:
                self._file = self._open(append)
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

    def _open(self, append: bool) -> TextIO:
        return open(self.path, "a" if append else "w", encoding="utf-8", newline="")  # noqa: SIM115 - closed in close()

    def write(self, records: Iterable[dict]) -> None:
        """Append ``records`` in one write and flush, so a crash never splits a batch mid-record.

        A failed write (a full disk) is a :class:`UsageError` saying how many records are safe
        and how to finish; a record it cut short is repaired by ``--resume``.
        """
        records = list(records)
        if self.format == "jsonl":
            text = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
        else:
            text = self._csv_text(records)
        self._write_text(text)
        self.written += len(records)

    def _write_text(self, text: str) -> None:
        if not text:
            return
        try:
            self._file.write(text)
            self._file.flush()
        except BrokenPipeError:
            raise  # stdout's reader went away: the CLI stops quietly
        except OSError as exc:
            self._failed = True
            then = "rerun the same command with --resume to finish" if self.resumable else "run it again"
            raise UsageError(
                f"-o {self.path}: {exc.strerror or exc} after {self.written} records; make room, then {then}"
            ) from None

    def _csv_text(self, records: Iterable[dict]) -> str:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, self.fields, delimiter=_DELIMITERS[self.format], lineterminator="\n")
        writer.writerows(records)
        return buffer.getvalue()

    def close(self) -> None:
        """Flush and close the file (stdout is only flushed)."""
        if self._file is sys.stdout:
            self._file.flush()
        elif self._failed:
            # The disk is still full: flushing the rest would fail again, and what is written is repairable.
            with contextlib.suppress(OSError):
                self._file.close()
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

    ``retried`` counts error records removed so that their rows run again.

    Example:
        >>> DoneRecords(Counter({"a": 1}), 0).ids["a"]
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
        ({'a': 1}, 15, '{"id": "a", "line": 1}\\n')
    """
    if path == STDIO:
        raise UsageError("--resume needs an output file, not stdout")
    if not Path(path).is_file() or Path(path).stat().st_size == 0:
        return DoneRecords(Counter(), 0)
    scan = (_done_jsonl if file_format(path, "-o") == "jsonl" else _done_csv)(path)
    size = Path(path).stat().st_size
    if scan.good_end < size:
        with open(path, "r+b") as f:
            f.truncate(scan.good_end)
    retried = 0
    if retry_errors and scan.error_spans:
        from inference.atomic import drop_spans

        drop_spans(path, scan.error_spans)
        retried = len(scan.error_spans)
    else:
        # Error records stay: their ids count as done.
        scan.ids.update(scan.error_ids)
    return DoneRecords(scan.ids, size - scan.good_end, frozenset(scan.fields), retried)


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
                scan.error_ids[str(record["id"])] += 1
            else:
                scan.ids[str(record["id"])] += 1
            scan.fields.update(record)
            scan.good_end += len(raw)
    return scan


def _json_record(raw: bytes) -> dict | None:
    try:
        record = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    return record if isinstance(record, dict) and "id" in record else None


def _done_csv(path: str) -> _Scan:
    scan = _Scan()
    with open(path, "rb") as f:
        lines = _Lines(f)
        # strict: a record cut inside a quoted field must fail here, not be read as complete.
        reader = csv.reader(lines, delimiter=_DELIMITERS[file_format(path, "-o")], strict=True)
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
            record_id = values[header.index("id")]
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


def _complete_record(reader: Iterator[list[str]], lines: _Lines) -> list[str] | None:
    """The next CSV record if it was written out whole (ends with a line break), else None."""
    lines.start_record()
    try:
        values = next(reader)
    except (StopIteration, csv.Error):
        return None
    return values if lines.ended_with_newline else None

"""Read the input rows of ``khabar predict`` lazily, one record at a time.

Input is JSONL (one object per line), CSV or TSV with a header row, or ``-`` for JSONL on
stdin. Every row remembers the 1-based line where it starts: error records point at it, and
shard outputs are merged back into input order by it. A row that cannot be read (malformed
JSON, not UTF-8, a broken CSV record) still becomes a :class:`Row`, with ``problem`` set, so
the caller can write an error record and go on.

Records are written by :mod:`inference.batch.writing`; ``--resume`` reads an earlier output
with :mod:`inference.batch.resume`.

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
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from inference.batch.formats import DELIMITERS, STDIO, UsageError, file_format
from inference.batch.streams import OnceInput, is_stream

# Python's csv module refuses fields over 128 KiB by default, below our own text limit; raise it so
# a long article reaches the length check and gets a clear error record instead.
_CSV_FIELD_LIMIT = 2**31 - 1
# The longest JSONL line read into memory. A row's text may hold 200,000 characters (1.2 MB as
# JSON escapes); a longer line is no article, and reading a 1.5 GB line whole ran out of memory.
MAX_LINE_BYTES = 32 << 20


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
        yield from _jsonl_rows(source) if fmt == "jsonl" else _csv_rows(source, DELIMITERS[fmt])
    finally:
        if stream is None and source is not sys.stdin.buffer:
            source.close()


def csv_columns(path: str, fmt: str | None = None, once: OnceInput | None = None) -> list[str] | None:
    """The header of a CSV/TSV input, so a misspelled column is caught before any work; None for JSONL.

    An input read only once is given as ``once``, whose first bytes hold the header; without it,
    stdin's header is not checked before the rows.

    Example:
        >>> csv_columns("-") is None
        True
    """
    fmt = file_format(path, "INPUT", fmt)
    if fmt == "jsonl" or (once is None and path == STDIO) or (once is not None and not once.complete_first_line):
        return None
    csv.field_size_limit(_CSV_FIELD_LIMIT)
    with io.BytesIO(once.head) if once is not None else open_input(path) as f:
        lines = LineReader(f)
        try:
            header = next(csv.reader(lines, delimiter=DELIMITERS[fmt], strict=True), [])
        except csv.Error as exc:
            raise UsageError(f"INPUT {path} line 1: malformed CSV header: {csv_problem(exc)}") from None
    if len(lines.record) > 1:  # a quote opened in the header swallowed the lines after it
        raise UsageError(
            f"INPUT {path} line 1: malformed CSV header: a quoted field is not closed by line {lines.record[-1].number}"
        )
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:  # a row would keep only the last of the columns with that name
        raise UsageError(f"INPUT {path} line 1: the column {repeated[0]!r} appears twice in the header; rename one")
    return header


def csv_problem(exc: csv.Error) -> str:
    """The csv module's complaint in words a user can act on.

    Example:
        >>> csv_problem(csv.Error("new-line character seen in unquoted field - do you need ...?"))
        'lines end in a bare carriage return (old Mac style); save the file with LF or CRLF line ends'
    """
    if "new-line character seen in unquoted field" in str(exc):
        return "lines end in a bare carriage return (old Mac style); save the file with LF or CRLF line ends"
    if "unexpected end of data" in str(exc):
        return "a quoted field is not closed before the end of the file"
    return str(exc)


def count_rows(path: str, fmt: str | None = None) -> int | None:
    """How many records the input holds, for the progress bar's ETA; None for stdin, a pipe or a FIFO.

    A quick pass over the file: far cheaper than running the models over it.

    Example:
        >>> count_rows("-") is None
        True
    """
    if is_stream(path):  # read once, by the run itself
        return None
    return sum(1 for _ in read_rows(path, fmt=fmt))


def _jsonl_rows(stream: BinaryIO) -> Iterator[Row]:
    index = 0
    for line_no, raw in enumerate(_bounded_lines(stream, MAX_LINE_BYTES), start=1):
        if raw is None:
            yield Row(index, line_no, None, f"the line is over {_size(MAX_LINE_BYTES)}, no article; skipped unread")
        elif not raw.strip():
            continue  # blank lines (often a trailing one) are not records
        else:
            yield Row(index, line_no, *_parse_json_line(raw))
        index += 1


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n:,} bytes"


def _bounded_lines(stream: BinaryIO, limit: int) -> Iterator[bytes | None]:
    """The stream's lines, each None instead when it is longer than ``limit`` bytes (it is skipped, not kept).

    Example:
        >>> import io
        >>> list(_bounded_lines(io.BytesIO(b"ab\\n" + b"x" * 9 + b"\\ncd"), limit=4))
        [b'ab\\n', None, b'cd']
    """
    while raw := stream.readline(limit + 1):
        if raw.endswith(b"\n") or len(raw) <= limit:  # whole: ended within the limit, or the file did
            yield raw
            continue
        while (rest := stream.readline(1 << 20)) and not rest.endswith(b"\n"):
            pass  # the rest of the long line, in bounded pieces
        yield None


def _parse_json_line(raw: bytes) -> tuple[dict | None, str | None]:
    try:
        # utf-8-sig on every line: files joined with `cat` carry each one's byte-order mark mid-file.
        value = json.loads(raw.decode("utf-8-sig"), object_pairs_hook=unique_keys)
    except DuplicateKey as exc:
        return None, f"the key {exc.key!r} appears twice in one object; which one is meant is unclear"
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


class DuplicateKey(ValueError):
    """A JSON object names a key twice (``json`` would keep the last silently; the server refuses it too).

    Example:
        >>> DuplicateKey("article").key
        'article'
    """

    def __init__(self, key: str) -> None:
        super().__init__(f"duplicate key {key!r}")
        self.key = key


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A ``json.loads`` ``object_pairs_hook`` that raises :class:`DuplicateKey` for a key given twice.

    Shared by ``khabar predict``'s JSONL reader and the server's body check, so both refuse alike.

    Example:
        >>> json.loads('{"a": 1, "a": 2}', object_pairs_hook=unique_keys)
        Traceback (most recent call last):
        ...
        inference.batch.reading.DuplicateKey: duplicate key 'a'
    """
    record = dict(pairs)
    if len(record) < len(pairs):
        seen: set[str] = set()
        raise DuplicateKey(next(key for key, _ in pairs if key in seen or seen.add(key)))
    return record


class LineReader:
    """Decode a byte stream line by line for the csv module, counting lines and bytes read.

    A line that is not UTF-8 is decoded with replacement characters and flagged, so the record
    it belongs to can be reported instead of ending the whole run. The lines of the record being
    read are kept, so a record broken by a stray quote can give its lines back to be read again.

    Example:
        >>> import io
        >>> lines = LineReader(io.BytesIO(b"id\\na\\xff\\n"))
        >>> list(lines), lines.line_no, [line.bad for line in lines.record]
        (['id\\n', 'a\\ufffd\\n'], 2, [False, True])
    """

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._read = 0  # physical lines taken from the stream
        self._replay: deque[_Line] = deque()
        self.line_no = 0
        self.offset = 0
        self.ended_with_newline = True
        self.record: list[_Line] = []

    def __iter__(self) -> LineReader:
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
    lines = LineReader(stream)
    # strict: text after a closing quote (`"a" b`) is an error, not silently glued to the field.
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    broken = None
    try:
        header = next(reader, None)
    except csv.Error as exc:
        header, broken = None, exc
    if header is None:
        if lines.record:
            yield Row(0, 1, None, f"malformed CSV header: {csv_problem(broken) if broken else 'cut short'}")
        return
    index = 0
    while True:
        lines.start_record()
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield Row(index, _first_line(lines), None, _broken_record(lines, f"malformed CSV: {csv_problem(exc)}"))
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


def _first_line(lines: LineReader) -> int:
    return lines.record[0].number if lines.record else lines.line_no


def _broken_record(lines: LineReader, problem: str) -> str:
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

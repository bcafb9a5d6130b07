"""Write prediction records for ``khabar predict``: JSONL, CSV or TSV (or ``-``: JSONL on stdout).

Records are appended and flushed once per batch, so a crash loses at most the batch being
written; ``--resume`` repairs that (see :mod:`inference.batch.resume`).

Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "out.jsonl"
    >>> with RecordWriter(str(path), ["id"]) as out:
    ...     out.write([{"id": "a"}, {"id": "b"}])
    >>> out.written, path.read_text(encoding="utf-8").count("\\n")
    (2, 2)
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from inference.batch.formats import DELIMITERS, STDIO, UsageError, file_format


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
                f"-o {self.path}: {exc.strerror or exc} after {self.written} records of this run; "
                f"make room, then {then}"
            ) from None

    def _csv_text(self, records: Iterable[dict]) -> str:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, self.fields, delimiter=DELIMITERS[self.format], lineterminator="\n")
        # A kept list, object or boolean is written as JSON (["a", "b"], true), as in JSONL output,
        # not as Python's repr (['a', 'b'], True) that no other tool reads back.
        writer.writerows({k: _csv_value(v) for k, v in record.items()} for record in records)
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


def _csv_value(value: object) -> object:
    return value if value is None or isinstance(value, str) else json.dumps(value, ensure_ascii=False)


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
        return next(csv.reader(f, delimiter=DELIMITERS[file_format(path, "-o")]), [])

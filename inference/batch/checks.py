"""Check one input row for ``khabar predict`` (and the serve API): its id, its text, its title, its kept columns.

A row that passes becomes a :class:`ReadyRow` for the models; any other becomes an error
record saying what is wrong, so one bad row never stops the run.

Example:
    >>> from inference.batch.reading import Row
    >>> check_row(Row(0, 4, {"id": "n1", "article": ""}), InputColumns())
    {'id': 'n1', 'line': 4, 'error': "text field 'article' is empty"}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from inference.batch.formats import OUTPUT_FIELDS, UsageError
from inference.batch.reading import Row, type_name
from inference.batch.safe_records import escape_surrogates, record_id
from inference.batch.safe_records import problem as unwritable
from inference.normalize import join_title

# Longer articles are split into windows by the classifier and truncated by the summarizer, as
# the inference API does; past this size a "text" is almost surely a mis-parsed file or a dump,
# and holding it would break the flat memory promise.
MAX_TEXT_CHARS = 200_000


@dataclass(frozen=True)
class InputColumns:
    """Which input fields hold the text, title and id, and which to copy to the output.

    ``text=None`` means ``article``, falling back to ``text``. Kept columns named like an
    output field are written as ``input_NAME``.

    Example:
        >>> InputColumns(keep=("summary", "source")).kept_names()
        ['input_summary', 'source']
    """

    text: str | None = None
    title: str | None = None
    id: str = "id"
    keep: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for flag, name in (("--text-column", self.text), ("--title-column", self.title), ("--id-column", self.id)):
            if name is not None and not name.strip():  # "" read as "not given" fell back to article silently
                raise UsageError(f"{flag}: expected a column name, got {name!r}")
        written: dict[str, str] = {}
        for name, out in zip(self.keep, self.kept_names(), strict=True):
            if out in written:  # one output field would hold two input fields, the first lost
                if written[out] == name:
                    raise UsageError(f"--keep-columns: {name} is given twice; keep it once")
                raise UsageError(f"--keep-columns: {written[out]} and {name} would both be written as {out}; keep one")
            written[out] = name

    def kept_names(self) -> list[str]:
        """The output names of the kept columns."""
        return [f"input_{name}" if name in OUTPUT_FIELDS else name for name in self.keep]


@dataclass
class ReadyRow:
    """A row that passed the checks: what the models read and what the record carries.

    Example:
        >>> ReadyRow({"id": "a", "line": 1}, "متن", "عنوان. متن").classifier_text
        'عنوان. متن'
    """

    record: dict
    text: str
    classifier_text: str


def row_id(row: Row, id_column: str) -> str | int:
    """The row's id: its ``id_column`` value, else (missing, empty or unreadable) its line number.

    A non-string id keeps its JSON text (see :func:`~inference.batch.safe_records.record_id`).

    Example:
        >>> row_id(Row(0, 5, {"id": "x9"}), "id"), row_id(Row(1, 6, {}), "id"), row_id(Row(2, 7, {"id": 1.5}), "id")
        ('x9', 6, '1.5')
    """
    value = record_id((row.fields or {}).get(id_column))
    return row.line if value is None else value


def check_row(row: Row, columns: InputColumns) -> ReadyRow | dict:
    """Turn a row into model input, or into an error record saying what is wrong with it.

    Example:
        >>> check_row(Row(0, 3, {"article": 42}), InputColumns())["error"]
        "text field 'article' is a number, not a string"
    """
    record: dict[str, Any] = {"id": row_id(row, columns.id), "line": row.line}
    fields = row.fields or {}
    # _finish moves the kept columns behind the results.
    kept = {out: fields.get(name) for name, out in zip(columns.keep, columns.kept_names(), strict=True)}
    # A value that cannot be written (a lone surrogate, say) must not take its batch down with it.
    problem = row.problem or unwritable({columns.id: fields.get(columns.id), **kept})
    record.update(escape_surrogates(kept))
    problem = problem or _text_problem(fields, columns)
    if problem:
        return {**record, "error": problem}
    text = fields[_text_column(fields, columns)]
    title = fields.get(columns.title) if columns.title else None
    if title is not None and not isinstance(title, str):
        return {**record, "error": f"title field {columns.title!r} is {type_name(title)}, not a string"}
    if title is not None and (problem := unwritable({columns.title: title})):
        return {**record, "error": problem}
    return ReadyRow(record, text, join_title(title, text))


def _text_column(fields: dict, columns: InputColumns) -> str:
    if columns.text:
        return columns.text
    return "article" if "article" in fields else "text"


def _text_problem(fields: dict, columns: InputColumns) -> str | None:
    name = _text_column(fields, columns)
    value = fields.get(name)
    if value is None:
        wanted = repr(name) if columns.text else "'article' or 'text'"
        return f"no text: field {wanted} is missing" if name not in fields else f"no text: field {name!r} is null"
    if not isinstance(value, str):
        return f"text field {name!r} is {type_name(value)}, not a string"
    if not value.strip():
        return f"text field {name!r} is empty"
    if len(value) > MAX_TEXT_CHARS:
        return f"text is {len(value):,} characters, over the {MAX_TEXT_CHARS:,} limit"
    return unwritable({name: value})

"""Load labelled news from local files or the Hugging Face hub into a uniform shape.

Users keep their own column names: a :class:`Columns` mapping says which column holds the
article, the topic, the summary and (optionally) the title. Whatever the source, the loaded
``datasets.Dataset`` has the columns ``text`` and the task's target (``label`` or ``summary``),
plus ``title`` when mapped, all normalized with :func:`inference.normalize`.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import datasets

from inference.batch.reading import DuplicateKey, unique_keys
from inference.model_checks import first_line
from inference.normalize import NORMALIZER_VERSION, DigitPolicy, normalize

if TYPE_CHECKING:
    from training.config import DataConfig

log = logging.getLogger(__name__)

# ``owner/name`` or ``name`` as the hub spells them; anything else that does not exist is a missing local file.
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")
BOM = "\ufeff"
TABLES = ("csv", "tsv")
LOCAL_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet"}


class DataError(ValueError):
    """A problem with the user's data, reported in one line naming the file, line or column."""


@dataclass(frozen=True)
class Columns:
    """Which of the user's columns feed the model.

    Example:
        >>> Columns(text="body", label="topic").target
        'topic'
    """

    text: str = "article"
    label: str | None = None
    summary: str | None = None
    title: str | None = None

    @property
    def target(self) -> str | None:
        """The column the model learns to predict (label for topics, summary for summaries)."""
        return self.label or self.summary


# Not inference.batch.reading: that reader turns a bad record into an error record and reads on
# (a prediction run must not stop), is strict about CSV quotes and extra fields, and accepts a BOM;
# training stops at the first bad record with one DataError and reads CSV as DictReader does, so
# sharing it would change which training files load and how their errors read.
def _json_lines(path: Path) -> Iterator[tuple[int, dict]]:
    with path.open(encoding="utf-8") as f:
        try:
            for number, line in enumerate(f, start=1):
                if not line.strip().lstrip(BOM):
                    continue
                try:
                    # A byte-order mark (Windows editors write one; files joined with cat carry them
                    # inside) is not part of the record. A key given twice is refused, as khabar predict does.
                    row = json.loads(line.lstrip(BOM), object_pairs_hook=unique_keys)
                except DuplicateKey as error:
                    raise DataError(f"{path}:{number}: the key {error.key!r} appears twice in one object") from None
                except json.JSONDecodeError as error:
                    if number == _first_line(path) and line.lstrip(BOM).lstrip().startswith("["):
                        raise DataError(
                            f"{path}: is a JSON array, not JSON Lines (one object per line); "
                            f"convert it first (e.g. jq -c '.[]' {path} > new.jsonl)"
                        ) from None
                    raise DataError(f"{path}:{number}: malformed JSON ({error.msg})") from None
                if (
                    isinstance(row, list)
                    and all(isinstance(item, dict) for item in row)
                    and number == _first_line(path)
                ):
                    raise DataError(
                        f"{path}: is a JSON array, not JSON Lines (one object per line); "
                        f"convert it first (e.g. jq -c '.[]' {path} > new.jsonl)"
                    )
                if not isinstance(row, dict):
                    raise DataError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
                yield number, row
        except UnicodeDecodeError:
            raise encoding_error(path) from None


def _csv_rows(path: Path, delimiter: str) -> Iterator[tuple[int, dict]]:
    # utf-8-sig: Excel starts a CSV with a byte-order mark, which would become part of the first column's name.
    # Python's csv refuses fields over 128 KiB by default; a long article is truncated later, not a crash.
    csv.field_size_limit(_CSV_FIELD_LIMIT)
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        try:
            for row in reader:
                # line_num is the record's last line; a quoted field can span lines, and a record is
                # named by the line it starts on.
                spanned = sum(value.count("\n") for value in row.values() if isinstance(value, str))
                yield reader.line_num - spanned, row
        except UnicodeDecodeError:
            raise encoding_error(path) from None
        except csv.Error as exc:
            raise DataError(f"{path}:{reader.line_num}: malformed CSV ({exc})") from None


_CSV_FIELD_LIMIT = 2**31 - 1


def _first_line(path: Path) -> int:
    """The number of ``path``'s first line that is not blank (where a JSON array's ``[`` would be)."""
    with path.open(encoding="utf-8", errors="replace") as f:
        return next((number for number, line in enumerate(f, start=1) if line.strip().lstrip(BOM)), 1)


def encoding_error(path: Path) -> DataError:
    """A :class:`DataError` naming the first line of ``path`` that is not UTF-8, and what it holds instead.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "config.yaml"
        >>> _ = path.write_bytes("task: x\\n# café\\n".encode("latin-1"))
        >>> str(encoding_error(path))  # doctest: +ELLIPSIS
        '...config.yaml:2: not valid UTF-8 (byte 0xe9 at column 6); save the file as UTF-8'
    """
    # The decoder reads ahead in blocks, so its error cannot say which line; find it again byte by byte.
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as error:
                utf16 = number == 1 and raw[:2] in (b"\xff\xfe", b"\xfe\xff")
                found = "UTF-16 text" if utf16 else f"byte 0x{raw[error.start]:02x} at column {error.start + 1}"
                return DataError(f"{path}:{number}: not valid UTF-8 ({found}); save the file as UTF-8")
    return DataError(f"{path}: not valid UTF-8; save the file as UTF-8")


def _parquet_rows(path: Path) -> Iterator[tuple[int, dict]]:
    try:
        table = datasets.Dataset.from_parquet(str(path))
    except Exception as exc:  # noqa: BLE001 - pyarrow's errors (ArrowInvalid, OSError, ...) share no base
        raise DataError(f"{path}: cannot be read as Parquet ({first_line(exc)})") from None
    yield from enumerate(table, start=1)


def looks_like_hub_id(source: str) -> bool:
    """Whether ``source`` has the shape of a hub dataset id: ``name`` or ``owner/name``, not an absolute or ./ path.

    Example:
        >>> [looks_like_hub_id(s) for s in ("HooshvareLab/pn_summary", "pn_summary", "/data/x", "./x", "a/b/c")]
        [True, True, False, False, False]
    """
    return HUB_ID.fullmatch(source) is not None


def read_records(source: str, split: str = "train") -> Iterator[tuple[int, dict]]:
    """Yield ``(line_or_row_number, row)`` from a local JSONL/CSV/TSV/Parquet file or a hub dataset.

    Anything that is not an existing local file is treated as a ``datasets`` hub id, read at ``split``.

    Example:
        >>> rows = read_records("data/sample/test.jsonl")
        >>> number, row = next(rows)
        >>> number, sorted(row)[:2]
        (1, ['article', 'category'])
    """
    path = Path(source)
    suffix = path.suffix.lower()
    if path.is_file():
        if suffix not in LOCAL_FORMATS:
            raise DataError(f"{path}: unsupported file type {suffix!r}; use one of {', '.join(LOCAL_FORMATS)}")
        kind = LOCAL_FORMATS[suffix]
        if kind == "json":
            return _json_lines(path)
        if kind == "parquet":
            return _parquet_rows(path)
        return _csv_rows(path, "\t" if kind == "tsv" else ",")
    if suffix in LOCAL_FORMATS or not (path.exists() or looks_like_hub_id(source)):
        raise DataError(f"{path}: no such file")
    try:
        hub = datasets.load_dataset(source, split=split)
    except Exception as error:  # the hub client raises many types; the user needs one line
        reason = first_line(error)
        raise DataError(f"{source}: not a local file and could not be loaded from the hub ({reason})") from None
    return enumerate(hub, start=1)


def _check_columns(source: str, row: dict, columns: Columns, number: int) -> None:
    wanted = [c for c in (columns.text, columns.target, columns.title) if c]
    for column in wanted:
        if column not in row:
            fix = "; no headlines? set data.title_column=null (khabar-train evaluate: --title-column none)"
            raise DataError(
                f"{source}:{number}: column {column!r} not found; columns are: {', '.join(map(str, row))}"
                + (fix if column == columns.title else "")
            )


def check_plain_values(source: str, number: int, row: dict, columns: Columns) -> None:
    """Refuse a list or an object where the model reads text: ``str()`` would train on its Python repr.

    Example:
        >>> check_plain_values("d.jsonl", 3, {"article": ["a", "b"]}, Columns())  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        training.data.DataError: d.jsonl:3: column 'article' holds a list (["a", "b"]), not text; ...
    """
    for column in (columns.text, columns.target, columns.title):
        value = row.get(column) if column else None
        if isinstance(value, (list, tuple, dict)):
            kind = "an object" if isinstance(value, dict) else "a list"
            shown = json.dumps(value, ensure_ascii=False, default=str)
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            raise DataError(
                f"{source}:{number}: column {column!r} holds {kind} ({shown}), not text; "
                "each cell must be a string or a number"
            )


def _clean(value: object, digits: DigitPolicy, version: int) -> str:
    return normalize(value_text(value), digits, version)


def value_text(value: object) -> str:
    """A cell as text: ``None``, NaN and blanks are missing (``""``); ``0``, ``0.0`` and ``False`` are values.

    Example:
        >>> [value_text(v) for v in (0, 0.0, False, "0", " sports ", None, float("nan"), "  ")]
        ['0', '0.0', 'False', '0', 'sports', '', '', '']
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


def load_split(
    source: str,
    columns: Columns,
    split: str = "train",
    digits: DigitPolicy = "persian",
    limit: int | None = None,
    version: int = NORMALIZER_VERSION,
    lines: bool = False,
) -> datasets.Dataset:
    """Load one split as a ``Dataset`` with normalized ``text`` and target columns.

    With ``lines``, a ``line`` column says where each kept row is in the source: its line in a
    JSONL/CSV/TSV file, its record number (from 1) in Parquet or hub data.

    Rows whose text or target is missing or empty (after normalization) are dropped and
    counted in the log; a missing column is a :class:`DataError` naming the file and the
    columns that exist.

    Example:
        >>> ds = load_split("data/sample/test.jsonl", Columns(text="article", label="category"))
        >>> ds.column_names
        ['text', 'label']
    """
    out: dict[str, list[str]] = {"text": []}
    target_name = "label" if columns.label else "summary" if columns.summary else None
    if target_name:
        out[target_name] = []
    if columns.title:
        out["title"] = []
    if lines:
        out["line"] = []
    dropped = 0
    for index, (number, row) in enumerate(read_records(source, split)):
        if index == 0:  # a CSV/TSV names its columns on line 1, a JSONL row on its own line
            table = LOCAL_FORMATS.get(Path(source).suffix.lower()) in TABLES
            _check_columns(source, row, columns, 1 if table else number)
        check_plain_values(source, number, row, columns)
        text = _clean(row.get(columns.text), digits, version)
        target = row.get(columns.target) if columns.target else "-"
        target = _clean(target, digits, version) if target_name == "summary" else value_text(target)
        if not text or not target:
            dropped += 1
            continue
        out["text"].append(text)
        if target_name:
            out[target_name].append(target)
        if columns.title:
            out["title"].append(_clean(row.get(columns.title), digits, version))
        if lines:
            out["line"].append(number)
        if limit and len(out["text"]) >= limit:
            break
    if dropped:
        log.warning(
            "%s: dropped %d rows with a missing or empty %s",
            source,
            dropped,
            " or ".join(c for c in (columns.text, columns.target) if c),
        )
    if not out["text"]:
        raise DataError(f"{source}: no usable rows (every row lacks {columns.text!r} or {columns.target!r})")
    return datasets.Dataset.from_dict(out)


def split_off_validation(
    train: datasets.Dataset, fraction: float, seed: int
) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Carve a deterministic validation split out of ``train`` (same seed, same rows).

    Example:
        >>> ds = datasets.Dataset.from_dict({"text": [str(i) for i in range(10)]})
        >>> train, validation = split_off_validation(ds, 0.2, seed=0)
        >>> len(train), len(validation)
        (8, 2)
    """
    if not 0 < fraction < 1:
        raise DataError(f"validation fraction must be between 0 and 1, got {fraction}")
    held_out = math.ceil(len(train) * fraction)  # as datasets rounds it
    if len(train) - held_out < 1:
        raise DataError(
            f"{len(train)} training row(s) are too few to hold out data.validation_fraction={fraction} and keep "
            "rows to train on; give data.validation_file or more rows"
        )
    parts = train.train_test_split(test_size=fraction, seed=seed, shuffle=True)
    return parts["train"], parts["test"]


def load_splits(data: DataConfig, columns: Columns, seed: int) -> dict[str, datasets.Dataset]:
    """The train, validation and (when configured) test splits a config names, normalized.

    Without ``data.validation_file`` a seeded ``data.validation_fraction`` of the training rows is held out.

    Example:
        >>> from training.config import load_config
        >>> cfg = load_config("configs/classifier/tiny.yaml")
        >>> sorted(load_splits(cfg.data, Columns(label="category"), cfg.train.seed))
        ['test', 'train', 'validation']
    """
    version = data.normalization_version
    splits = {"train": load_split(data.train_file, columns, "train", data.digits, data.max_train_samples, version)}
    if data.validation_file:
        splits["validation"] = load_split(data.validation_file, columns, "validation", data.digits, version=version)
    else:
        splits["train"], splits["validation"] = split_off_validation(splits["train"], data.validation_fraction, seed)
    if data.test_file:
        splits["test"] = load_split(data.test_file, columns, "test", data.digits, version=version)
    for name in ("validation", "test"):
        if name in splits and data.max_eval_samples and len(splits[name]) > data.max_eval_samples:
            splits[name] = splits[name].select(range(data.max_eval_samples))
    return splits

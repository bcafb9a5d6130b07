"""The rows an evaluation reads: normalized as the model was trained, with a count of unusable rows."""

from __future__ import annotations

from inference.normalize import load_normalization
from training.data import Columns, load_split, read_records


def load_rows(
    source: str, columns: Columns, split: str = "test", limit: int | None = None, normalization: dict | None = None
) -> tuple[dict, int]:
    """Load the evaluation rows (normalized) and count the rows skipped for a missing field.

    ``normalization`` is the model's record (``load_normalization``): rows are read with its
    digits and version, so a report scores a model on the text it was trained on.

    Returns ``(rows, skipped)``: ``rows`` maps ``text``, the target, ``title`` (``None`` when
    unmapped) and ``line`` (where the row is in the file) to lists. The whole file is read even
    with ``limit``, so that ``skipped`` describes the file, not only the prefix that was evaluated.

    Example:
        >>> rows, skipped = load_rows("data/sample/test.jsonl", Columns(label="category"), limit=3)
        >>> len(rows["text"]), skipped
        (3, 0)
    """
    total = sum(1 for _ in read_records(source, split))
    record = normalization or load_normalization(None)
    data = load_split(source, columns, split=split, digits=record["digits"], version=record["version"], lines=True)
    skipped = total - len(data)
    if limit:
        data = data.select(range(min(limit, len(data))))
    rows = data.to_dict()
    rows.setdefault("title", [None] * len(data))
    return rows, skipped

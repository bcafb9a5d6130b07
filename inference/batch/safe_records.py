"""Make every output record writable: valid UTF-8, valid JSON, never NaN.

A JSON input can hold things that parse but cannot be written back out: a lone surrogate
(``"a\\ud800"``) is not valid Unicode and so not valid UTF-8, a float score can be NaN or
infinite, which JSON has no spelling for, and a value can be nested deeper than the encoder
follows. Such a record becomes an error record naming the field, so the rest of its batch is
written and a resumed run finds it under the same id.

Example:
    >>> writable({"id": "a", "line": 1, "topic": "sports", "topic_score": float("nan")})["error"]
    'topic_score is NaN, not a finite number'
"""

from __future__ import annotations

import json
import math
from typing import Any

# The fields a record carries in every run, as opposed to kept input columns.
_RESULT_FIELDS = ("topic", "topic_score", "summary")


def has_surrogate(text: str) -> bool:
    """Whether ``text`` holds a lone UTF-16 surrogate, which no UTF-8 file can store.

    Example:
        >>> has_surrogate("a\\ud800"), has_surrogate("خبر")
        (True, False)
    """
    return any("\ud800" <= char <= "\udfff" for char in text)


def escape_surrogates(value: Any) -> Any:
    """``value`` with each lone surrogate written as its escape text (``\\ud800``), in keys and nested values.

    Example:
        >>> escape_surrogates({"k": ["a\\ud800"]})
        {'k': ['a\\\\ud800']}
    """
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8") if has_surrogate(value) else value
    if isinstance(value, list):
        return [escape_surrogates(item) for item in value]
    if isinstance(value, dict):
        return {escape_surrogates(key): escape_surrogates(item) for key, item in value.items()}
    return value


def record_id(value: Any) -> str | int | None:
    """The id a record carries for an input id ``value``; None when the row has no usable id.

    Strings and whole numbers stay as they are; other scalars (``1.5``, ``true``, ``1234.0``)
    are kept as their JSON text, so they never collide with another row's line number; a lone
    surrogate is written as its escape text. A list or an object is no id.

    Example:
        >>> record_id("x9"), record_id(7), record_id(1234.0), record_id(True), record_id(None), record_id(["x"])
        ('x9', 7, '1234.0', 'true', None, None)
    """
    if value is None or value == "" or isinstance(value, (list, dict)):
        return None
    if isinstance(value, str):
        return escape_surrogates(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return json.dumps(value)  # a float or a boolean: 1.5, 1234.0, true


def problem(record: dict) -> str | None:
    """Why ``record`` cannot be written as one line of valid UTF-8 JSON, or None when it can.

    Example:
        >>> problem({"id": "a", "note": "x\\udc80"})
        "field 'note' holds a lone surrogate (\\\\udc80), which is not valid Unicode"
        >>> problem({"id": "a", "topic_score": 0.5}) is None
        True
    """
    for name, value in record.items():
        if isinstance(value, float) and not math.isfinite(value):
            return f"{name} is {_float_text(value)}, not a finite number"
        try:
            json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            bad = exc.object[exc.start : exc.end].encode("utf-8", "backslashreplace").decode("ascii")
            return f"field {name!r} holds a lone surrogate ({bad}), which is not valid Unicode"
        except RecursionError:
            return f"field {name!r} is nested too deeply to write"
        except ValueError:
            return f"field {name!r} holds a number that is not finite"
    return None


def writable(record: dict) -> dict:
    """``record`` itself when it can be written, else an error record for the same id and line.

    The error record keeps the kept columns, with lone surrogates escaped, and drops results.

    Example:
        >>> record = writable({"id": "a\\ud800", "line": 3, "topic": "sports", "topic_score": 0.9})
        >>> record["id"], record["error"]
        ('a\\\\ud800', "field 'id' holds a lone surrogate (\\\\ud800), which is not valid Unicode")
    """
    reason = problem(record)
    if reason is None:
        return record
    kept = {k: v for k, v in record.items() if k not in (*_RESULT_FIELDS, "error")}
    fixed = {}
    for name, value in kept.items():
        value = escape_surrogates(value)
        fixed[escape_surrogates(name)] = value if problem({name: value}) is None else None
    fixed["id"] = record_id(record.get("id")) if record.get("id") is not None else fixed.get("id")
    ordered = {"id": fixed.pop("id"), "line": fixed.pop("line", None), "error": reason}
    return {**ordered, **fixed}


def _float_text(value: float) -> str:
    return "NaN" if math.isnan(value) else ("infinite" if value > 0 else "-infinite")

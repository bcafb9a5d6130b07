"""The texts a model reads: checked and normalized up front, then batched by length.

Example:
    >>> prepare_texts(["كتاب"], digits="persian")
    (['کتاب'], False)
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Iterator, Mapping

from inference.normalize import NORMALIZER_VERSION, DigitPolicy, normalize


def prepare_texts(
    texts: str | Iterable[str], digits: DigitPolicy, version: int = NORMALIZER_VERSION
) -> tuple[list[str], bool]:
    """Check and normalize ``texts``; return them as a list and whether a single string was given.

    Every text is checked before any model work; a bad one raises ``TypeError``/``ValueError``
    whose message starts with ``text at index I:``.

    Example:
        >>> prepare_texts("خبر ١", digits="persian")
        (['خبر ۱'], True)
        >>> prepare_texts(["خبر", "  "], digits="persian")
        Traceback (most recent call last):
        ...
        ValueError: text at index 1: empty or whitespace only
    """
    if isinstance(texts, str):
        items, single = [texts], True
    elif isinstance(texts, (bytes, bytearray, memoryview)):  # iterating them gives ints: say what was meant
        raise TypeError(
            f"text at index 0: expected a string or a list of strings, got {type(texts).__name__}; "
            "decode it first (data.decode('utf-8'))"
        )
    elif _is_table(texts):  # iterating a DataFrame gives its column names: one wrong answer per column
        raise TypeError(
            f"text at index 0: expected a string or a list of strings, got a {type(texts).__name__}; "
            "pass one column of it, e.g. frame['article']"
        )
    elif getattr(texts, "ndim", None) == 0:  # a 0-d numpy array holds one value and cannot be iterated
        return prepare_texts(texts.item(), digits, version)
    elif texts is None or isinstance(texts, (Mapping, set, frozenset)) or not isinstance(texts, Iterable):
        raise TypeError(f"text at index 0: expected a string or a list of strings, got {type(texts).__name__}")
    else:
        items, single = list(texts), False
    prepared = []
    for index, text in enumerate(items):
        if not isinstance(text, str):
            raise TypeError(f"text at index {index}: expected a string, got {type(text).__name__}")
        if not text.strip():
            raise ValueError(f"text at index {index}: empty or whitespace only")
        clean = normalize(text, digits=digits, version=version)
        if not clean:
            raise ValueError(f"text at index {index}: nothing left after normalization (only invisible marks)")
        prepared.append(clean)
    return prepared, single


def _is_table(texts: object) -> bool:
    """Whether ``texts`` is a table of columns (a pandas or polars DataFrame), not a sequence of texts."""
    return hasattr(texts, "columns") and getattr(texts, "ndim", 2) == 2


def check_positive(**values: int) -> None:
    """Refuse a batch size, ``top_k`` or token count that is not a positive whole number.

    Example:
        >>> check_positive(batch_size=0)
        Traceback (most recent call last):
        ...
        ValueError: batch_size must be a positive integer, got 0
    """
    for name, value in values.items():
        # numbers.Integral: numpy's integers (a value taken from an array) are whole numbers too.
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


# Decoding beyond these is a typo, not a wish: a million new tokens or beams exhausts memory (a
# torch beam search preallocates for them) long before it fails on its own. A lead is ~60 tokens.
# max_length bounds the summary too when a model saves no max_new_tokens (many hub models): a summary
# starts from one token, so it takes the same limit.
DECODING_LIMITS = {"num_beams": 64, "max_new_tokens": 2048, "min_new_tokens": 2048, "max_length": 2048}


def check_decoding_limits(**values: int) -> None:
    """Refuse a beam width or summary length past :data:`DECODING_LIMITS`.

    Example:
        >>> check_decoding_limits(max_new_tokens=10**8)
        Traceback (most recent call last):
        ...
        ValueError: max_new_tokens must be at most 2048, got 100000000
    """
    for name, value in values.items():
        limit = DECODING_LIMITS[name]
        if isinstance(value, int) and value > limit:
            raise ValueError(f"{name} must be at most {limit}, got {value!r}")


def length_sorted_batches(lengths: list[int], batch_size: int, max_tokens: int | None = None) -> Iterator[list[int]]:
    """Indices of ``lengths`` in batches of similar length, longest first, to waste little padding.

    Longest first so a batch too large for memory fails at once, not at the end of a long run.
    ``max_tokens`` also caps a batch's padded size (rows x its longest): on a CPU, big batches of
    long inputs are slower per text than small ones (their activations outgrow the caches).

    Example:
        >>> list(length_sorted_batches([3, 9, 1, 7], batch_size=2))
        [[1, 3], [0, 2]]
        >>> list(length_sorted_batches([3, 9, 1, 7], batch_size=4, max_tokens=16))
        [[1], [3, 0], [2]]
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batch: list[int] = []
    for i in order:
        # Sorted longest first, so the batch's first row sets its padded length.
        too_many_tokens = max_tokens is not None and batch and (len(batch) + 1) * lengths[batch[0]] > max_tokens
        if len(batch) == batch_size or too_many_tokens:
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch

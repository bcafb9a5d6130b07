"""The articles the benchmark reads: fixed 512-token ones, and the real mix of lengths.

Texts are normalized once here, so every route (the naive one included) reads the same text; the
khabar routes still run their own normalization, whose cost is part of what they measure.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from inference.normalize import normalize

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data" / "persian-news"
SAMPLE_DATA = ROOT / "data" / "sample"
MAX_TOKENS = 512


def data_dir() -> Path:
    """The shared Persian news set when present, else the bundled sample.

    Example:
        >>> data_dir().name in ("persian-news", "sample")
        True
    """
    return SHARED_DATA if (SHARED_DATA / "test.jsonl").is_file() else SAMPLE_DATA


def read_articles(split: str, limit: int | None = None) -> list[str]:
    """Normalized, non-empty articles of ``split`` ("train", "validation" or "test").

    Example:
        >>> len(read_articles("test", limit=3))
        3
    """
    texts = []
    with (data_dir() / f"{split}.jsonl").open(encoding="utf-8") as f:
        for line in f:
            article = json.loads(line).get("article") or ""
            if article.strip():
                texts.append(normalize(article))
            if limit and len(texts) == limit:
                break
    return texts


def read_summaries(split: str) -> list[str]:
    """Normalized, non-empty summaries (agency leads) of ``split``.

    Example:
        >>> all(read_summaries("test"))
        True
    """
    with (data_dir() / f"{split}.jsonl").open(encoding="utf-8") as f:
        rows = [json.loads(line).get("summary") or "" for line in f]
    return [normalize(summary) for summary in rows if summary.strip()]


def real_mix(articles: list[str], n: int, seed: int = 0) -> list[str]:
    """``n`` articles drawn at random: the lengths users actually send.

    Example:
        >>> real_mix(["a", "b", "c"], 2, seed=1)
        ['a', 'c']
    """
    return random.Random(seed).sample(articles, min(n, len(articles)))


def fixed_length(articles: list[str], tokenizer, n: int, tokens: int = MAX_TOKENS) -> list[str]:
    """``n`` texts of exactly ``tokens`` tokens: consecutive articles joined, then cut.

    Example:
        >>> tok = WhitespaceTokenizer()
        >>> [len(tok(t)["input_ids"]) for t in fixed_length(["a b", "c d e"], tok, 2, tokens=4)]
        [4, 4]
    """
    texts, start = [], 0
    while len(texts) < n:
        parts = []
        while len(tokenizer("\n".join(parts))["input_ids"]) < tokens:
            parts.append(articles[start % len(articles)])
            start += 1
        texts.append("\n".join(parts))
    return fit(texts, tokenizer, tokens)


def fit(texts: list[str], tokenizer, tokens: int = MAX_TOKENS) -> list[str]:
    """Cut each text where its ``tokens``-th token ends (special tokens counted).

    Every route then reads the same tokens: no route truncates and the classifier splits no
    article into windows, so the routes compare the same work.

    Example:
        >>> fit(["a b c d e"], WhitespaceTokenizer(), tokens=3)
        ['a b c']
    """
    out = []
    for text in texts:
        budget = tokens
        while True:
            encoded = tokenizer(text, truncation=True, max_length=budget, return_offsets_mapping=True)
            ends = [end for start, end in encoded["offset_mapping"] if end > start]
            cut = text[: ends[-1]] if ends else text
            # Re-tokenizing a cut text can merge differently at the cut; shrink until it fits.
            if len(tokenizer(cut)["input_ids"]) <= tokens:
                break
            budget -= 1
        out.append(cut)
    return out


class WhitespaceTokenizer:
    """A stand-in tokenizer for the examples: one token per whitespace-separated word."""

    def __call__(self, text, truncation=False, max_length=None, return_offsets_mapping=False, **_):
        import re

        spans = [m.span() for m in re.finditer(r"\S+", text)][: max_length if truncation else None]
        encoded = {"input_ids": list(range(len(spans)))}
        if return_offsets_mapping:
            encoded["offset_mapping"] = spans
        return encoded


def spread_subset(texts: list[str], lengths: list[int], n: int) -> list[str]:
    """``n`` of ``texts`` at evenly spaced ranks of length, in their original order.

    A route that reads fewer documents (the slow naive one) then reads the same mix of lengths
    as the others, so docs/s compare the same work.

    Example:
        >>> spread_subset(["a", "bbbb", "cc", "ddd", "e"], [1, 4, 2, 3, 1], 3)
        ['a', 'bbbb', 'cc']
    """
    if n >= len(texts):
        return list(texts)
    ranked = sorted(range(len(texts)), key=lambda i: lengths[i])
    picked = {ranked[round(k * (len(texts) - 1) / (n - 1))] for k in range(n)} if n > 1 else {ranked[len(texts) // 2]}
    return [texts[i] for i in sorted(picked)]


def token_lengths(texts: list[str], tokenizer) -> list[int]:
    """How many tokens each text is given to the model (special tokens included, cut at 512).

    Example:
        >>> token_lengths(["a b c"], WhitespaceTokenizer())
        [3]
    """
    return [len(tokenizer(text, truncation=True, max_length=MAX_TOKENS)["input_ids"]) for text in texts]

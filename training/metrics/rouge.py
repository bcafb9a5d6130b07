"""ROUGE for Persian summaries, computed offline.

``rouge_score``'s default tokenizer keeps only ``[a-z0-9]`` and so deletes every Persian letter:
any two Persian summaries score 0. ``evaluate.load("rouge")`` wraps the same tokenizer and also
fetches its script from the hub. Here both texts are first put through
:func:`inference.normalize.normalize` (the normalization the models see), then split into words
by :class:`PersianTokenizer`, and ``rougeLsum`` sees the sentences of
:func:`inference.normalize.split_sentences` instead of English ``nltk`` punkt.

Scores are F1 in 0–100. :func:`rouge` gives the corpus mean; :func:`rouge_per_example` gives the
score of every pair, for bootstrap confidence intervals.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol

from rouge_score import rouge_scorer

from inference.normalize import DigitPolicy, normalize, split_sentences

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")

# A word is a run of letters and digits in any script. Punctuation, and the ZWNJ inside words
# like «می‌شود», separate words: the pn-summary ROUGE extension splits on ZWNJ too, and it makes
# «می‌شود» and «می شود» (the commonest inconsistency in Persian news) score as the same words.
_WORD_RE = re.compile(r"[^\W_]+")


class Tokenizer(Protocol):
    def tokenize(self, text: str) -> list[str]: ...


class PersianTokenizer:
    """Split normalized text into lowercased words of any script (the ``tokenize`` that rouge_score calls).

    Example:
        >>> PersianTokenizer().tokenize("تیم‌ها، ۲ گل زدند (VAR)!")
        ['تیم', 'ها', '۲', 'گل', 'زدند', 'var']
    """

    def tokenize(self, text: str) -> list[str]:
        """The words of ``text``, punctuation dropped."""
        return _WORD_RE.findall(text.lower())


def _sentence_lines(text: str) -> str:
    # rougeLsum reads one sentence per line.
    return "\n".join(split_sentences(text))


def rouge_per_example(
    predictions: Sequence[str],
    references: Sequence[str],
    digits: DigitPolicy = "persian",
    tokenizer: Tokenizer | None = None,
) -> dict[str, list[float]]:
    """ROUGE-1/2/L/Lsum F1 (0–100) of each prediction against its reference, in input order.

    ``tokenizer`` (anything with ``tokenize(text) -> list[str]``) replaces :class:`PersianTokenizer`
    where words must be counted another way, e.g. to compare with figures published elsewhere.

    Example:
        >>> scores = rouge_per_example(["تیم ملی برد", "بازار ارز"], ["تیم ملی برد", "قیمت طلا"])
        >>> scores["rouge1"]
        [100.0, 0.0]
    """
    if isinstance(predictions, str) or isinstance(references, str):
        raise TypeError("predictions and references must be lists of strings, not a single string")
    if len(predictions) != len(references):
        raise ValueError(f"got {len(predictions)} predictions but {len(references)} references")
    tokenizer = tokenizer or PersianTokenizer()
    whole_text = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=tokenizer)
    by_sentence = rouge_scorer.RougeScorer(["rougeLsum"], tokenizer=tokenizer)
    scores: dict[str, list[float]] = {name: [] for name in ROUGE_TYPES}
    for prediction, reference in zip(predictions, references, strict=True):
        prediction, reference = normalize(prediction, digits), normalize(reference, digits)
        pair = whole_text.score(reference, prediction)
        pair |= by_sentence.score(_sentence_lines(reference), _sentence_lines(prediction))
        for name in ROUGE_TYPES:
            scores[name].append(100 * pair[name].fmeasure)
    return scores


def rouge(predictions: Sequence[str], references: Sequence[str], digits: DigitPolicy = "persian") -> dict[str, float]:
    """Corpus ROUGE-1/2/L/Lsum: the mean F1 (0–100) over prediction/reference pairs.

    Example:
        >>> scores = rouge(["تیم ملی فوتبال ایران برد"], ["تیم ملی ايران برد"])  # Arabic ي is normalized
        >>> round(scores["rouge1"], 2), round(scores["rouge2"], 2)
        (88.89, 57.14)
    """
    if not len(predictions):
        raise ValueError("no predictions to score")
    per_example = rouge_per_example(predictions, references, digits)
    return {name: sum(values) / len(values) for name, values in per_example.items()}

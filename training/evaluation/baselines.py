"""The obvious systems a model must beat, and the scores that compare the model with them.

Baselines: majority class, TF-IDF + linear SVM, and lead-k sentences. Each takes the same
normalized text the model sees and returns outputs in the model's format (labels or
summaries), so ``classification_scores`` and ``rouge_scores`` score both the same way, with
95% bootstrap intervals over the evaluated rows.

Example:
    >>> majority_baseline(["sports", "sports", "economy"], count=2)
    ['sports', 'sports']
    >>> lead_baseline(["جمله اول. جمله دوم. جمله سوم."], sentences=2)
    ['جمله اول. جمله دوم.']
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

from inference.normalize import split_sentences
from training.metrics import classification_metrics
from training.metrics.rouge import rouge_per_example

ROUGE_KEYS = ("rouge1", "rouge2", "rougeL", "rougeLsum")


def majority_baseline(train_labels: Sequence[str], count: int) -> list[str]:
    """Predict the most frequent training label ``count`` times (ties go to the label seen first).

    Example:
        >>> majority_baseline(["a", "b", "b"], count=3)
        ['b', 'b', 'b']
    """
    if not train_labels:
        raise ValueError("majority_baseline needs at least one training label")
    # Counter.most_common keeps first-seen order among equal counts, so ties are deterministic.
    label = Counter(train_labels).most_common(1)[0][0]
    return [label] * count


def tfidf_baseline(
    train_texts: Sequence[str], train_labels: Sequence[str], texts: Sequence[str], seed: int = 0
) -> list[str]:
    """Train TF-IDF (word 1-2 grams) + a linear SVM on the training rows and label ``texts``.

    Everything else is scikit-learn's default (words of two or more letters, punctuation
    dropped), the usual strong bag-of-words reference for topic classification.

    Example:
        >>> train = ["تیم فوتبال برد", "گل دوم تیم", "بازار ارز", "قیمت ارز بالا رفت"]
        >>> tfidf_baseline(train, ["sports", "sports", "economy", "economy"], ["ارز گران شد"])
        ['economy']
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import LinearSVC

    if len(set(train_labels)) < 2:
        raise ValueError("tfidf_baseline needs at least two distinct training labels")
    # The default token pattern beat whitespace tokens on persian-news (macro-F1 0.681 vs 0.673):
    # punctuation glued to a word would otherwise make a separate, rarer feature.
    model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2)), LinearSVC(random_state=seed))
    model.fit(list(train_texts), list(train_labels))
    return [str(label) for label in model.predict(list(texts))]


def lead_baseline(articles: Sequence[str], sentences: int = 1) -> list[str]:
    """The first ``sentences`` sentences of each article (split by ``split_sentences``), as its summary.

    Example:
        >>> lead_baseline(["تیم برد. مربی خوشحال بود.", ""], sentences=1)
        ['تیم برد.', '']
    """
    if sentences < 1:
        raise ValueError(f"lead_baseline needs sentences >= 1, got {sentences}")
    return [" ".join(split_sentences(article)[:sentences]) for article in articles]


def bootstrap_ci(
    per_example: Sequence[float], draws: int = 1000, seed: int = 0, confidence: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-example scores (examples resampled with replacement).

    Example:
        >>> low, high = bootstrap_ci([0.0, 1.0] * 200)
        >>> 0.44 < low < 0.5 < high < 0.56
        True
    """
    values = np.asarray(per_example, dtype=float)
    return _bootstrap(lambda idx: [values[idx].mean()], len(values), draws, seed, confidence)[0]


def _bootstrap(
    statistics: Callable[[np.ndarray], Sequence[float]], n: int, draws: int, seed: int, confidence: float
) -> list[tuple[float, float]]:
    """One percentile interval per value that ``statistics(row_indices)`` returns."""
    # The same seed gives every system the same resamples, so their intervals are paired.
    rng = np.random.default_rng(seed)
    resampled = np.array([statistics(rng.integers(0, n, size=n)) for _ in range(draws)])
    tail = (1 - confidence) / 2 * 100
    lows, highs = np.percentile(resampled, [tail, 100 - tail], axis=0)
    points = statistics(np.arange(n))
    # Resampled means of identical scores can differ from the full mean in the last bit;
    # widening by that rounding keeps an interval from excluding its own point estimate.
    return [(float(min(lo, pt)), float(max(hi, pt))) for lo, hi, pt in zip(lows, highs, points, strict=True)]


def classification_scores(
    predictions: Sequence[str], references: Sequence[str], draws: int = 1000, seed: int = 0
) -> dict:
    """``classification_metrics`` plus 95% bootstrap intervals of accuracy, macro-F1 and weighted-F1.

    Labels are ordered by reference support, most frequent first, in the per-class rows and the
    confusion matrix.

    Example:
        >>> scores = classification_scores(["a", "b", "b"], ["a", "b", "a"], draws=50)
        >>> round(scores["accuracy"], 3), scores["confusion_matrix"]["matrix"]
        (0.667, [[1, 1], [0, 1]])
    """
    counts = Counter(references)
    labels = sorted({*references, *predictions}, key=lambda label: (-counts[label], label))
    scores = classification_metrics(predictions, references, labels)
    predicted, true = np.array(predictions, dtype=object), np.array(references, dtype=object)
    averages = ("accuracy", "macro_f1", "weighted_f1")

    def statistics(idx: np.ndarray) -> list[float]:
        resample = classification_metrics(predicted[idx].tolist(), true[idx].tolist(), labels)
        return [resample[key] for key in averages]

    intervals = _bootstrap(statistics, len(true), draws, seed, 0.95)
    scores.update({f"{key}_ci": interval for key, interval in zip(averages, intervals, strict=True)})
    return scores


def rouge_scores(predictions: Sequence[str], references: Sequence[str], draws: int = 1000, seed: int = 0) -> dict:
    """ROUGE-1/2/L/Lsum F1 (0-100) with 95% bootstrap intervals, and the mean summary length in words.

    Scored as training scores (:mod:`training.metrics.rouge`: normalized text, words of letters
    and digits, ZWNJ and punctuation separate words), so a report and a ``metrics.json`` agree;
    each score is the mean of per-example F1. ``readme_rouge`` holds the same outputs scored as
    the data README's reference figures count words (whitespace and ZWNJ, punctuation kept on
    its word), to compare with those.

    Example:
        >>> scores = rouge_scores(["تیم ملی برد.", "بازار آرام"], ["تیم ملی برد", "بازار ارز"], draws=50)
        >>> scores["rouge1"], round(scores["readme_rouge"]["rouge1"], 1), scores["mean_length"]
        (75.0, 58.3, 2.5)
    """
    per_example = rouge_per_example(predictions, references)
    scores: dict = {}
    for key in ROUGE_KEYS:
        scores[key] = float(np.mean(per_example[key]))
        scores[f"{key}_ci"] = bootstrap_ci(per_example[key], draws, seed)
    readme = rouge_per_example(predictions, references, tokenizer=_WhitespaceTokens())
    scores["readme_rouge"] = {key: float(np.mean(readme[key])) for key in ROUGE_KEYS}
    scores["mean_length"] = float(np.mean([len(text.split()) for text in predictions]))
    return scores


class _WhitespaceTokens:
    """ROUGE tokens as in the data README's reference figures: split at whitespace and ZWNJ.

    Punctuation stays on its word, so these score lead-1 on persian-news about 1.8 ROUGE-1
    points lower than :mod:`training.metrics.rouge`; kept only to compare with those figures.
    """

    def tokenize(self, text: str) -> list[str]:
        return text.replace("\u200c", " ").split()

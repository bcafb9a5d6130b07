"""Topic-classification scores computed locally: accuracy, macro/weighted F1, per-class scores, confusion matrix.

``evaluate.load("accuracy")`` fetches a script from the hub and fails offline, so the scores
come straight from a confusion matrix. Macro-F1 averages over the labels that occur in the
references or the predictions (scikit-learn's convention without ``labels=``), so a topic
that is absent from a small split neither lowers nor raises it; per-class rows still list
every label, with zeros where a label never occurs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def confusion_matrix(predictions: Sequence[str], references: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """Counts with reference labels as rows and predicted labels as columns, both in ``labels`` order.

    Example:
        >>> confusion_matrix(["a", "b", "b"], ["a", "b", "a"], ["a", "b"]).tolist()
        [[1, 1], [0, 1]]
    """
    index = {label: i for i, label in enumerate(labels)}
    unknown = sorted({*predictions, *references} - set(index))
    if unknown:
        raise ValueError(f"labels {unknown} are not among the known labels {list(labels)}")
    k = len(labels)
    ref = np.array([index[label] for label in references], dtype=np.int64)
    pred = np.array([index[label] for label in predictions], dtype=np.int64)
    return np.bincount(ref * k + pred, minlength=k * k).reshape(k, k)


def classification_metrics(
    predictions: Sequence[str], references: Sequence[str], labels: Sequence[str] | None = None
) -> dict:
    """Accuracy, macro-F1, weighted-F1, per-class precision/recall/F1/support and the confusion matrix.

    ``labels`` fixes the order of the per-class rows and of the matrix (the model's label order);
    by default the sorted labels seen in either list.

    Example:
        >>> scores = classification_metrics(["a", "b", "b"], ["a", "b", "a"], labels=["a", "b", "c"])
        >>> round(scores["accuracy"], 3), round(scores["macro_f1"], 3), scores["per_class"]["b"]["precision"]
        (0.667, 0.667, 0.5)
        >>> scores["confusion_matrix"]["matrix"]
        [[1, 1, 0], [0, 1, 0], [0, 0, 0]]
    """
    if len(predictions) != len(references) or not references:
        raise ValueError(
            f"need as many predictions as references (and at least one), got {len(predictions)} and {len(references)}"
        )
    labels = list(labels) if labels is not None else sorted({*predictions, *references})
    matrix = confusion_matrix(predictions, references, labels)
    true_positive, support, predicted = np.diag(matrix), matrix.sum(axis=1), matrix.sum(axis=0)
    precision = _safe_divide(true_positive, predicted)
    recall = _safe_divide(true_positive, support)
    f1 = _safe_divide(2 * true_positive, support + predicted)
    seen = (support + predicted) > 0
    return {
        "accuracy": float(true_positive.sum() / matrix.sum()),
        "macro_f1": float(f1[seen].mean()),
        "weighted_f1": float((f1 * support).sum() / support.sum()),
        "rows": int(matrix.sum()),
        "per_class": {
            label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
        },
        "confusion_matrix": {"labels": labels, "matrix": matrix.tolist()},
    }


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Element-wise division that gives 0 where the denominator is 0 (a label never seen or never predicted)."""
    return np.divide(numerator, denominator, out=np.zeros(len(numerator)), where=denominator > 0)

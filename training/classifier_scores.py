"""How the topic classifier is scored while and after training, and its per-evaluation training log."""

from __future__ import annotations

import datasets
import numpy as np
from transformers import Trainer
from transformers.trainer_utils import EvalPrediction

from training.metrics.classification import classification_metrics

BEST_METRIC = "macro_f1"
# Scores shown in the per-epoch progress line and kept as headline numbers.
HEADLINE = ("accuracy", "macro_f1", "weighted_f1")


def epoch_metrics(prediction: EvalPrediction, labels: list[str]) -> dict[str, float]:
    """Validation scores logged at each evaluation: headline scores plus ``<label>/precision|recall|f1``.

    Flat numbers, because the trainer's log (and so ``training_log.jsonl``) holds only scalars.

    Example:
        >>> logits = np.array([[2.0, 0.0], [0.0, 2.0]])
        >>> epoch_metrics(EvalPrediction(predictions=logits, label_ids=np.array([0, 0])), ["a", "b"])["accuracy"]
        0.5
    """
    scores = _score(prediction.predictions, prediction.label_ids, labels)
    flat = {name: scores[name] for name in HEADLINE}
    for label, row in scores["per_class"].items():
        flat |= {f"{label}/{name}": row[name] for name in ("precision", "recall", "f1")}
    return flat


def _score(logits: np.ndarray | tuple, label_ids: np.ndarray, labels: list[str]) -> dict:
    logits = logits[0] if isinstance(logits, tuple) else logits
    predicted = [labels[i] for i in np.asarray(logits).argmax(axis=-1)]
    return classification_metrics(predicted, [labels[i] for i in label_ids], labels)


def evaluate_split(trainer: Trainer, tokenized: datasets.Dataset, labels: list[str], name: str) -> dict:
    """Every score of the trained model on a whole split (with per-class rows and the confusion matrix).

    Runs inside ``training.classifier.train``, whose example covers it (it needs a trained ``Trainer``).
    """
    output = trainer.predict(tokenized, metric_key_prefix=name)
    return {**_score(output.predictions, output.label_ids, labels), "loss": output.metrics[f"{name}_loss"]}

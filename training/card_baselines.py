"""The baselines a model card sets beside the model's scores, computed from the run's own data files.

Topics: the majority class and TF-IDF + linear SVM; summaries: lead-1. They are scored on the
split the model's headline metrics come from (test, else validation), read and normalized as
training read them. Files no longer on disk (or hub datasets, which would need the network) give
``None``, and the card says the baselines were not computed.

Example:
    >>> baseline_scores("classification", {"train_file": "no/such.jsonl"}) is None
    True
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

from training.data import Columns, DataError, load_split
from training.evaluation.baselines import lead_baseline, majority_baseline, tfidf_baseline
from training.metrics import classification_metrics
from training.metrics.rouge import rouge_per_example

log = logging.getLogger(__name__)


def baseline_scores(task: str, data: dict) -> dict | None:
    """Scores of the task's baselines on the run's evaluation split, plus the rows each split had.

    Example:
        >>> scores = baseline_scores("summarization", {
        ...     "train_file": "data/sample/train.jsonl", "test_file": "data/sample/test.jsonl",
        ...     "summary_column": "summary"})
        >>> sorted(scores), scores["split"], scores["rows"]["test"]
        (['rows', 'split', 'systems'], 'test', 40)
        >>> 0 < scores["systems"]["lead-1"]["rouge1"] < 100
        True
    """
    split = "test" if data.get("test_file") else "validation" if data.get("validation_file") else None
    files = {"train": data.get("train_file"), "validation": data.get("validation_file"), "test": data.get("test_file")}
    if split is None or not all(Path(str(path)).is_file() for path in files.values() if path):
        return None
    columns = _columns(task, data)
    digits = data.get("digits", "persian")
    version = data.get("normalization_version", 1)  # a run config without the key predates versions
    try:
        with _quiet_data_warnings():  # training already said which rows it dropped
            rows = {
                name: load_split(str(path), columns, name, digits, version=version)
                for name, path in files.items()
                if path
            }
    except (DataError, OSError, ValueError) as error:
        log.warning("model card: baselines not computed (%s)", error)
        return None
    counts = {name: len(rows[name]) for name in rows}
    if task == "summarization":
        systems = {"lead-1": _rouge(lead_baseline(rows[split]["text"]), rows[split]["summary"])}
    else:
        systems = _topic_baselines(rows["train"], rows[split])
    return {"split": split, "rows": counts, "systems": systems}


@contextlib.contextmanager
def _quiet_data_warnings() -> Iterator[None]:
    data_log = logging.getLogger("training.data")
    level = data_log.level
    data_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        data_log.setLevel(level)


def _columns(task: str, data: dict) -> Columns:
    text = data.get("text_column") or "article"
    if task == "summarization":
        return Columns(text=text, summary=data.get("summary_column") or "summary")
    return Columns(text=text, label=data.get("label_column") or "category")


def _topic_baselines(train, evaluated) -> dict:
    references = list(evaluated["label"])
    labels = sorted(set(train["label"]) | set(references))
    predictions = {"majority class": majority_baseline(list(train["label"]), len(references))}
    if len(set(train["label"])) > 1:
        texts, labels_seen = list(train["text"]), list(train["label"])
        predictions["TF-IDF + linear SVM"] = tfidf_baseline(texts, labels_seen, evaluated["text"])
    scores = {}
    for name, predicted in predictions.items():
        metrics = classification_metrics(predicted, references, labels)
        scores[name] = {key: metrics[key] for key in ("accuracy", "macro_f1", "weighted_f1")}
    return scores


def _rouge(predictions: list[str], references: list[str]) -> dict:
    per_example = rouge_per_example(predictions, references)
    return {key: sum(values) / len(values) for key, values in per_example.items() if values}

"""``khabar-train evaluate``: score a model beside the obvious baselines and write a report a reader trusts.

The rooms: :mod:`~training.evaluation.cli` (the command), :mod:`~training.evaluation.rows` (reading
the data), :mod:`~training.evaluation.predict` (batched model outputs),
:mod:`~training.evaluation.scoring` (model and baselines with bootstrap intervals),
:mod:`~training.evaluation.baselines`, :mod:`~training.evaluation.report` and
:mod:`~training.evaluation.plots`.
"""

from training.evaluation.cli import build_parser, main, run
from training.evaluation.predict import generate_summaries, predict_topics
from training.evaluation.rows import load_rows
from training.evaluation.scoring import evaluate_classification, evaluate_summarization
from training.model_kind import detect_kind

__all__ = [
    "build_parser",
    "detect_kind",
    "evaluate_classification",
    "evaluate_summarization",
    "generate_summaries",
    "load_rows",
    "main",
    "predict_topics",
    "run",
]

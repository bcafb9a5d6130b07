"""Scores of a model beside its baselines, with bootstrap intervals, in the layout the report writes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

import numpy as np

import inference
from training.evaluation.baselines import (
    classification_scores,
    lead_baseline,
    majority_baseline,
    rouge_scores,
    tfidf_baseline,
)
from training.model_kind import Kind


def evaluate_classification(
    texts: Sequence[str],
    references: Sequence[str],
    predictions: Sequence[str],
    train: tuple[Sequence[str], Sequence[str]] | None = None,
    draws: int = 1000,
    seed: int = 0,
) -> dict:
    """Score topic ``predictions`` beside the majority-class and (given ``train`` texts/labels) TF-IDF baselines.

    Without ``train`` the majority class is taken from the evaluated rows themselves, which
    flatters that baseline; the report says so.

    Example:
        >>> result = evaluate_classification(["x", "y", "z"], ["a", "a", "b"], ["a", "b", "b"], draws=10)
        >>> list(result["systems"]), round(result["systems"]["majority"]["accuracy"], 3)
        (['model', 'majority'], 0.667)
    """
    outputs = {"model": list(predictions)}
    majority_source = train[1] if train else references
    outputs["majority"] = majority_baseline(majority_source, len(references))
    where = "the training file" if train else "the evaluated rows themselves (no --baseline-train given)"
    descriptions = {
        "model": "the evaluated model",
        "majority": f"always `{outputs['majority'][0]}`, the most frequent label of {where}",
    }
    if train:
        outputs["tfidf"] = tfidf_baseline(train[0], train[1], texts, seed=seed)
        descriptions["tfidf"] = (
            f"TF-IDF of word 1-2 grams + linear SVM, trained on {len(train[0])} rows of the training file"
        )
    systems = {name: classification_scores(out, references, draws, seed) for name, out in outputs.items()}
    return _result("classification", systems, descriptions, outputs, references, draws, seed)


def evaluate_summarization(
    texts: Sequence[str],
    references: Sequence[str],
    summaries: Sequence[str],
    draws: int = 1000,
    seed: int = 0,
    examples: int = 5,
) -> dict:
    """Score ``summaries`` with ROUGE beside the lead-1 and lead-2 baselines, and pick a few examples.

    Example:
        >>> result = evaluate_summarization(["الف ب؟ ج د"], ["الف ب؟"], ["الف"], draws=10)
        >>> result["systems"]["lead-1"]["rouge1"]
        100.0
    """
    outputs = {"model": list(summaries), "lead-1": lead_baseline(texts, 1), "lead-2": lead_baseline(texts, 2)}
    descriptions = {
        "model": "the evaluated model",
        "lead-1": "the article's first sentence",
        "lead-2": "the article's first two sentences",
    }
    systems = {name: rouge_scores(out, references, draws, seed) for name, out in outputs.items()}
    result = _result("summarization", systems, descriptions, outputs, references, draws, seed)
    result["reference_mean_length"] = float(np.mean([len(text.split()) for text in references]))
    picked = sorted(np.random.default_rng(seed).permutation(len(texts))[:examples].tolist())
    result["examples"] = [
        {
            "row": i,
            "article (start)": _shorten(texts[i], 400),
            "reference": references[i],
            **{n: outputs[n][i] for n in ("model", "lead-1")},
        }
        for i in picked
    ]
    return result


def _shorten(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[:chars].rsplit(" ", 1)[0] + " …"


def _result(
    kind: Kind, systems: dict, descriptions: dict, outputs: dict, references: Sequence[str], draws: int, seed: int
) -> dict:
    """The result layout ``training.evaluation.report`` writes; ``run`` fills in where the model and data came from."""
    return {
        "kind": kind,
        "model": "(in memory)",
        "data": "(in memory)",
        "columns": {},
        "required_columns": ["text", "label" if kind == "classification" else "summary"],
        "rows": len(references),
        "skipped_rows": 0,
        "limit": None,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "khabar_version": inference.__version__,
        "bootstrap": {"draws": draws, "seed": seed, "confidence": 0.95},
        "systems": systems,
        "descriptions": descriptions,
        "warnings": [],
        "predictions": outputs,
        "references": list(references),
    }

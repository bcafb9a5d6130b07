"""The tiny CPU training runs keep their loss curves: every GPU speed setting leaves the CPU path alone.

Each task trains its tiny model for a few steps at a fixed seed through the real ``train`` and
compares the loss of every step with the values recorded in ``tests/data/loss_reference.json``.
A change that alters what a recipe computes on the CPU (batch order, padding, optimizer, learning
rate, accumulation) moves these numbers far beyond the tolerance; float noise across processors
does not.

Re-record after an intended change to the training maths (and say why in the commit)::

    KHABAR_RECORD_REFERENCE=1 .venv/bin/python -m pytest -q tests/test_loss_reference.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from fixtures_training import classifier_overrides
from helpers import ROOT
from transformers import TrainerCallback

from training import classifier, summarizer
from training.config import load_config

REFERENCE = Path(__file__).resolve().parent / "data" / "loss_reference.json"
RECORD = os.environ.get("KHABAR_RECORD_REFERENCE") == "1"
# Relative. The tiny tokenizers are reproducible, so only float sums in another order move these:
# 1e-7 measured between the AVX2 and AMX kernels. Another batch order or size moves a step's loss
# by 10% or more.
RTOL = 1e-3
STEPS = 6


class LossCurve(TrainerCallback):
    """Collects the training loss of every logged step."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.losses.append(logs["loss"])


def _classifier_config(model_dir: Path, sample_dir: Path, out: Path):
    overrides = classifier_overrides(
        model_dir, sample_dir, out, "train.batch_size=8", f"train.max_steps={STEPS}", "data.max_eval_samples=8"
    )
    return load_config(ROOT / "configs" / "classifier" / "tiny.yaml", overrides)


def _summarizer_config(model_dir: Path, sample_dir: Path, out: Path):
    overrides = [
        f"model.name_or_path={model_dir}",
        f"data.train_file={sample_dir / 'train.jsonl'}",
        f"data.validation_file={sample_dir / 'validation.jsonl'}",
        f"output_dir={out}",
        "data.max_eval_samples=2",
        "train.batch_size=4",
        "train.gradient_accumulation_steps=2",  # accumulation is part of what must not change
        f"train.max_steps={STEPS}",
        "train.max_length=64",
        "train.max_target_length=16",
        "train.generation_eval_samples=2",
        "train.logging_steps=1",
        "generation.max_new_tokens=4",
    ]
    return load_config(ROOT / "configs" / "summarizer" / "tiny.yaml", overrides)


TASKS = {
    "classification": (classifier.train, _classifier_config, "tiny_classifier_dir"),
    "summarization": (summarizer.train, _summarizer_config, "tiny_summarizer_dir"),
}


@pytest.mark.parametrize("task", sorted(TASKS))
def test_tiny_cpu_training_follows_the_recorded_loss_curve(task, sample_dir, tmp_path, request) -> None:
    train, make_config, model_fixture = TASKS[task]
    curve = LossCurve()
    train(make_config(request.getfixturevalue(model_fixture), sample_dir, tmp_path / "model"), callbacks=[curve])
    assert len(curve.losses) == STEPS

    recorded = json.loads(REFERENCE.read_text(encoding="utf-8")) if REFERENCE.is_file() else {}
    if RECORD:
        recorded[task] = curve.losses
        REFERENCE.write_text(json.dumps(recorded, indent=2) + "\n", encoding="utf-8")
    assert task in recorded, f"no reference for {task}: record it with KHABAR_RECORD_REFERENCE=1"
    assert curve.losses == pytest.approx(recorded[task], rel=RTOL)

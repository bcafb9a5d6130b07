"""Session fixtures for the training tests (loaded by conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import ROOT

TINY_CLASSIFIER_CONFIG = ROOT / "configs" / "classifier" / "tiny.yaml"


def classifier_overrides(model_dir: Path, sample_dir: Path, out: Path, *extra: str) -> list[str]:
    """Overrides that point ``configs/classifier/tiny.yaml`` at a tiny model, the sample and ``out``, kept quick.

    Short inputs and small batches keep a run to seconds; ``extra`` overrides come last and win.
    """
    return [
        f"model.name_or_path={model_dir}",
        f"data.train_file={sample_dir / 'train.jsonl'}",
        f"data.validation_file={sample_dir / 'validation.jsonl'}",
        f"data.test_file={sample_dir / 'test.jsonl'}",
        f"output_dir={out}",
        "train.max_length=64",
        "train.batch_size=16",
        "train.logging_steps=1",
        *extra,
    ]


@pytest.fixture(scope="session")
def trained_classifier_dir(tiny_classifier_dir, sample_dir, tmp_path_factory) -> Path:
    """The tiny classifier after one short epoch on the bundled sample, trained through the real CLI.

    A complete model directory (weights, tokenizer, ``id2label``, metrics, plots, logs); its
    predictions are barely better than chance, so tests should assert on behaviour, not accuracy.
    """
    from training.cli import main

    out = tmp_path_factory.mktemp("trained") / "classifier"
    overrides = classifier_overrides(tiny_classifier_dir, sample_dir, out, "train.epochs=1")
    assert main([str(TINY_CLASSIFIER_CONFIG), *overrides]) == 0
    return out

"""Shared fixtures: tiny models built offline once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import ROOT

# Fixtures of each area live beside the tests that first needed them.
pytest_plugins = ["fixtures_training", "fixtures_inference"]

SAMPLE = ROOT / "data" / "sample"


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """The bundled sample data folder."""
    return SAMPLE


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    """Both tiny random-weight models, built once from the bundled sample."""
    from training.tiny import build_tiny_classifier, build_tiny_summarizer, sample_texts

    out = tmp_path_factory.mktemp("tiny")
    texts = sample_texts()
    build_tiny_classifier(out / "classifier", texts=texts)
    build_tiny_summarizer(out / "summarizer", texts=texts)
    return out


@pytest.fixture(scope="session")
def tiny_classifier_dir(tiny_dir) -> Path:
    """A tiny untrained BERT topic classifier directory."""
    return tiny_dir / "classifier"


@pytest.fixture(scope="session")
def tiny_summarizer_dir(tiny_dir) -> Path:
    """A tiny untrained mT5 summarizer directory."""
    return tiny_dir / "summarizer"

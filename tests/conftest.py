"""Shared fixtures: tiny models built offline once per test session."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from helpers import ROOT

# Fixtures of each area live beside the tests that first needed them.
pytest_plugins = ["fixtures_training", "fixtures_inference"]

SAMPLE = ROOT / "data" / "sample"
# `khabar` run in process routes these to stderr and stops their propagation, as a command should;
# restored after each test so the next one's caplog still sees them.
CLI_ROUTED_LOGGERS = ("inference.fast", "inference.precision")


@pytest.fixture(autouse=True)
def _restore_cli_logging():
    loggers = [logging.getLogger(name) for name in CLI_ROUTED_LOGGERS]
    saved = [(logger.handlers[:], logger.propagate, logger.level) for logger in loggers]
    yield
    for logger, (handlers, propagate, level) in zip(loggers, saved, strict=True):
        logger.handlers, logger.propagate = handlers, propagate
        logger.setLevel(level)


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

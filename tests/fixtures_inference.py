"""Session fixtures for the inference tests (loaded by conftest.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import read_jsonl

# A few passes over the sample give the tiny classifier clear margins between topics, so
# quantization noise cannot flip most of its answers (a random model's scores are all ties).
FIT_EPOCHS = 6
FIT_MAX_LENGTH = 64
FIT_BATCH_SIZE = 32


def fit_classifier(model_dir: Path, rows: list[dict], epochs: int = FIT_EPOCHS) -> None:
    """Train the classifier in ``model_dir`` in place on ``rows`` (article -> category), briefly."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from inference.normalize import normalize

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    texts = [normalize(row["article"]) for row in rows]
    labels = torch.tensor([model.config.label2id[row["category"]] for row in rows])
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    # Ops this small gain nothing from a second thread, and on a busy shared machine the
    # threads wait on each other: one thread trains several times faster.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model.train()
        for _ in range(epochs):
            for batch in torch.randperm(len(texts)).split(FIT_BATCH_SIZE):
                inputs = tokenizer(
                    [texts[i] for i in batch],
                    truncation=True,
                    max_length=FIT_MAX_LENGTH,
                    padding=True,
                    return_tensors="pt",
                )
                model(**inputs, labels=labels[batch]).loss.backward()
                optimizer.step()
                optimizer.zero_grad()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    model.save_pretrained(model_dir)


@pytest.fixture(scope="session")
def fitted_classifier_dir(tiny_classifier_dir, sample_dir, tmp_path_factory) -> Path:
    """The tiny classifier after a few epochs on the bundled sample (plain torch loop, a few seconds)."""
    out = tmp_path_factory.mktemp("fitted") / "classifier"
    shutil.copytree(tiny_classifier_dir, out)
    fit_classifier(out, read_jsonl(sample_dir / "train.jsonl"))
    return out


@pytest.fixture(scope="session")
def sample_articles(sample_dir) -> list[str]:
    """The articles of the bundled test split, as published (not normalized), of varied lengths."""
    return [row["article"] for row in read_jsonl(sample_dir / "test.jsonl")]

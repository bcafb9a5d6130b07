"""Length-sorted batching around a model or engine, for when ``inference.Classifier``/``Summarizer`` are absent.

The benchmark's khabar routes go through the public classes; this stand-in does the same steps
(normalize, tokenize, sort by length, batch, restore order) so the engines can be measured in a
checkout where the classes have not landed yet. The results say which one ran (``via``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from transformers import AutoModelForSeq2SeqLM, AutoModelForSequenceClassification, AutoTokenizer, GenerationConfig

from inference.normalize import normalize

MAX_TOKENS = 512
GENERATION_KEYS = (
    "num_beams",
    "max_new_tokens",
    "min_new_tokens",
    "no_repeat_ngram_size",
    "length_penalty",
    "early_stopping",
)


def sorted_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length, longest first, so padding stays small.

    Example:
        >>> sorted_batches([5, 1, 9, 3], 2)
        [[2, 0], [3, 1]]
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


class DirectClassifier:
    """Top-1 labels of texts from the torch model (``backend="torch"``) or a fast engine.

    Example:
        >>> import tempfile
        >>> from training.tiny import build_tiny_classifier
        >>> model = DirectClassifier(build_tiny_classifier(tempfile.mkdtemp()), "torch", None)
        >>> len(model.predict(["خبر ورزشی", "خبر اقتصادی"], batch_size=2))
        2
    """

    def __init__(self, model_dir: str | Path, backend: str, quantize: str | None):
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        if backend == "torch":
            model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
            self.labels = model.config.id2label
            self.forward: Callable = lambda ids, mask: model(input_ids=ids, attention_mask=mask).logits
        else:
            from inference.fast import classifier_engine

            self.labels = AutoModelForSequenceClassification.from_pretrained(model_dir).config.id2label
            self.forward = classifier_engine(model_dir, backend, quantize)

    def predict(self, texts: list[str], batch_size: int = 16) -> list[str]:
        """The label of each text, in input order."""
        encoded = self.tokenizer([normalize(t) for t in texts], truncation=True, max_length=MAX_TOKENS)["input_ids"]
        labels: list[str] = [""] * len(texts)
        for batch in sorted_batches([len(ids) for ids in encoded], batch_size):
            padded = self.tokenizer.pad({"input_ids": [encoded[i] for i in batch]}, return_tensors="pt")
            with torch.inference_mode():
                logits = self.forward(padded["input_ids"], padded["attention_mask"])
            for i, top in zip(batch, logits.argmax(-1).tolist(), strict=True):
                labels[i] = self.labels[top]
        return labels


class DirectSummarizer:
    """Summaries of texts from the torch model (``backend="torch"``) or a fast engine.

    Example:
        >>> import tempfile
        >>> from training.tiny import build_tiny_summarizer
        >>> model = DirectSummarizer(build_tiny_summarizer(tempfile.mkdtemp()), "torch", None)
        >>> len(model.summarize(["خبر ورزشی"], batch_size=1, num_beams=1, max_new_tokens=4))
        1
    """

    def __init__(self, model_dir: str | Path, backend: str, quantize: str | None):
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        # Settings the call does not give come from the model's generation config, as in Summarizer.
        saved = GenerationConfig.from_pretrained(model_dir).to_dict()
        self.defaults = {key: saved[key] for key in GENERATION_KEYS if saved.get(key) is not None}
        self.model = AutoModelForSeq2SeqLM.from_pretrained(model_dir).eval() if backend == "torch" else None
        if self.model is None:
            from inference.fast import summarizer_engine

            self.engine = summarizer_engine(model_dir, backend, quantize)

    def summarize(self, texts: list[str], batch_size: int = 16, **generation) -> list[str]:
        """The summary of each text, in input order; ``generation`` as for ``model.generate``."""
        encoded = self.tokenizer([normalize(t) for t in texts], truncation=True, max_length=MAX_TOKENS)["input_ids"]
        summaries: list[str] = [""] * len(texts)
        generation = {**self.defaults, **generation}
        for batch in sorted_batches([len(ids) for ids in encoded], batch_size):
            for i, ids in zip(batch, self._generate([encoded[i] for i in batch], generation), strict=True):
                summaries[i] = self.tokenizer.decode(ids, skip_special_tokens=True)
        return summaries

    def _generate(self, input_ids: list[list[int]], generation: dict) -> list[list[int]]:
        if self.model is None:
            return self.engine.generate(input_ids, generation)
        padded = self.tokenizer.pad({"input_ids": input_ids}, return_tensors="pt")
        with torch.inference_mode():
            return self.model.generate(**padded, **generation).tolist()

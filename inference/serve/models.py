"""The models a server holds, and what one batch of texts becomes: results or per-item errors.

A batch key names the task and the settings its texts share: ``("topic",)`` or
``("summary", num_beams, max_new_tokens)``. A batch the model rejects is retried text by text,
as ``khabar predict`` does, so one bad text fails alone.

Example:
    >>> import tempfile
    >>> from training.tiny import build_tiny_classifier
    >>> from inference import Classifier
    >>> served = ServedModels(Classifier.from_pretrained(build_tiny_classifier(tempfile.mkdtemp()), device="cpu"))
    >>> served.tasks(), len(served.run_batch(TOPIC, ["خبر ورزشی", "خبر اقتصادی"]))
    (['topic'], 2)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from inference.classifier import Classifier
from inference.normalize import normalization_record
from inference.summarizer import Summarizer

TOPIC = ("topic",)
WARMUP_TEXT = "تیم ملی فوتبال ایران دیشب برد."
_INDEX_PREFIX = re.compile(r"^text at index \d+: ")


def task_of(key: tuple) -> str:
    """The task a batch key belongs to: ``topic`` or ``summary``.

    Example:
        >>> task_of(TOPIC), task_of(summary_key(4, None))
        ('topic', 'summary')
    """
    return key[0]


def summary_key(num_beams: int | None, max_new_tokens: int | None) -> tuple:
    """The batch key of summaries decoded with these settings (``None``: the model's default).

    Example:
        >>> summary_key(2, None)
        ('summary', 2, None)
    """
    return ("summary", num_beams, max_new_tokens)


@dataclass
class ServedModels:
    """The loaded classifier and/or summarizer, and how the server runs them.

    ``backend`` is what ``--backend`` asked for; ``paths`` what ``/v1/models`` reports.

    Example:
        >>> ServedModels().tasks()
        []
    """

    classifier: Classifier | None = None
    summarizer: Summarizer | None = None
    backend: str = "auto"
    max_batch: int = 16

    def tasks(self) -> list[str]:
        """The tasks these models answer: ``topic`` and/or ``summary``.

        Example:
            >>> ServedModels(classifier=object()).tasks()
            ['topic']
        """
        return [task for task, model in (("topic", self.classifier), ("summary", self.summarizer)) if model]

    def run_batch(self, key: Hashable, texts: list[str]) -> list[Any]:
        """One result per text for the batch ``key``; an item the model rejects gets its ``ValueError``.

        Topics come as every label with its probability, best first; the caller keeps its ``top_k``.

        Example:
            >>> class Echo:
            ...     def batch_size_for(self, num_beams, at_most):
            ...         return at_most
            ...     def summarize(self, texts, **settings):
            ...         if "" in texts:
            ...             raise ValueError("text at index 0: empty")
            ...         return [text[:4] for text in texts]
            >>> ServedModels(summarizer=Echo()).run_batch(summary_key(None, None), ["خبر امروز", ""])
            ['خبر ', ValueError('summary: empty')]
        """
        if key == TOPIC:
            return _isolate("topic", self._topics, texts)
        _, num_beams, max_new_tokens = key
        summarize = self.summarizer.summarize  # type: ignore[union-attr]
        size = self.summarizer.batch_size_for(num_beams, at_most=self.max_batch)  # type: ignore[union-attr]

        def summaries(batch: list[str]) -> list[str]:
            return summarize(batch, batch_size=size, num_beams=num_beams, max_new_tokens=max_new_tokens)

        return _isolate("summary", summaries, texts)

    def _topics(self, texts: list[str]) -> list[list[dict]]:
        classifier = self.classifier
        return classifier.predict(texts, batch_size=self.max_batch, top_k=len(classifier.labels))  # type: ignore

    def warm_up_keys(self) -> list[tuple]:
        """The batches that warm the models up (run once on :data:`WARMUP_TEXT`), so the first request is not slow.

        Example:
            >>> ServedModels().warm_up_keys()
            []
        """
        keys = [TOPIC] if self.classifier else []
        return keys + ([summary_key(1, 2)] if self.summarizer else [])

    def describe(self) -> dict:
        """What ``GET /v1/models`` reports: per model its labels or decoding defaults, path and normalization.

        Example:
            >>> ServedModels().describe()
            {'backend': 'auto', 'classifier': None, 'summarizer': None}
        """
        info: dict[str, Any] = {"backend": self.backend, "classifier": None, "summarizer": None}
        if self.classifier:
            info["classifier"] = {
                **_common(self.classifier),
                "labels": self.classifier.labels,
                "long_text": self.classifier.long_text,
            }
        if self.summarizer:
            generation = self.summarizer.generation_config
            decoding = ("num_beams", "max_new_tokens", "min_new_tokens", "no_repeat_ngram_size", "length_penalty")
            info["summarizer"] = {
                **_common(self.summarizer),
                "decoding": {name: getattr(generation, name, None) for name in decoding},
            }
        return info


def _common(model: Classifier | Summarizer) -> dict:
    return {
        "path": model.name,
        "engine": model.precision,  # what --backend picked: e.g. "onnx int8 (auto)"
        "device": str(model.device),
        "max_length": model.max_length,
        # What the loaded model applies, not the file as it is now (no disk read per request).
        "normalization": normalization_record(model.digits, model.normalization_version),
    }


def _isolate(task: str, model: Callable[[list[str]], list], texts: list[str]) -> list[Any]:
    """Run ``model`` on the batch; if it rejects the batch, retry it in halves down to single texts, so
    only bad texts fail."""
    try:
        return model(texts)
    except (ValueError, TypeError) as exc:
        if len(texts) == 1:
            return [ValueError(f"{task}: {_INDEX_PREFIX.sub('', str(exc))}")]
        # Halves, not one text at a time: one bad text in a call of 64 costs ~12 calls, not 64.
        half = len(texts) // 2
        return _isolate(task, model, texts[:half]) + _isolate(task, model, texts[half:])

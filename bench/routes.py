"""The ways to run each model that the benchmark compares.

* ``naive``: what a typical user script does: ``transformers.pipeline("text-classification")``
  one article at a time; ``model.generate`` one article at a time for summaries (transformers 5
  has no summarization pipeline any more).
* ``default``: khabar with no flags: ``Classifier``/``Summarizer`` with ``backend="auto"`` (the
  fastest engine installed for this processor) and ``dtype="auto"``, length-sorted batches.
* ``torch``: what the default is without the fast extra: the torch backend with ``dtype="auto"``
  (bf16 with AMX or AMD's AVX512-BF16, fp32 elsewhere).
* ``fp32``: the torch backend in float32 whatever the processor (the default before ``dtype="auto"``).
* ``fast``: khabar's fastest CPU path: the same classes on ONNX Runtime int8 (classifier) and
  CTranslate2 int8 (summarizer).
* ``fast-vocab`` (summarizer): ``fast`` on a model directory holding an output vocabulary of the
  tokens Persian news uses (:mod:`inference.fast.vocab`), so each step scores those rows only.

Each loader returns ``run(texts, decoding)``; ``decoding`` is ignored by the classifier.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

MAX_TOKENS = 512
SUMMARY_TOKENS = 48  # min = max new tokens: random weights must not change the work
DECODINGS = {
    "greedy": {"num_beams": 1, "no_repeat_ngram_size": 3},
    "beam4": {"num_beams": 4, "no_repeat_ngram_size": 3, "length_penalty": 1.0, "early_stopping": True},
}

RunFn = Callable[[list[str], str], None]


@dataclass(frozen=True)
class Route:
    """One way to run one model: which code path, engine and batch size.

    Example:
        >>> Route("summarizer", "fast", "ctranslate2", "int8", 16).label
        'fast (ctranslate2 int8, batch 16)'
        >>> Route("classifier", "torch", "torch", None, 16).label
        'torch (torch auto, batch 16)'
        >>> Route("classifier", "default", "auto", None, 16).label
        'default (auto, batch 16)'
        >>> Route("summarizer", "fast-vocab", "ctranslate2", "int8", 16, vocab=26535).label
        'fast-vocab (ctranslate2 int8, 26.5k output vocab, batch 16)'
        >>> Route("summarizer", "default", "auto", None, None).label  # the class picks by beams
        'default (auto, batch auto)'
    """

    task: str
    name: str
    backend: str
    quantize: str | None
    batch_size: int | None  # None: the class's own choice
    device: str = "cpu"
    dtype: str | None = None  # None: the class's own default (dtype="auto"); the naive route reads float32
    vocab: int | None = None  # size of the restricted output vocabulary, when there is one

    @property
    def label(self) -> str:
        engine = {"naive": "transformers"}.get(self.name, self.backend)
        dtype = self.dtype or ("auto" if self.backend == "torch" and self.name != "naive" else None)
        vocab = f"{self.vocab / 1000:.1f}k output vocab" if self.vocab else None
        details = " ".join(x for x in (engine, self.quantize, dtype) if x)
        batch = f"batch {self.batch_size or 'auto'}"
        return f"{self.name} ({', '.join(x for x in (details, vocab, batch) if x)})"


def generation(decoding: str) -> dict:
    """``generate`` settings of a decoding, with the summary length fixed.

    Example:
        >>> generation("greedy")["min_new_tokens"]
        48
    """
    return {**DECODINGS[decoding], "min_new_tokens": SUMMARY_TOKENS, "max_new_tokens": SUMMARY_TOKENS}


def load(route: Route, model_dir: Path) -> tuple[RunFn, str]:
    """Load ``route`` for the model in ``model_dir``: its run function and which code ran it."""
    if route.name == "naive":
        loader = _naive_classifier if route.task == "classifier" else _naive_summarizer
        return loader(model_dir, route), "transformers"
    return _khabar(route, model_dir)


def _naive_classifier(model_dir: Path, route: Route) -> RunFn:
    from transformers import pipeline

    pipe = pipeline("text-classification", model=str(model_dir), device=route.device, dtype=_dtype(route))

    def run(texts: list[str], decoding: str) -> None:
        for text in texts:
            pipe(text, truncation=True, max_length=MAX_TOKENS)

    return run


def _naive_summarizer(model_dir: Path, route: Route) -> RunFn:
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSeq2SeqLM.from_pretrained(model_dir, dtype=_dtype(route)).to(route.device).eval()

    def run(texts: list[str], decoding: str) -> None:
        for text in texts:
            inputs = tokenizer(text, truncation=True, max_length=MAX_TOKENS, return_tensors="pt").to(route.device)
            with torch.inference_mode():
                ids = model.generate(**inputs, **generation(decoding))
            tokenizer.decode(ids[0], skip_special_tokens=True)

    return run


def _khabar(route: Route, model_dir: Path) -> tuple[RunFn, str]:
    model, via = _khabar_model(route, model_dir)
    if route.task == "classifier":
        return (lambda texts, decoding: model.predict(texts, batch_size=route.batch_size)), via

    def run(texts: list[str], decoding: str) -> None:
        model.summarize(texts, batch_size=route.batch_size, **generation(decoding))

    return run, via


def _khabar_model(route: Route, model_dir: Path):
    if route.task == "classifier":
        from inference.classifier import Classifier as Model
    else:
        from inference.summarizer import Summarizer as Model
    dtype = {"dtype": route.dtype} if route.dtype else {}
    model = Model.from_pretrained(
        model_dir, device=route.device, backend=route.backend, quantize=route.quantize, **dtype
    )
    return model, f"inference.{Model.__name__} {model.precision}"


def _dtype(route: Route) -> torch.dtype:
    return getattr(torch, route.dtype or "float32")

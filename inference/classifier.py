"""``Classifier``: the topic of Persian news articles from a trained model directory or hub id.

Texts are normalized the way the model was trained, tokenized, and articles longer than the
model reads at once are split into overlapping windows whose logits are averaged. Windows are
batched by length and the input order restored. The forward pass is a small function chosen at
load time: ``transformers`` on CPU/GPU (``backend="torch"``) or a fast CPU engine from
:mod:`inference.fast`; ``backend="auto"`` (the default) picks the fastest installed for this
processor. Everything else here is shared by all backends.

Example:
    >>> import tempfile
    >>> from training.tiny import build_tiny_classifier
    >>> classifier = Classifier.from_pretrained(build_tiny_classifier(tempfile.mkdtemp()), device="cpu")
    >>> sorted(classifier("تیم ملی فوتبال ایران برد"))
    ['label', 'score']
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Literal

import torch

from inference.devices import halved_while_out_of_memory
from inference.inputs import check_positive, length_sorted_batches
from inference.load_plan import LoadPlan
from inference.loading import load_weights
from inference.text_model import TextModel

LongText = Literal["windows", "truncate"]
# (input_ids, attention_mask) -> float32 logits on the CPU, one row per window.
Forward = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Prediction = dict[str, str | float]

# Consecutive windows share a quarter of their tokens, so a sentence cut at one window's edge
# is read whole by the next.
WINDOW_OVERLAP = 0.25
# Padded tokens per forward pass on a CPU. An encoder there is compute-bound at any batch size, so
# batching only amortizes per-call overhead, while big batches of long windows outgrow the caches.
# ParsBERT-base on mixed-length articles, docs/s relative to one at a time: batches of 16 0.90x;
# capped at 4096 tokens 0.90x, 2048 1.03x, 1024 1.08-1.11x, 512 1.04x. GPUs batch freely.
CPU_TOKENS_PER_BATCH = 1024
# bfloat16 on AMX tiles gains from bigger batches until they outgrow the caches. ParsBERT-base, 2 cores,
# docs/s at 512 tokens and batch 1/2/4/8: 4.95/6.14/9.28/4.92; at 128-384 tokens a 2,048-token cap
# beats 1,024 by 1.4-1.7x and matches 3,072-4,096 (float32 there: 1.80/1.90/1.85/1.54, no gain).
# Without AMX (AMD Zen 4, AVX512-BF16) the cap hardly matters: 512 to 2,048 tokens within 4%.
BF16_CPU_TOKENS_PER_BATCH = 2048
# Texts tokenized at once: a call over 2,000 long articles held every window's ids (+800 MB);
# 256 at a time keeps that flat, and sorting 256 by length already pads little.
TEXTS_PER_PASS = 256
# On a GPU a batch may hold a thousand short windows (GPU_TOKENS_PER_BATCH): a pass holds several such.
GPU_TEXTS_PER_PASS = 4096
# Padded tokens per forward pass on a GPU: 64 windows of 512 tokens, enough to fill an H100-class GPU
# with ParsBERT-base in bf16 (a few GB of activations); smaller batches leave it waiting on the host.
GPU_TOKENS_PER_BATCH = 64 * 512


class Classifier(TextModel):
    """A topic classifier: ``predict`` / ``predict_proba`` on one text or a list; callable.

    Build it with :meth:`from_pretrained`. ``labels`` are the topics in the model's id order,
    ``max_length`` the tokens it reads at once (longer texts: see ``long_text``); the other
    keyword ``settings`` (normalization, device, names) are :class:`~inference.text_model.TextModel`'s.

    Example:
        >>> import tempfile
        >>> from training.tiny import build_tiny_classifier
        >>> classifier = Classifier.from_pretrained(build_tiny_classifier(tempfile.mkdtemp()), device="cpu")
        >>> len(classifier(["خبر اول", "خبر دوم"])), classifier.max_length
        (2, 512)
    """

    kind = "classifier"

    def __init__(
        self,
        tokenizer,
        forward: Forward,
        labels: list[str],
        *,
        long_text: LongText = "windows",
        cpu_tokens_per_batch: int = CPU_TOKENS_PER_BATCH,
        **settings,
    ) -> None:
        _check_long_text(long_text)
        super().__init__(tokenizer, **settings)
        self.forward = forward
        self.labels = labels
        self.long_text = long_text
        self.cpu_tokens_per_batch = cpu_tokens_per_batch  # padded tokens per forward pass on a CPU

    @classmethod
    def _from_plan(cls, plan: LoadPlan, long_text: LongText = "windows") -> Classifier:
        """Build the classifier ``from_pretrained`` planned; ``long_text``: ``"windows"`` averages
        overlapping windows of a long article, ``"truncate"`` reads only its start.

        Example:
            >>> import tempfile
            >>> from training.tiny import build_tiny_classifier
            >>> path = build_tiny_classifier(tempfile.mkdtemp())
            >>> Classifier.from_pretrained(path, device="cpu", quantize="int8", long_text="truncate").long_text
            'truncate'
        """
        _check_long_text(long_text)
        if plan.backend == "torch":
            forward = _torch_forward(plan.source, plan.device, plan.dtype, plan.quantize)
        else:
            from inference.fast import classifier_engine

            forward = classifier_engine(Path(plan.source), plan.backend, plan.quantize)
        labels = [plan.config.id2label[i] for i in range(plan.config.num_labels)]
        budget = BF16_CPU_TOKENS_PER_BATCH if plan.dtype == torch.bfloat16 else CPU_TOKENS_PER_BATCH
        return cls(
            plan.tokenizer, forward, labels, long_text=long_text, cpu_tokens_per_batch=budget, **plan.model_settings()
        )

    def predict(
        self, texts: str | Iterable[str], batch_size: int = 16, top_k: int = 1
    ) -> Prediction | list[Prediction] | list[list[Prediction]]:
        """The most likely topic of each text: ``{"label": ..., "score": ...}``.

        A string gives one result, a list gives a list in input order. With ``top_k > 1`` each
        result is a list of the ``top_k`` best topics, best first (at most all labels).
        ``batch_size`` counts windows per forward pass (on a GPU, at least: see :func:`gpu_batching`).

        Example:
            >>> import tempfile
            >>> from training.tiny import build_tiny_classifier
            >>> classifier = Classifier.from_pretrained(build_tiny_classifier(tempfile.mkdtemp()), device="cpu")
            >>> len(classifier.predict("بازار بورس امروز", top_k=3))
            3
        """
        check_positive(batch_size=batch_size, top_k=top_k)
        probs, single = self._probabilities(texts, batch_size)
        k = min(top_k, len(self.labels))
        scores, indices = probs.topk(k, dim=-1)
        results = [
            [{"label": self.labels[i], "score": float(s)} for s, i in zip(row_scores, row_indices, strict=True)]
            for row_scores, row_indices in zip(scores.tolist(), indices.tolist(), strict=True)
        ]
        if top_k == 1:
            results = [best for (best,) in results]
        return results[0] if single else results

    __call__ = predict

    def predict_proba(self, texts: str | Iterable[str], batch_size: int = 16) -> dict[str, float] | list[dict]:
        """The probability of every topic: ``{label: prob}`` per text, summing to 1.

        Example:
            >>> import tempfile
            >>> from training.tiny import build_tiny_classifier
            >>> classifier = Classifier.from_pretrained(build_tiny_classifier(tempfile.mkdtemp()), device="cpu")
            >>> round(sum(classifier.predict_proba("خبر ورزشی").values()), 4)
            1.0
        """
        check_positive(batch_size=batch_size)
        probs, single = self._probabilities(texts, batch_size)
        results = [dict(zip(self.labels, row, strict=True)) for row in probs.tolist()]
        return results[0] if single else results

    def _probabilities(self, texts: str | Iterable[str], batch_size: int) -> tuple[torch.Tensor, bool]:
        prepared, single = self.prepare(texts)
        if not prepared:
            return torch.empty(0, len(self.labels), dtype=torch.float32), single
        return self.logits(prepared, batch_size).softmax(dim=-1), single

    def logits(self, texts: list[str], batch_size: int = 16) -> torch.Tensor:
        """Float32 logits, one row per (already normalized) text; long texts average their windows.

        Example:
            >>> import tempfile
            >>> from training.tiny import build_tiny_classifier
            >>> classifier = Classifier.from_pretrained(build_tiny_classifier(tempfile.mkdtemp()), device="cpu")
            >>> classifier.logits(["خبر", "خبر دیگر"]).shape
            torch.Size([2, 7])
        """
        step = TEXTS_PER_PASS if self.device.type == "cpu" else GPU_TEXTS_PER_PASS
        parts = [self._logits(texts[start : start + step], batch_size, start) for start in range(0, len(texts), step)]
        return torch.cat(parts) if parts else torch.empty(0, len(self.labels), dtype=torch.float32)

    def _logits(self, texts: list[str], batch_size: int, first: int) -> torch.Tensor:
        """:meth:`logits` of one pass; ``first`` is the index of ``texts[0]`` in the call, for errors."""
        windows, owners = self.windows(texts)
        # float32 named, not the default: transformers sets the process-wide default dtype (bf16) while
        # another thread loads a model, and index_add_ below refuses to mix the two.
        logits = torch.empty(len(windows), len(self.labels), dtype=torch.float32)
        cpu = self.device.type == "cpu"
        rows, budget = (batch_size, self.cpu_tokens_per_batch) if cpu else gpu_batching(batch_size, self.max_length)
        for batch in length_sorted_batches([len(ids) for ids in windows], rows, budget):
            padded = self.tokenizer.pad({"input_ids": [windows[i] for i in batch]}, return_tensors="pt")
            logits[batch] = self._forward_fitting(padded["input_ids"], padded["attention_mask"])
        # Average the windows of each text: sum them by owner, then divide by the window count.
        owner = torch.tensor(owners)
        sums = torch.zeros(len(texts), len(self.labels), dtype=torch.float32).index_add_(0, owner, logits)
        averaged = sums / torch.bincount(owner, minlength=len(texts)).unsqueeze(1)
        broken = (~torch.isfinite(averaged).all(dim=1)).nonzero().flatten().tolist()
        if broken:
            # NaN would print as a score that is not JSON and pick an arbitrary topic.
            raise ValueError(f"text at index {first + broken[0]}: the model gave NaN or infinite logits (overflow?)")
        return averaged

    def _forward_fitting(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Float32 logits of one batch, split in halves while a GPU runs out of memory."""
        rows = torch.arange(len(input_ids))
        run = lambda part: self.forward(input_ids[part], attention_mask[part]).float()  # noqa: E731
        return halved_while_out_of_memory(run, rows, lambda a, b: torch.cat([a, b]), "windows")

    def windows(self, texts: list[str]) -> tuple[list[list[int]], list[int]]:
        """Token ids of each window the model reads, and the index of the text each belongs to.

        A text within ``max_length`` is one window; a longer one is several overlapping windows
        (``long_text="windows"``) or its first window only (``"truncate"``).

        Example:
            >>> import tempfile
            >>> from training.tiny import build_tiny_classifier
            >>> classifier = Classifier.from_pretrained(build_tiny_classifier(tempfile.mkdtemp()), device="cpu")
            >>> classifier.windows(["کوتاه", "خبر " * 2000])[1][:3]
            [0, 1, 1]
        """
        overlap = int((self.max_length - self.tokenizer.num_special_tokens_to_add()) * WINDOW_OVERLAP)
        encoded = self.tokenizer(
            texts, truncation=True, max_length=self.max_length, stride=overlap, return_overflowing_tokens=True
        )
        owners = list(encoded["overflow_to_sample_mapping"])
        windows = list(encoded["input_ids"])
        if self.long_text == "truncate":
            # The first window of each text is its start; drop the rest.
            firsts = [i for i, owner in enumerate(owners) if i == 0 or owners[i - 1] != owner]
            windows, owners = [windows[i] for i in firsts], [owners[i] for i in firsts]
        return windows, owners

    def __repr__(self) -> str:
        return (
            f"Classifier({self.name!r}, labels={len(self.labels)}, max_length={self.max_length}, device={self.device})"
        )


def _torch_forward(source: str, device: torch.device, dtype: torch.dtype, quantize: str | None) -> Forward:
    """The ``transformers`` forward pass, in inference mode, returning float32 logits on the CPU."""
    from transformers import AutoModelForSequenceClassification

    model = load_weights(AutoModelForSequenceClassification, source, device, dtype, quantize)

    def forward(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            output = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device))
        return output.logits.float().cpu()

    forward.model = model  # kept reachable for inspection and tests
    return forward


def gpu_batching(batch_size: int, max_length: int) -> tuple[int, int]:
    """Rows and padded tokens per forward pass on a GPU: batches fill up to ``GPU_TOKENS_PER_BATCH`` tokens.

    ``batch_size`` windows (a size for a CPU) always fit; shorter windows pack many more to a batch.

    Example:
        >>> gpu_batching(16, 512)
        (32768, 32768)
        >>> gpu_batching(128, 512)[1]
        65536
    """
    budget = max(GPU_TOKENS_PER_BATCH, batch_size * max_length)
    return budget, budget


def _check_long_text(long_text: str) -> None:
    if long_text not in ("windows", "truncate"):
        raise ValueError(f"long_text must be 'windows' or 'truncate', got {long_text!r}")

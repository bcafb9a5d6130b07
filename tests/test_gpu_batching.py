"""GPU inference batching, checked on the CPU with stand-in forward passes on a device labelled cuda:
token-budget batches far larger than the CPU's, and a summarizer batch that halves when memory runs out."""

from __future__ import annotations

import torch
from transformers import AutoTokenizer, GenerationConfig

from inference.classifier import CPU_TOKENS_PER_BATCH, Classifier
from inference.classifier import GPU_TOKENS_PER_BATCH as CLASSIFIER_GPU_TOKENS
from inference.half_space import repair_half_spaces
from inference.summarizer import Summarizer

CUDA = torch.device("cuda")  # a label only: nothing here runs on a GPU


def test_on_a_gpu_the_classifier_fills_batches_by_token_budget(tiny_classifier_dir, sample_articles) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_classifier_dir)
    shapes = []

    def forward(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        shapes.append(tuple(ids.shape))
        return torch.zeros(len(ids), 3)

    classifier = Classifier(tokenizer, forward, ["a", "b", "c"], max_length=512, device=CUDA)
    texts = sample_articles * 3

    assert len(classifier.predict(texts, batch_size=16)) == len(texts)
    assert max(rows for rows, _ in shapes) > 16  # the CPU-sized batch is only a floor
    assert all(rows * length <= CLASSIFIER_GPU_TOKENS for rows, length in shapes)
    assert sum(rows * length for rows, length in shapes) / len(shapes) > CPU_TOKENS_PER_BATCH


def test_on_a_gpu_a_summary_batch_that_runs_out_of_memory_is_halved(tiny_summarizer_dir, sample_articles) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_summarizer_dir)
    calls = []

    def generate(sources: list[list[int]], generation: GenerationConfig) -> list[list[int]]:
        calls.append(len(sources))
        if len(sources) > 3:  # the memory of this stand-in GPU holds three articles' beams
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return [ids[:2] for ids in sources]  # each "summary" is its article's first tokens

    summarizer = Summarizer(tokenizer, generate, GenerationConfig(num_beams=4), max_length=64, device=CUDA)
    texts = sample_articles[:10]

    summaries = summarizer.summarize(texts)

    assert calls[0] == len(texts) > 8  # one batch by token budget, larger than the CPU's 8
    assert max(n for n in calls[1:]) <= len(texts) // 2 and len(summaries) == len(texts)
    # The stand-in writes what the tokenizer decodes, half-spaces put back as for any summary.
    decoded = [tokenizer.decode(ids[:2], skip_special_tokens=True).strip() for ids in summarizer.encode(texts)]
    expected = [repair_half_spaces(text) for text in decoded]
    assert summaries == expected  # every article keeps its own summary, in input order


def test_on_a_gpu_a_classifier_batch_that_runs_out_of_memory_is_halved(tiny_classifier_dir, sample_articles) -> None:
    # khabar serve runs both models at once: the summarizer's beams may leave the classifier short of memory.
    tokenizer = AutoTokenizer.from_pretrained(tiny_classifier_dir)
    calls, answered = [], []

    def forward(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        calls.append(len(ids))
        if len(ids) > 3:  # the memory of this stand-in GPU holds three windows
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        answered.append(len(ids))
        return torch.stack([ids[:, 1].float(), -ids[:, 1].float()], dim=1)  # a score from the first token

    classifier = Classifier(tokenizer, forward, ["first", "second"], max_length=512, device=CUDA)
    texts = sample_articles[:10]

    scores = classifier.logits(texts)

    assert calls[0] > 3 and sum(answered) == len(classifier.windows(texts)[0])  # each window answered once
    expected = torch.tensor([[ids[1], -ids[1]] for ids, _ in zip(*classifier.windows(texts), strict=True)]).float()
    assert torch.equal(scores, expected)  # every article keeps its own logits, in input order

"""On a GPU, train at the largest per-device batch that fits, keeping the recipe's effective batch.

A recipe's ``batch_size x gradient_accumulation_steps`` is the batch each optimizer update sees;
that is what the recipe means. How it is split between the two is only a memory question: a
small per-device batch leaves most of a large GPU idle (mT5-small on an H200 takes about as long
for a step of 32 as for one of 8). So once, before training, a few forward/backward steps at the
longest input length find the largest batch that fits, and the effective batch is re-split:

* ``train.auto_batch=keep`` (default): same effective batch, fewer accumulation steps;
* ``train.auto_batch=grow``: a larger effective batch when more fits, the learning rate scaled by
  the square root of the growth (the rule for Adam, Malladi et al., arXiv:2205.10287); this
  changes the optimisation, so it is opt-in and logged;
* ``train.auto_batch=off``: the config's split as written.

The CPU always trains as written: its loss curves stay exactly as recorded.

Example:
    >>> plan_batches(batch_size=8, accumulation=2, largest=64, mode="keep")
    BatchPlan(batch_size=16, accumulation=1, lr_scale=1.0)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import NamedTuple

import torch

log = logging.getLogger(__name__)

# Leave a share of the memory free: batches are padded per batch, evaluation and the allocator's
# fragmentation need room the probe's steps do not show.
HEADROOM = 0.85
# Beyond this, larger batches no longer raise throughput on current GPUs for these model sizes.
MAX_BATCH = 256


class BatchPlan(NamedTuple):
    """How each optimizer update is split: ``batch_size`` per device times ``accumulation`` steps."""

    batch_size: int
    accumulation: int
    lr_scale: float = 1.0


def largest_batch(step_memory: Callable[[int], int], capacity: int, start: int = 1, limit: int = MAX_BATCH) -> int:
    """The largest power-of-two multiple of ``start`` (up to ``limit``) whose training step fits in memory.

    ``step_memory(n)`` runs one forward/backward at batch ``n`` and returns the peak bytes it used;
    it may raise ``torch.OutOfMemoryError``. A batch fits when it does not raise and its peak stays
    under ``HEADROOM`` of ``capacity``. When not even ``start`` fits, ``start`` is returned: the
    config's own batch then fails as it would have without the probe.

    Example:
        >>> def simulated(n):  # 1 GB of weights and optimizer state, 0.5 GB per example
        ...     if n > 20:
        ...         raise torch.OutOfMemoryError("CUDA out of memory")
        ...     return 10**9 + n * 5 * 10**8
        >>> largest_batch(simulated, capacity=8 * 10**9)
        8
    """
    fits, n = start, start
    while n <= limit:
        try:
            peak = step_memory(n)
        except torch.OutOfMemoryError:
            break
        if peak > HEADROOM * capacity:
            break
        fits, n = n, n * 2
    return fits


def plan_batches(batch_size: int, accumulation: int, largest: int, mode: str = "keep") -> BatchPlan:
    """Split the recipe's effective batch ``batch_size x accumulation`` for a device that fits ``largest``.

    Example:
        >>> plan_batches(16, 2, largest=8)  # the effective 32 as 8 x 4
        BatchPlan(batch_size=8, accumulation=4, lr_scale=1.0)
        >>> plan_batches(8, 2, largest=64, mode="grow")  # 64 per update: learning rate x sqrt(4)
        BatchPlan(batch_size=64, accumulation=1, lr_scale=2.0)
    """
    effective = batch_size * accumulation
    if mode == "off":
        return BatchPlan(batch_size, accumulation)
    if mode == "grow" and largest > effective:
        return BatchPlan(largest, 1, math.sqrt(largest / effective))
    # The largest divisor of the effective batch that fits, so every update sees exactly as many examples.
    fitting = max(d for d in range(1, min(largest, effective) + 1) if effective % d == 0)
    return BatchPlan(fitting, effective // fitting)


def training_step_memory(model: torch.nn.Module, make_batch: Callable[[int], dict], precision: str) -> Callable:
    """A ``step_memory`` for :func:`largest_batch`: one real forward/backward and optimizer step of ``model``.

    The optimizer step uses a learning rate of 0, so the weights do not move, but Adam's state is
    allocated and counted as in training. The random number generators are restored afterwards,
    so probing leaves the seeded run unchanged.

    Example:
        >>> model = torch.nn.Linear(4, 2)
        >>> def batch(n):
        ...     return {"input": torch.ones(n, 4)}
        >>> class Wrapped(torch.nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.inner = model
        ...     def forward(self, input):
        ...         return {"loss": self.inner(input).sum()}
        >>> before = model.weight.detach().clone()
        >>> training_step_memory(Wrapped(), batch, "float32")(3) >= 0
        True
        >>> torch.equal(model.weight, before)
        True
    """
    device = next(model.parameters()).device
    dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(precision)

    def step(n: int) -> int:
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.0, fused=device.type == "cuda")
        devices = [device] if device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices):
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                    loss = model(**make_batch(n))["loss"]
                loss.backward()
                optimizer.step()
                return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
        finally:
            optimizer.zero_grad(set_to_none=True)
            del optimizer
            if device.type == "cuda":
                torch.cuda.empty_cache()

    return step


def random_batch(model: torch.nn.Module, source_length: int, target_length: int | None) -> Callable[[int], dict]:
    """``make_batch(n)``: ``n`` random examples at full length (the longest batch training can meet).

    Example:
        >>> from transformers import BertConfig, BertForSequenceClassification
        >>> bert = BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1,
        ...     num_attention_heads=2, intermediate_size=16))
        >>> sorted(random_batch(bert, 16, None)(2))
        ['attention_mask', 'input_ids', 'labels']
    """
    device = next(model.parameters()).device
    vocab = model.config.vocab_size
    generator = torch.Generator().manual_seed(0)

    def make(n: int) -> dict:
        ids = torch.randint(vocab, (n, source_length), generator=generator).to(device)
        if target_length is None:
            labels = torch.randint(model.config.num_labels, (n,), generator=generator).to(device)
        else:
            labels = torch.randint(vocab, (n, target_length), generator=generator).to(device)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}

    return make


def fit_batch_to_device(args, model: torch.nn.Module, train_cfg, seq2seq: bool = False):
    """Re-split ``args``' effective batch for the GPU it runs on (see the module); on the CPU, ``args`` unchanged.

    ``args`` are the ``TrainingArguments`` built from ``train_cfg``; the plan is logged in one line.

    Example:
        >>> from transformers import TrainingArguments
        >>> from training.config import TrainConfig
        >>> args = TrainingArguments("out", per_device_train_batch_size=8, use_cpu=True)
        >>> fit_batch_to_device(args, torch.nn.Linear(1, 1), TrainConfig()).per_device_train_batch_size
        8
    """
    mode = getattr(train_cfg, "auto_batch", "keep")
    if args.device.type != "cuda" or mode == "off":
        return args
    model.to(args.device)
    precision = "bfloat16" if args.bf16 else "float16" if args.fp16 else "float32"
    make = random_batch(model, train_cfg.max_length, train_cfg.max_target_length if seq2seq else None)
    capacity = torch.cuda.get_device_properties(args.device).total_memory
    was_training = model.training
    model.train()
    largest = largest_batch(training_step_memory(model, make, precision), capacity)
    model.train(was_training)
    model.zero_grad(set_to_none=True)
    plan = plan_batches(args.per_device_train_batch_size, args.gradient_accumulation_steps, largest, mode)
    log.warning(
        "train.auto_batch=%s: up to %d examples of %d tokens fit per step on %s; training at batch %d x %d "
        "accumulation (config: %d x %d)%s",
        mode,
        largest,
        train_cfg.max_length,
        torch.cuda.get_device_name(args.device),
        plan.batch_size,
        plan.accumulation,
        args.per_device_train_batch_size,
        args.gradient_accumulation_steps,
        f", learning rate x{plan.lr_scale:.2f}" if plan.lr_scale != 1.0 else "",
    )
    args.per_device_train_batch_size = plan.batch_size
    args.gradient_accumulation_steps = plan.accumulation
    args.learning_rate *= plan.lr_scale
    return args

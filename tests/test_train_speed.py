"""GPU training speed settings, checked on the CPU: batch-size probing against a simulated memory
limit, the re-split that keeps the effective batch, and the arguments that only a GPU gets."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from transformers import AutoModelForSequenceClassification, TrainingArguments

from training.batch_probe import (
    HEADROOM,
    fit_batch_to_device,
    largest_batch,
    plan_batches,
    random_batch,
    training_step_memory,
)
from training.config import TrainConfig, load_config
from training.hf import trainer_arguments

GB = 10**9


def simulated_gpu(fixed: int, per_example: int, physical: int):
    """A ``step_memory`` for a GPU of ``physical`` bytes: fixed cost plus a cost per example, OOM beyond."""
    tried = []

    def step(n: int) -> int:
        tried.append(n)
        used = fixed + n * per_example
        if used > physical:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {used} bytes")
        return used

    step.tried = tried
    return step


def test_the_probe_finds_the_largest_batch_under_the_memory_limit() -> None:
    # 80 GB GPU; 4 GB of weights and optimizer state; 1 GB an example: 76 would fit, the headroom leaves 64.
    step = simulated_gpu(4 * GB, GB, 80 * GB)

    assert largest_batch(step, capacity=80 * GB) == 64
    assert step.tried == [1, 2, 4, 8, 16, 32, 64, 128]  # stops at the first batch that does not fit


def test_a_batch_that_runs_out_of_memory_is_never_chosen() -> None:
    step = simulated_gpu(4 * GB, GB, 20 * GB)  # 16 fits physically, but 4 + 16 > 85% of 20

    assert largest_batch(step, capacity=20 * GB) == 8
    assert 4 * GB + 8 * GB <= HEADROOM * 20 * GB


def test_when_nothing_fits_the_config_batch_is_kept_to_fail_as_before() -> None:
    assert largest_batch(simulated_gpu(30 * GB, GB, 20 * GB), capacity=20 * GB, start=8) == 8


@given(
    batch=st.integers(1, 64),
    accumulation=st.integers(1, 16),
    largest=st.sampled_from([1, 2, 4, 8, 16, 32, 64, 128, 256]),
)
def test_keep_never_changes_the_examples_per_update_nor_exceeds_what_fits(batch, accumulation, largest) -> None:
    plan = plan_batches(batch, accumulation, largest, "keep")

    assert plan.batch_size * plan.accumulation == batch * accumulation
    assert plan.batch_size <= max(largest, 1) and plan.lr_scale == 1.0


def test_grow_takes_what_fits_and_scales_the_learning_rate_by_the_square_root() -> None:
    grown = plan_batches(8, 2, largest=128, mode="grow")
    assert (grown.batch_size, grown.accumulation, grown.lr_scale) == (128, 1, pytest.approx(8**0.5))
    # Nothing to grow into: the effective batch is kept.
    kept = plan_batches(16, 2, largest=8, mode="grow")
    assert (kept.batch_size, kept.accumulation, kept.lr_scale) == (8, 4, 1.0)
    assert plan_batches(8, 2, largest=128, mode="off") == plan_batches(8, 2, largest=1, mode="off") == (8, 2, 1.0)


def test_probing_a_real_model_leaves_its_weights_and_the_random_stream_alone(tiny_classifier_dir) -> None:
    model = AutoModelForSequenceClassification.from_pretrained(tiny_classifier_dir).train()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    step = training_step_memory(model, random_batch(model, 32, None), "float32")
    torch.manual_seed(7)
    expected_next = torch.rand(1)
    torch.manual_seed(7)

    def limited(n: int) -> int:  # the CPU's stand-in for a GPU that holds 4 examples
        if n > 4:
            raise torch.OutOfMemoryError("simulated")
        return step(n)

    assert largest_batch(limited, capacity=GB) == 4
    assert torch.rand(1) == expected_next
    assert all(torch.equal(p, before[name]) for name, p in model.named_parameters())
    assert all(p.grad is None for p in model.parameters())


def test_on_the_cpu_the_batch_is_never_re_split() -> None:
    args = TrainingArguments("out", per_device_train_batch_size=4, gradient_accumulation_steps=3, use_cpu=True)

    fitted = fit_batch_to_device(args, torch.nn.Linear(1, 1), TrainConfig(auto_batch="grow"))
    assert (fitted.per_device_train_batch_size, fitted.gradient_accumulation_steps) == (4, 3)
    assert fitted.learning_rate == args.learning_rate


def test_cpu_arguments_are_the_recipe_as_written() -> None:
    keywords = trainer_arguments(load_config("configs/summarizer/tiny.yaml"), "float32", "rougeL")

    assert keywords["train_sampling_strategy"] == "group_by_length"
    assert keywords["dataloader_num_workers"] == 0 and not keywords["torch_compile"]
    assert not {"optim", "tf32", "logging_nan_inf_filter", "dataloader_persistent_workers"} & keywords.keys()


def test_a_gpu_gets_fused_adamw_tf32_workers_and_no_per_step_sync(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (9, 0))
    cfg = load_config("configs/summarizer/mt5-small.yaml", ["train.compile=true"])

    keywords = trainer_arguments(cfg, "bfloat16", "rougeL")

    assert keywords["optim"] == "adamw_torch_fused" and keywords["tf32"] is True
    assert keywords["logging_nan_inf_filter"] is False  # its isnan check reads every step's loss back
    assert keywords["dataloader_num_workers"] >= 1 and keywords["dataloader_pin_memory"]
    assert keywords["dataloader_persistent_workers"] and keywords["torch_compile"]
    # The recipe's meaning is untouched: batch, accumulation, rate, sampling.
    assert (keywords["per_device_train_batch_size"], keywords["gradient_accumulation_steps"]) == (8, 2)
    assert keywords["learning_rate"] == 3e-4 and keywords["train_sampling_strategy"] == "group_by_length"


def test_an_explicit_worker_count_wins_on_a_gpu(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (8, 0))
    keywords = trainer_arguments(load_config("configs/classifier/tiny.yaml", ["train.num_workers=0"]), "bfloat16", "f1")

    assert keywords["dataloader_num_workers"] == 0 and "dataloader_prefetch_factor" not in keywords

"""How both trainers call ``transformers``: a starting point named by a config key, and the
``TrainingArguments`` they share, so a new config key reaches both tasks the same way.

Example:
    >>> from training.config import load_config
    >>> trainer_arguments(load_config("configs/classifier/tiny.yaml"), "float32", "macro_f1")["bf16"]
    False
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from training.config import ConfigError, ExperimentConfig
from training.distributed import several_cpu_processes
from training.model_checks import check_model_source
from training.precision import Precision

# DataLoader workers on a GPU: enough to pad and stack batches ahead of the GPU, no more.
GPU_DATA_WORKERS = 4


def load_pretrained(auto_class: type, source: str, key: str):
    """``auto_class.from_pretrained(source)`` without custom code, with a one-line error naming the config key.

    Example:
        >>> from transformers import AutoConfig
        >>> load_pretrained(AutoConfig, "/no/such/model", "model.name_or_path")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        training.config.ConfigError: model.name_or_path: '/no/such/model' is not a local model directory ...
    """
    check_model_source(source, key)
    try:
        return auto_class.from_pretrained(source, trust_remote_code=False)
    except (OSError, ValueError) as error:
        if not Path(source).exists():
            hint = " (build the tiny models with `khabar-train tiny-models`)" if "tiny" in source else ""
            raise ConfigError(
                f"{key}: {source!r} is not a local model directory and the hub has no such model "
                f"or cannot be reached{hint}"
            ) from None
        raise ConfigError(f"{key}: cannot load {source!r}: {str(error).splitlines()[0]}") from None


def trainer_arguments(cfg: ExperimentConfig, precision: Precision, best_metric: str) -> dict:
    """The ``TrainingArguments`` keywords both tasks share: checkpoints follow evaluations, the best is kept.

    Example:
        >>> from training.config import load_config
        >>> keywords = trainer_arguments(load_config("configs/summarizer/tiny.yaml"), "bfloat16", "rougeL")
        >>> keywords["metric_for_best_model"], keywords["bf16"]
        ('rougeL', True)
    """
    t = cfg.train
    workers = data_workers(t.num_workers)
    return {
        "output_dir": cfg.output_dir,
        "num_train_epochs": t.epochs,
        "max_steps": t.max_steps,
        "learning_rate": t.learning_rate,
        "per_device_train_batch_size": t.batch_size,
        "per_device_eval_batch_size": t.eval_batch_size or t.batch_size,
        "gradient_accumulation_steps": t.gradient_accumulation_steps,
        "weight_decay": t.weight_decay,
        "warmup_steps": t.warmup_ratio,  # a float below 1 is a share of all steps
        "seed": t.seed,
        "data_seed": t.seed,
        "fp16": precision == "float16",
        "bf16": precision == "bfloat16",
        "eval_strategy": t.eval_strategy,
        "eval_steps": t.eval_steps,
        "save_strategy": t.eval_strategy,
        "save_steps": t.eval_steps,
        "save_total_limit": t.save_total_limit,
        "load_best_model_at_end": True,
        "metric_for_best_model": best_metric,
        "greater_is_better": True,
        # Early stopping's patience counter lives in the checkpoint too, so a resumed run stops where it would have.
        "restore_callback_states_from_checkpoint": True,
        "logging_steps": t.logging_steps,
        # Articles of similar length share a batch, so dynamic padding adds few pad tokens.
        "train_sampling_strategy": "group_by_length",
        "dataloader_num_workers": workers,
        "dataloader_pin_memory": torch.cuda.is_available(),
        # Under torchrun without a GPU; else each process would train alone on all the data.
        "use_cpu": several_cpu_processes(),
        "torch_compile": t.compile,
        "report_to": "none",
        "disable_tqdm": False,
        **gpu_speed_arguments(workers),
    }


def data_workers(configured: int | None) -> int:
    """DataLoader workers: as configured, else 4 on a GPU (batches ready before it asks) and none on the CPU.

    On the CPU a worker process would only take a core from the training itself.

    Example:
        >>> data_workers(2), data_workers(None) <= GPU_DATA_WORKERS
        (2, True)
    """
    if configured is not None:
        return configured
    return min(GPU_DATA_WORKERS, os.cpu_count() or 1) if torch.cuda.is_available() else 0


def gpu_speed_arguments(workers: int = 0) -> dict:
    """``TrainingArguments`` that only change speed, set where a CUDA GPU trains; none on the CPU.

    They leave the maths of a run alone (same batches, same updates up to float rounding), so a
    recipe means the same on any device; the CPU runs stay exactly as recorded.

    Example:
        >>> gpu_speed_arguments() == {} or gpu_speed_arguments()["optim"] == "adamw_torch_fused"
        True
    """
    if not torch.cuda.is_available():
        return {}
    loading = {"dataloader_persistent_workers": True, "dataloader_prefetch_factor": 4} if workers else {}
    return {
        # One fused kernel for the whole AdamW update instead of several per parameter tensor.
        "optim": "adamw_torch_fused",
        # float32 matrix products (what bf16 autocast leaves in float32) on tensor cores.
        "tf32": torch.cuda.get_device_capability()[0] >= 8,
        # Checking each step's loss for NaN/inf reads it back to the host: a sync that stalls the GPU queue.
        "logging_nan_inf_filter": False,
        **loading,
    }

"""Pieces both training recipes use in the same way: the starting model's checks, title joining,
the trainer's callbacks and progress bars, and the files written beside every trained model.

Composition, not a base class: each task's ``train()`` still reads top to bottom as its recipe and
calls these where its steps are the same.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import (
    AutoConfig,
    AutoTokenizer,
    EarlyStoppingCallback,
    PretrainedConfig,
    PreTrainedTokenizerBase,
    ProgressCallback,
    Trainer,
    TrainerCallback,
)

from inference.model_checks import TOKENIZER_FILES, first_non_finite, has_tokenizer_files
from inference.normalize import join_title, save_normalization
from training.checkpoints import remove_checkpoints
from training.config import ConfigError, ExperimentConfig, TrainConfig, save_config
from training.distributed import LogLastStep, is_main_process, main_process_writes
from training.final_dir import staged_model_dir
from training.hf import load_pretrained
from training.model_card import describe_hardware, write_model_card


def load_tokenizer(cfg: ExperimentConfig) -> PreTrainedTokenizerBase:
    """The tokenizer ``model.tokenizer`` names, else the starting model's; an error names the key actually set.

    Example:
        >>> from training.tiny import tiny_config
        >>> cfg = tiny_config("classifier")
        >>> load_tokenizer(cfg).model_max_length > 0
        True
    """
    key = "model.tokenizer" if cfg.model.tokenizer else "model.name_or_path"
    source = cfg.model.tokenizer or cfg.model.name_or_path
    check_tokenizer_files(source, key)
    return load_pretrained(AutoTokenizer, source, key)


def check_tokenizer_files(source: str, key: str) -> None:
    """Refuse a local model directory without tokenizer files: ``transformers`` would build an empty
    tokenizer from it and train a model that reads every article as unknown tokens.

    A hub id passes (the hub serves its tokenizer); a missing directory is left for the loader to report.

    Example:
        >>> import tempfile
        >>> check_tokenizer_files(tempfile.mkdtemp(), "model.name_or_path")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        training.config.ConfigError: model.name_or_path: ... has no tokenizer files (tokenizer.json, vocab.txt, ...
    """
    folder = Path(source).expanduser()
    if not folder.is_dir() or has_tokenizer_files(folder):
        return
    hint = "" if key == "model.tokenizer" else ", or name a tokenizer with model.tokenizer"
    raise ConfigError(
        f"{key}: {source} has no tokenizer files ({', '.join(TOKENIZER_FILES[:3])}, ...); save the tokenizer "
        f"into it (tokenizer.save_pretrained){hint}"
    )


def starting_config(
    cfg: ExperimentConfig, accepts: Callable[[PretrainedConfig], bool], refusal: str
) -> PretrainedConfig:
    """The starting model's ``config.json`` (from ``model.config`` or ``model.name_or_path``), if ``accepts`` it;
    otherwise a ``ConfigError`` naming the key, the model type and ``refusal``.

    Example:
        >>> from training.tiny import tiny_config
        >>> cfg = tiny_config("summarizer")
        >>> starting_config(cfg, lambda config: config.model_type == "bert", "not an encoder")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        training.config.ConfigError: model.name_or_path: '...' is a mt5 model, not an encoder
    """
    key = "model.config" if cfg.model.config else "model.name_or_path"
    source = cfg.model.config or cfg.model.name_or_path
    config = load_pretrained(AutoConfig, source, key)
    if not accepts(config):
        raise ConfigError(f"{key}: {source!r} is a {config.model_type} model, {refusal}")
    return config


def article_texts(batch: dict[str, list]) -> list[str]:
    """The articles of a tokenizing batch, each after its title when a title column is mapped (as at inference).

    Example:
        >>> article_texts({"text": ["متن"], "title": ["تیتر"]}) == [join_title("تیتر", "متن")]
        True
        >>> article_texts({"text": ["متن"]})
        ['متن']
    """
    texts = batch["text"]
    if "title" in batch:
        texts = [join_title(title, text) for title, text in zip(batch["title"], texts, strict=True)]
    return texts


def trainer_callbacks(train_cfg: TrainConfig, *first: TrainerCallback) -> list[TrainerCallback]:
    """``first``, then the final-step logger, then early stopping when ``train.early_stopping_patience`` is set.

    Example:
        >>> [type(c).__name__ for c in trainer_callbacks(TrainConfig(early_stopping_patience=2))]
        ['LogLastStep', 'EarlyStoppingCallback']
    """
    callbacks = [*first, LogLastStep()]
    if train_cfg.early_stopping_patience is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=train_cfg.early_stopping_patience))
    return callbacks


class LabelledProgress(ProgressCallback):
    """The trainer's progress bars (with ETA), labelled ``training`` and ``prediction_label``.

    Example:
        >>> LabelledProgress("generating summaries").prediction_label
        'generating summaries'
    """

    def __init__(self, prediction_label: str = "scoring") -> None:
        super().__init__()
        self.prediction_label = prediction_label

    def on_train_begin(self, args, state, control, **kwargs):
        super().on_train_begin(args, state, control, **kwargs)
        if self.training_bar is not None:
            self.training_bar.set_description("training")

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        new_bar = self.prediction_bar is None
        super().on_prediction_step(args, state, control, eval_dataloader=eval_dataloader, **kwargs)
        if new_bar and self.prediction_bar is not None:
            self.prediction_bar.set_description(self.prediction_label)


class TrainingDiverged(RuntimeError):
    """The trained weights hold NaN or infinite values: nothing is saved (see :func:`check_finite_weights`)."""


def check_finite_weights(model: torch.nn.Module, cfg: ExperimentConfig) -> None:
    """Refuse to save a model whose weights went NaN or infinite (a learning rate far too high).

    Such a model answers one topic for everything, or nothing at all, and every khabar command
    refuses to load it; saved over an earlier run's model, it would also have replaced a good one.
    Its checkpoints hold the same weights: resuming would not help, so the message says to delete them.

    Example:
        >>> from training.config import load_config
        >>> broken = torch.nn.Linear(2, 2)
        >>> _ = torch.nn.init.constant_(broken.bias, float("nan"))
        >>> check_finite_weights(broken, load_config("configs/classifier/tiny.yaml"))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        training.recipe_parts.TrainingDiverged: training diverged: weight 'bias' holds NaN or infinite values ...
    """
    name = first_non_finite(model)
    if name is None:
        return
    out = Path(cfg.output_dir)
    kept = f" (the earlier model in {out} is unchanged)" if (out / "config.yaml").is_file() else ""
    raise TrainingDiverged(
        f"training diverged: weight {name!r} holds NaN or infinite values after the last step, so the model was "
        f"not saved{kept}; delete {out}/checkpoint-* (they hold the diverged weights) and run again with a lower "
        f"train.learning_rate (now {cfg.train.learning_rate:g})"
    )


def finite_or_null(value: Any) -> Any:
    """``value`` with NaN and infinite numbers as ``None``: JSON has no NaN, and ``json.loads`` elsewhere refuses it.

    Example:
        >>> finite_or_null({"loss": float("nan"), "scores": [1.0, float("inf")]})
        {'loss': None, 'scores': [1.0, None]}
    """
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite_or_null(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_null(item) for item in value]
    return value


def write_run_files(out: Path, cfg: ExperimentConfig, metrics: dict) -> None:
    """Write ``config.yaml``, ``normalization.json`` and ``metrics.json`` (with the hardware) beside the model.

    Example:
        >>> import tempfile
        >>> from training.config import load_config
        >>> out = Path(tempfile.mkdtemp())
        >>> write_run_files(out, load_config("configs/classifier/tiny.yaml"), {"train": {}})
        >>> sorted(p.name for p in out.iterdir())
        ['config.yaml', 'metrics.json', 'normalization.json']
    """
    save_config(cfg, out / "config.yaml")
    save_normalization(out, cfg.data.digits, cfg.data.normalization_version)
    metrics["train"].setdefault("hardware", describe_hardware())
    text = json.dumps(finite_or_null(metrics), indent=2, ensure_ascii=False, allow_nan=False)
    (out / "metrics.json").write_text(text + "\n", encoding="utf-8")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """One JSON object per line, UTF-8, Persian kept readable.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "log.jsonl"
        >>> write_jsonl(path, [{"step": 1}, {"step": 2}])
        >>> path.read_text().splitlines()
        ['{"step": 1}', '{"step": 2}']
    """
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def save_finished_model(trainer: Trainer, cfg: ExperimentConfig, write_outputs: Callable[[Path], None]) -> bool:
    """Save the trained model and its run files into ``output_dir``, whole or not at all; True on the
    process that wrote them (it prints the summary line).

    Refuses diverged weights (:func:`check_finite_weights`), writes into a staging folder moved in
    once complete (:mod:`training.final_dir`: an earlier model there stays whole until then), then
    writes the card and drops the checkpoints. ``write_outputs(folder)`` writes the run files
    (config, metrics, logs) beside the model. Every process ends with the same model and
    whole-split metrics; one writes, all wait for it.
    """
    out = Path(cfg.output_dir)
    check_finite_weights(trainer.model, cfg)
    with staged_model_dir(out) as stage:
        trainer.save_model(str(stage))
        with main_process_writes() as writer:
            if writer:
                write_outputs(stage)
    if not is_main_process():
        return False
    finish_model_dir(out)
    return True


def finish_model_dir(out: Path) -> None:
    """Write the model card from the files now beside the model, then drop the checkpoints.

    Runs last, once the model is in ``out`` (see :mod:`training.final_dir`): the card reads
    ``metrics.json`` and ``config.yaml`` written before it (see ``tests/test_model_card.py``).
    """
    write_model_card(out)
    remove_checkpoints(out)


def epoch_log(log_history: list[dict], headline: tuple[str, ...]) -> list[dict]:
    """``training_log.jsonl`` of both tasks: one row per evaluation with the mean training loss logged since
    the previous one, the validation loss, the ``headline`` validation scores and any per-class scores.

    The trainer's history survives a resume (it is saved in each checkpoint), so a resumed run's
    log covers every epoch.

    Example:
        >>> history = [{"loss": 1.0, "step": 5}, {"loss": 0.5, "step": 10},
        ...            {"eval_loss": 0.7, "eval_macro_f1": 0.4, "eval_sports/f1": 0.9, "epoch": 1.0, "step": 10}]
        >>> row = epoch_log(history, ("macro_f1",))[0]
        >>> row["train_loss"], row["validation_loss"], row["macro_f1"], row["per_class"]
        (0.75, 0.7, 0.4, {'sports': {'f1': 0.9}})
    """
    rows, losses = [], []
    for entry in log_history:
        if "loss" in entry:
            losses.append(entry["loss"])
        if "eval_loss" not in entry:
            continue
        row = {"epoch": entry.get("epoch"), "step": entry.get("step")}
        row["train_loss"] = float(np.mean(losses)) if losses else None
        row["validation_loss"] = entry["eval_loss"]
        per_class: dict[str, dict[str, float]] = {}
        for key, value in entry.items():
            name = key.removeprefix("eval_")
            if "/" in name:
                label, score = name.rsplit("/", 1)
                per_class.setdefault(label, {})[score] = value
            elif key.startswith("eval_") and name in headline:
                row[name] = value
        rows.append({**row, "per_class": per_class})
        losses = []
    return rows

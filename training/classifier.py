"""Fine-tune a BERT-style encoder (ParsBERT) to tell the topic of Persian news, from a config.

``khabar-train configs/classifier/tiny.yaml`` runs :func:`train`, which reads top to bottom:
check precision and resume, load the labelled splits and derive the label set from the training
data, tokenize (title and article joined as at inference), start the model from a checkpoint
(with a new head sized to the labels) or from a config, train with macro-F1 early stopping, score
validation and test with the best model, and write a directory that plain ``transformers`` loads:

* ``model.safetensors``, ``config.json`` (with ``id2label``/``label2id``) and the tokenizer;
* ``config.yaml`` (the resolved config), ``normalization.json`` (how text was normalized),
  ``metrics.json`` (validation and test: accuracy, macro/weighted F1, per-class scores,
  confusion matrix), ``confusion_matrix.png`` and ``training_log.jsonl`` (one line per
  evaluation: training loss, validation loss and scores).

Several CPUs, GPUs or machines: ``torchrun --nproc_per_node N -m training CONFIG`` (the Trainer
shards the batches and gathers the predictions; only the main process writes the directory).
"""

from __future__ import annotations

import copy
import json
import logging
import math
from collections import Counter
from functools import partial
from pathlib import Path

import datasets
import torch
from transformers import (
    AutoModelForSequenceClassification,
    DataCollatorWithPadding,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    ProgressCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)
from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES

from inference.normalize import normalize
from training import recipe_parts as parts
from training.batch_probe import fit_batch_to_device
from training.card_sections import since_resume
from training.checkpoints import DataNote, checkpoint_to_resume
from training.class_weights import class_weights, weighted_loss
from training.classifier_scores import BEST_METRIC, HEADLINE, epoch_metrics, evaluate_split
from training.config import ConfigError, ExperimentConfig, TrainConfig
from training.data import Columns, DataError, load_splits
from training.distributed import loss_is_batch_mean
from training.evaluation.plots import plot_confusion_matrix
from training.hf import trainer_arguments
from training.model_checks import load_weights
from training.output_dir import check_output_dir
from training.precision import Precision, training_precision

log = logging.getLogger(__name__)


def train(cfg: ExperimentConfig, callbacks: list[TrainerCallback] | None = None) -> Path:
    """Train the topic classifier ``cfg`` describes and write its model directory; returns ``cfg.output_dir``.

    ``callbacks`` are extra ``transformers`` trainer callbacks (logging, custom stopping rules).

    Example:
        >>> import contextlib, io
        >>> from training.tiny import tiny_config
        >>> cfg = tiny_config("classifier", "train.max_steps=2", "data.max_eval_samples=8")  # seconds, not minutes
        >>> with contextlib.redirect_stdout(io.StringIO()):  # the trainer's log lines
        ...     out = train(cfg)
        >>> (out / "model.safetensors").is_file(), (out / "training_log.jsonl").is_file()
        (True, True)
    """
    if cfg.task != "classification":
        raise ConfigError(f"task: the classifier trains task 'classification', not {cfg.task!r}")
    set_seed(cfg.train.seed)
    # Every config check (model type, precision, resume) runs before data and weights are loaded.
    starting = starting_model_config(cfg)
    precision = training_precision(cfg.train, starting.model_type)
    check_max_length(cfg.train, starting)
    check_output_dir(cfg)
    resume_from = checkpoint_to_resume(cfg)
    tokenizer = parts.load_tokenizer(cfg)
    columns = Columns(text=cfg.data.text_column, label=cfg.data.label_column, title=cfg.data.title_column)
    raw = load_splits(cfg.data, columns, cfg.train.seed)
    labels = label_set(raw, cfg)
    if resume_from:
        check_resume_labels(Path(resume_from), labels)
    model = loss_is_batch_mean(load_model(cfg, labels, starting))
    tokenized = {name: tokenize(split, tokenizer, labels, cfg.train.max_length) for name, split in raw.items()}

    mixed = precision != "float32"
    balanced = cfg.train.class_weights == "balanced"
    loss = weighted_loss(class_weights(raw["train"]["label"], labels)) if balanced else None
    trainer = Trainer(
        model=model,
        args=fit_batch_to_device(training_arguments(cfg, precision), model, cfg.train),
        # Pads each batch to its own longest article; multiples of 8 suit tensor cores under mixed precision.
        data_collator=DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8 if mixed else None),
        train_dataset=tokenized["train"],
        eval_dataset=tokenized["validation"],
        processing_class=tokenizer,
        compute_metrics=partial(epoch_metrics, labels=labels),
        compute_loss_func=loss,  # None: the model's own unweighted cross-entropy
        callbacks=parts.trainer_callbacks(cfg.train, LogAtEvaluation()) + [DataNote(cfg), *(callbacks or [])],
    )
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(TopicProgress())
    trained = trainer.train(resume_from_checkpoint=resume_from)

    # The best checkpoint is loaded back; score it on the whole validation and test splits.
    metrics = {
        "labels": labels,
        "train": {
            **trained.metrics,
            f"best_validation_{BEST_METRIC}": trainer.state.best_metric,
            # A resumed run's runtime and loss are those of the part since the resume: say so.
            "resumed_from": Path(resume_from).name if resume_from else None,
        },
    }
    for name in ("validation", "test"):
        if name in tokenized:
            metrics[name] = evaluate_split(trainer, tokenized[name], labels, name)

    out = Path(cfg.output_dir)
    # Inference reads its input length from the saved tokenizer: record the length trained on.
    tokenizer.model_max_length = cfg.train.max_length
    if parts.save_finished_model(
        trainer, cfg, lambda folder: write_outputs(folder, cfg, trainer.state.log_history, metrics)
    ):
        split = "test" if "test" in metrics else "validation"
        print(
            f"topic classifier written to {out}/ (model, tokenizer, config.yaml, metrics.json, "
            f"confusion_matrix.png, training_log.jsonl); {split} accuracy {metrics[split]['accuracy']:.3f}, "
            f"macro-F1 {metrics[split]['macro_f1']:.3f} over {len(labels)} labels; "
            f"trained in {metrics['train']['train_runtime']:.0f} s{since_resume(metrics)}"
        )
    return out


def label_set(splits: dict[str, datasets.Dataset], cfg: ExperimentConfig) -> list[str]:
    """The training data's labels in sorted order; a validation or test label outside them is a ``DataError``.

    Sorted order keeps the label ids stable whatever the row order of the file.

    Example:
        >>> from training.config import load_config
        >>> cfg = load_config("configs/classifier/tiny.yaml")
        >>> label_set({"train": datasets.Dataset.from_dict({"label": ["sports", "economy", "sports"]})}, cfg)
        ['economy', 'sports']
    """
    # Rows held out of the training file for validation still belong to the training data's labels.
    held_out = splits["validation"]["label"] if "validation" in splits and not cfg.data.validation_file else []
    labels = sorted({*splits["train"]["label"], *held_out})
    warn_about_label_variants(labels)
    if len(labels) < 2:
        raise DataError(
            f"{cfg.data.train_file}: column {cfg.data.label_column!r} has {len(labels)} distinct label(s) "
            f"{labels}; a classifier needs at least two"
        )
    for name, source in (("validation", cfg.data.validation_file), ("test", cfg.data.test_file)):
        if name not in splits or not source:
            continue
        unseen = Counter(label for label in splits[name]["label"] if label not in labels)
        if unseen:
            found = ", ".join(f"{label!r} ({count} rows)" for label, count in sorted(unseen.items()))
            raise DataError(
                f"{source}: column {cfg.data.label_column!r} has label(s) {found} that never occur in the training "
                f"data {cfg.data.train_file}; training labels are: {', '.join(labels)}"
            )
    return labels


def warn_about_label_variants(labels: list[str]) -> None:
    """Log the labels that differ only in letter forms, digits or invisible marks (``ورزشي`` and
    ``ورزشی``), or are one number written two ways (``1`` and ``1.0``: pandas writes a label column
    with a gap as floats): each becomes a class of its own, splitting one topic's rows between two.

    Labels are names, so they are not rewritten (a model trained on ``1.0`` keeps it); the warning
    says which to merge in the data.

    Example:
        >>> warn_about_label_variants(["sports", "ورزشي", "ورزشی", "1", "1.0"])  # logs two warnings
    """
    groups: dict[str, list[str]] = {}
    for label in labels:
        groups.setdefault(_label_key(label), []).append(label)
    for variants in groups.values():
        if len(variants) > 1:
            log.warning(
                "labels %s are one label written two ways (letter forms, digits, invisible marks or a number "
                "as an integer and a float): each is a class of its own; merge them in the data",
                " and ".join(repr(label) for label in variants),
            )


def _label_key(label: str) -> str:
    """What two ways of writing one label share: its number, else its normalized text."""
    try:
        number = float(label)
    except ValueError:
        return normalize(label)
    return repr(number) if math.isfinite(number) else normalize(label)


def check_resume_labels(checkpoint: Path, labels: list[str]) -> None:
    """Refuse to resume a checkpoint trained on other labels: its head would be the wrong size, or map
    each output to another topic.

    Example:
        >>> import json, tempfile
        >>> checkpoint = Path(tempfile.mkdtemp()) / "checkpoint-4"
        >>> checkpoint.mkdir()
        >>> _ = (checkpoint / "config.json").write_text(json.dumps({"id2label": {"0": "art", "1": "sports"}}))
        >>> check_resume_labels(checkpoint, ["art", "sports"])
        >>> check_resume_labels(checkpoint, ["art", "economy"])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        training.config.ConfigError: train.resume: .../checkpoint-4 was trained on the labels art, sports; ...
    """
    try:
        id2label = json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))["id2label"]
        trained = [str(id2label[str(i)]) for i in range(len(id2label))]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"train.resume: {checkpoint}/config.json has no readable id2label ({error})") from None
    if trained != labels:
        raise ConfigError(
            f"train.resume: {checkpoint} was trained on the labels {', '.join(trained)}; the data now has "
            f"{', '.join(labels)}; resume with the same data, or delete the checkpoint-* folders to start over"
        )


def starting_model_config(cfg: ExperimentConfig) -> PretrainedConfig:
    """The starting model's config, checked to have a sequence-classification head.

    Example:
        >>> from training.tiny import tiny_config
        >>> cfg = tiny_config("classifier")
        >>> starting_model_config(cfg).model_type
        'bert'
    """
    return parts.starting_config(
        cfg,
        lambda config: config.model_type in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
        "which has no sequence-classification head "
        "(topic classification starts from an encoder such as HooshvareLab/bert-fa-base-uncased)",
    )


def load_model(cfg: ExperimentConfig, labels: list[str], original: PretrainedConfig | None = None) -> PreTrainedModel:
    """The model to fine-tune, its head sized to ``labels`` and its config carrying ``id2label``/``label2id``.

    From ``model.name_or_path`` the encoder weights are loaded and the classification head is new,
    unless the checkpoint already predicts exactly these labels (continued training). From
    ``model.config`` every weight is fresh (seeded).

    Example:
        >>> from training.tiny import tiny_config
        >>> cfg = tiny_config("classifier")
        >>> model = load_model(cfg, ["economy", "sports"])
        >>> model.config.id2label
        {0: 'economy', 1: 'sports'}
    """
    original = original or starting_model_config(cfg)
    id2label = dict(enumerate(labels))
    config = copy.deepcopy(original)
    config.id2label, config.label2id = id2label, {label: i for i, label in id2label.items()}
    if cfg.model.config:
        return AutoModelForSequenceClassification.from_config(config, trust_remote_code=False)
    # A head of the wrong size is re-initialized by ignore_mismatched_sizes; float32 master weights for AMP.
    model = load_weights(
        AutoModelForSequenceClassification,
        cfg.model.name_or_path,
        "model.name_or_path",
        config=config,
        ignore_mismatched_sizes=True,
        dtype=torch.float32,
    )
    if len(original.id2label) == len(labels) and [original.id2label[i] for i in range(len(labels))] != labels:
        _reset_head(model)  # same size, other meaning: the old head would map to the wrong topics
    return model


def _reset_head(model: PreTrainedModel) -> None:
    """Give every linear layer outside the encoder fresh weights, as ``transformers`` initializes a new head."""
    std = getattr(model.config, "initializer_range", 0.02)
    for name, child in model.named_children():
        if name == model.base_model_prefix:
            continue
        for module in child.modules():
            if isinstance(module, torch.nn.Linear):
                torch.nn.init.normal_(module.weight, mean=0.0, std=std)
                if module.bias is not None:
                    torch.nn.init.zeros_(module.bias)
    log.info("new classification head: the checkpoint's labels differ from the training data's")


def check_max_length(train_cfg: TrainConfig, model_config: PretrainedConfig) -> None:
    """Refuse a ``train.max_length`` longer than the model has positions for (it would crash mid-training).

    Example:
        >>> from transformers import BertConfig
        >>> check_max_length(TrainConfig(max_length=1024), BertConfig(max_position_embeddings=512))
        Traceback (most recent call last):
        ...
        training.config.ConfigError: train.max_length: 1024 tokens exceed the model's 512 positions; use at most 512
    """
    limit = getattr(model_config, "max_position_embeddings", None)
    if limit and train_cfg.max_length > limit:
        raise ConfigError(
            f"train.max_length: {train_cfg.max_length} tokens exceed the model's {limit} positions; use at most {limit}"
        )


def tokenize(
    split: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, labels: list[str], max_length: int
) -> datasets.Dataset:
    """Token ids of each article (title first when mapped, as at inference) and its label id; not padded.

    Example:
        >>> import tempfile
        >>> from transformers import AutoTokenizer
        >>> from training.tiny import build_tiny_classifier
        >>> split = datasets.Dataset.from_dict({"text": ["متن خبر"], "label": ["sports"], "title": ["تیتر"]})
        >>> tok = AutoTokenizer.from_pretrained(build_tiny_classifier(tempfile.mkdtemp()))
        >>> tokenize(split, tok, ["economy", "sports"], 32)[0]["labels"]
        1
    """
    label_id = {label: i for i, label in enumerate(labels)}

    def encode(batch: dict[str, list]) -> dict[str, list]:
        features = tokenizer(parts.article_texts(batch), max_length=max_length, truncation=True)
        features["labels"] = [label_id[label] for label in batch["label"]]
        return features

    return split.map(encode, batched=True, remove_columns=split.column_names, desc="tokenizing")


def training_arguments(cfg: ExperimentConfig, precision: Precision = "float32") -> TrainingArguments:
    """Map the config onto ``TrainingArguments`` (checkpoints follow evaluations; the best macro-F1 is kept).

    Example:
        >>> from training.config import load_config
        >>> training_arguments(load_config("configs/classifier/tiny.yaml")).metric_for_best_model
        'macro_f1'
    """
    return TrainingArguments(**trainer_arguments(cfg, precision, BEST_METRIC))


class LogAtEvaluation(TrainerCallback):
    """Log the training loss whenever the model is evaluated, so every epoch row has one.

    Between evaluations the loss is still logged every ``train.logging_steps`` steps.
    """

    def on_step_end(self, args, state, control, **kwargs):
        control.should_log = control.should_log or control.should_evaluate

    def on_epoch_end(self, args, state, control, **kwargs):
        control.should_log = control.should_log or control.should_evaluate


class TopicProgress(parts.LabelledProgress):
    """The labelled progress bars, and one short line per evaluation instead of a raw dict."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or self.training_bar is None or not logs:
            return
        if f"eval_{BEST_METRIC}" in logs:
            scores = ", ".join(f"{name} {logs[f'eval_{name}']:.3f}" for name in HEADLINE)
            self.training_bar.write(
                f"epoch {logs.get('epoch', 0):.2f}: validation loss {logs['eval_loss']:.4f}, {scores}"
            )
        elif "loss" in logs:
            self.training_bar.set_postfix(loss=f"{logs['loss']:.4f}")


def write_outputs(out: Path, cfg: ExperimentConfig, log_history: list[dict], metrics: dict) -> None:
    """Write config, normalization, metrics, the confusion matrix and the epoch log beside the model.

    Runs at the end of :func:`train` (into the staging folder), whose example covers it.
    """
    parts.write_run_files(out, cfg, metrics)
    split = "test" if "test" in metrics else "validation"
    plot_confusion_matrix(
        metrics[split]["confusion_matrix"], out / "confusion_matrix.png", f"Confusion matrix ({split})"
    )
    parts.write_jsonl(out / "training_log.jsonl", parts.epoch_log(log_history, HEADLINE))

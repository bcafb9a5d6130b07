"""Fine-tune a sequence-to-sequence model (mT5) to write Persian news leads, from a config.

``khabar-train configs/summarizer/tiny.yaml`` runs :func:`train`, which reads top to bottom:
check the model and precision, load and tokenize the article/summary pairs, set the decoding
settings, train with ROUGE-L early stopping, score validation and test with the best model,
and write a model directory that plain ``transformers`` loads:

* ``model.safetensors``, ``config.json`` and the tokenizer;
* ``generation_config.json``: the config's ``generation`` section, so ``model.generate()``
  decodes exactly as khabar does;
* ``config.yaml`` (the resolved config), ``normalization.json``, ``metrics.json``
  (validation and test ROUGE, mean generated length), ``samples.jsonl`` (generated summaries
  beside their references) and ``training_log.jsonl`` (one line per evaluation, as the classifier's).

Several CPUs, GPUs or machines: ``torchrun --nproc_per_node N -m training CONFIG`` (only the main
process writes the directory).
"""

from __future__ import annotations

import copy
import logging
from functools import partial
from pathlib import Path

import datasets
import numpy as np
import torch
from transformers import (
    AutoModelForSeq2SeqLM,
    DataCollatorForSeq2Seq,
    GenerationConfig,
    PretrainedConfig,
    PreTrainedTokenizerBase,
    ProgressCallback,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
    TrainerCallback,
    set_seed,
)
from transformers.trainer_utils import EvalPrediction

from inference.summarizer import loses_half_spaces, tidy_summary
from training import recipe_parts as parts
from training.batch_probe import fit_batch_to_device
from training.checkpoints import DataNote, checkpoint_to_resume
from training.config import ConfigError, ExperimentConfig, GenerationSettings, TrainConfig
from training.data import Columns, load_splits
from training.distributed import loss_is_batch_mean
from training.hf import trainer_arguments
from training.metrics.rouge import rouge, rouge_per_example
from training.model_checks import load_weights
from training.model_kind import is_seq2seq
from training.output_dir import check_output_dir
from training.precision import Precision, training_precision

log = logging.getLogger(__name__)

# Generated summaries written to samples.jsonl beside their references: enough to eyeball, small to open.
NUM_SAMPLES = 5
# Validation scores kept per evaluation in training_log.jsonl.
HEADLINE = ("rouge1", "rouge2", "rougeL", "rougeLsum", "gen_len")


def train(cfg: ExperimentConfig, callbacks: list[TrainerCallback] | None = None) -> Path:
    """Train the summarizer ``cfg`` describes and write its model directory; returns ``cfg.output_dir``.

    ``callbacks`` are extra ``transformers`` trainer callbacks (logging, custom stopping rules).

    Example:
        >>> import contextlib, io
        >>> from training.tiny import tiny_config
        >>> quick = ("train.max_steps=2", "data.max_eval_samples=2", "generation.num_beams=1")  # seconds, not minutes
        >>> cfg = tiny_config("summarizer", *quick)
        >>> with contextlib.redirect_stdout(io.StringIO()):  # the trainer's log lines
        ...     out = train(cfg)
        >>> (out / "model.safetensors").is_file(), (out / "training_log.jsonl").is_file()
        (True, True)
    """
    if cfg.task != "summarization":
        raise ConfigError(f"task: the summarizer trains task 'summarization', not {cfg.task!r}")
    set_seed(cfg.train.seed)
    model_config = load_model_config(cfg)
    precision = training_precision(cfg.train, model_config.model_type)
    check_output_dir(cfg)
    resume_from = checkpoint_to_resume(cfg)
    tokenizer = parts.load_tokenizer(cfg)
    columns = Columns(text=cfg.data.text_column, summary=cfg.data.summary_column, title=cfg.data.title_column)
    raw = load_splits(cfg.data, columns, cfg.train.seed)
    tokenized = {name: tokenize(split, tokenizer, cfg.train) for name, split in raw.items()}
    model = loss_is_batch_mean(_load_model(cfg, model_config))
    model.generation_config = generation_config(cfg.generation, model.config)

    eval_sample = generation_sample(tokenized["validation"], cfg.train.generation_eval_samples, cfg.train.seed)
    trainer = DecodingKeepingTrainer(
        model=model,
        args=fit_batch_to_device(training_arguments(cfg, precision), model, cfg.train, seq2seq=True),
        data_collator=DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100),
        train_dataset=tokenized["train"],
        eval_dataset=eval_sample,
        processing_class=tokenizer,
        compute_metrics=partial(summary_metrics, tokenizer=tokenizer, rows=len(eval_sample)),
        callbacks=parts.trainer_callbacks(cfg.train) + [DataNote(cfg), *(callbacks or [])],
    )
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(parts.LabelledProgress("generating summaries"))
    trained = trainer.train(resume_from_checkpoint=resume_from)

    # Score the best model on whole splits against the untruncated reference texts.
    trainer.compute_metrics = None
    metrics = {
        "train": {
            **trained.metrics,
            "best_validation_rougeL": trainer.state.best_metric,
            # A resumed run's runtime and loss are those of the part since the resume: say so.
            "resumed_from": Path(resume_from).name if resume_from else None,
        }
    }
    predictions = {}
    for name in ("validation", "test"):
        if name in raw:
            metrics[name], predictions[name] = evaluate_split(trainer, tokenized[name], raw[name], name, cfg)

    out = Path(cfg.output_dir)
    # Inference reads its input length from the saved tokenizer: record the length trained on.
    tokenizer.model_max_length = cfg.train.max_length
    model.generation_config = generation_config(cfg.generation, model.config)
    if parts.save_finished_model(
        trainer, cfg, lambda folder: write_outputs(folder, cfg, trainer, metrics, raw, predictions)
    ):
        test = metrics.get("test", metrics["validation"])
        print(
            f"summarizer written to {out}/ (model, tokenizer, generation_config.json, config.yaml, metrics.json, "
            f"samples.jsonl, training_log.jsonl); {'test' if 'test' in metrics else 'validation'} "
            f"ROUGE-1/2/L {test['rouge1']:.1f}/{test['rouge2']:.1f}/{test['rougeL']:.1f}"
        )
    return out


class DecodingKeepingTrainer(Seq2SeqTrainer):
    """``Seq2SeqTrainer`` whose predictions leave the model's decoding settings as they were.

    transformers 5's ``prediction_step`` writes its own defaults (``max_length=20``, ...) into
    ``model.generation_config`` after each batch; every later ``generate`` then sees both
    ``max_length`` and our ``max_new_tokens`` set and logs a warning per batch.

    Example:
        >>> issubclass(DecodingKeepingTrainer, Seq2SeqTrainer)
        True
    """

    def prediction_step(self, *args, **kwargs):
        saved = copy.deepcopy(self.model.generation_config)
        try:
            return super().prediction_step(*args, **kwargs)
        finally:
            self.model.generation_config = saved


def load_model_config(cfg: ExperimentConfig) -> PretrainedConfig:
    """The starting model's ``config.json``, checked to be a sequence-to-sequence model.

    Example:
        >>> from training.tiny import tiny_config
        >>> load_model_config(tiny_config("summarizer")).model_type
        'mt5'
    """
    return parts.starting_config(
        cfg,
        is_seq2seq,
        "not a sequence-to-sequence model (summarization starts from one such as google/mt5-small)",
    )


def _load_model(cfg: ExperimentConfig, config: PretrainedConfig) -> torch.nn.Module:
    if cfg.model.config:  # fresh random weights, seeded above
        return AutoModelForSeq2SeqLM.from_config(config, trust_remote_code=False)
    # float32 master weights: mixed precision casts per operation, the optimizer needs full precision.
    return load_weights(AutoModelForSeq2SeqLM, cfg.model.name_or_path, "model.name_or_path", dtype=torch.float32)


def tokenize(split: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, train_cfg: TrainConfig) -> datasets.Dataset:
    """Token ids of articles (``input_ids``) and summaries (``labels``), truncated, not padded.

    Padding happens per batch in the collator, so a batch of short articles stays short.

    Example:
        >>> import tempfile
        >>> from transformers import AutoTokenizer
        >>> from training.tiny import build_tiny_summarizer
        >>> tok = AutoTokenizer.from_pretrained(build_tiny_summarizer(tempfile.mkdtemp()))
        >>> split = datasets.Dataset.from_dict({"text": ["متن خبر"], "summary": ["خلاصه"]})
        >>> tokenize(split, tok, TrainConfig()).column_names
        ['input_ids', 'attention_mask', 'labels']
    """

    def encode(batch: dict[str, list]) -> dict[str, list]:
        features = tokenizer(parts.article_texts(batch), max_length=train_cfg.max_length, truncation=True)
        targets = tokenizer(text_target=batch["summary"], max_length=train_cfg.max_target_length, truncation=True)
        features["labels"] = targets["input_ids"]
        return features

    return split.map(encode, batched=True, remove_columns=split.column_names, desc="tokenizing")


def generation_sample(validation: datasets.Dataset, size: int | None, seed: int) -> datasets.Dataset:
    """The validation rows summarised at each evaluation: a seeded random ``size`` of them (all when ``None``).

    Generation dominates evaluation time on a CPU; a fixed sample keeps scores comparable across epochs.

    Example:
        >>> len(generation_sample(datasets.Dataset.from_dict({"x": list(range(10))}), 4, seed=0))
        4
    """
    if size is not None and size <= 0:
        raise ConfigError(f"train.generation_eval_samples must be positive or null, got {size}")
    if size is None or size >= len(validation):
        return validation
    return validation.shuffle(seed=seed).select(range(size))


def generation_config(settings: GenerationSettings, model_config: PretrainedConfig) -> GenerationConfig:
    """The decoding settings saved as ``generation_config.json``.

    Example:
        >>> from transformers import MT5Config
        >>> generation_config(GenerationSettings(), MT5Config()).no_repeat_ngram_size
        3
    """
    tokens = ("decoder_start_token_id", "pad_token_id", "eos_token_id")
    return GenerationConfig(**settings.decoding(), **{name: getattr(model_config, name) for name in tokens})


def training_arguments(cfg: ExperimentConfig, precision: Precision = "float32") -> Seq2SeqTrainingArguments:
    """Map the config onto ``Seq2SeqTrainingArguments`` (checkpoints follow evaluations; best ROUGE-L kept).

    Example:
        >>> from training.config import load_config
        >>> training_arguments(load_config("configs/summarizer/tiny.yaml")).metric_for_best_model
        'rougeL'
    """
    return Seq2SeqTrainingArguments(**trainer_arguments(cfg, precision, "rougeL"), predict_with_generate=True)


def decode(token_ids: np.ndarray, tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """Texts of generated or label ids; ``-100`` (ignored label positions, gather padding) counts as padding.

    Example:
        >>> import tempfile
        >>> from transformers import AutoTokenizer
        >>> from training.tiny import build_tiny_summarizer
        >>> tok = AutoTokenizer.from_pretrained(build_tiny_summarizer(tempfile.mkdtemp()))
        >>> decode(np.array([tok("خبر").input_ids + [-100]]), tok)
        ['خبر']
    """
    ids = np.where(token_ids == -100, tokenizer.pad_token_id, token_ids)
    return [text.strip() for text in tokenizer.batch_decode(ids, skip_special_tokens=True)]


def _mean_length(token_ids: np.ndarray, tokenizer: PreTrainedTokenizerBase) -> float:
    real = (token_ids != tokenizer.pad_token_id) & (token_ids != -100)
    return float(np.count_nonzero(real, axis=1).mean())


def summary_metrics(
    prediction: EvalPrediction, tokenizer: PreTrainedTokenizerBase, rows: int | None = None
) -> dict[str, float]:
    """ROUGE of generated summaries against the label summaries, and their mean length in tokens.

    ``rows`` is the evaluated split's size: see :func:`whole_split`.

    Example:
        >>> import tempfile
        >>> from transformers import AutoTokenizer
        >>> from training.tiny import build_tiny_summarizer
        >>> tok = AutoTokenizer.from_pretrained(build_tiny_summarizer(tempfile.mkdtemp()))
        >>> ids = np.array([tok("تیم ملی برد").input_ids])
        >>> summary_metrics(EvalPrediction(predictions=ids, label_ids=ids), tok)["rougeL"]
        100.0
    """
    generated, labels = whole_split(prediction.predictions, rows), whole_split(prediction.label_ids, rows)
    scores = rouge(decode(generated, tokenizer), decode(labels, tokenizer))
    return {**scores, "gen_len": _mean_length(generated, tokenizer)}


def whole_split(gathered: np.ndarray, rows: int | None) -> np.ndarray:
    """The first ``rows`` gathered rows: each split row once, in order.

    Across several processes ``Seq2SeqTrainer`` gathers generated summaries with plain ``gather``,
    which keeps the rows repeated (from the start of the split) to give every process an equal last
    batch; they come after all the real rows.

    Example:
        >>> whole_split(np.array([[1], [2], [3], [1]]), rows=3).tolist()  # row 1 repeated to even out
        [[1], [2], [3]]
    """
    return gathered if rows is None else gathered[:rows]


def evaluate_split(
    trainer: Seq2SeqTrainer, tokenized: datasets.Dataset, raw: datasets.Dataset, name: str, cfg: ExperimentConfig
) -> tuple[dict[str, float], list[str]]:
    """Summarise a whole split with the trained model: its metrics and the generated summaries.

    The summaries are tidied as ``Summarizer`` will return them (see :func:`inference.summarizer.tidy_summary`).
    Runs inside :func:`train`, whose example covers it (it needs a trained ``Seq2SeqTrainer``).
    """
    output = trainer.predict(tokenized, metric_key_prefix=name)
    generated = whole_split(output.predictions, len(raw))
    tokenizer = trainer.processing_class
    half_spaces = cfg.data.normalization_version >= 2 and loses_half_spaces(tokenizer)
    summaries = [tidy_summary(text, half_spaces) for text in decode(generated, tokenizer)]
    metrics = rouge(summaries, raw["summary"])
    metrics["gen_len"] = _mean_length(generated, trainer.processing_class)
    metrics["gen_words"] = float(np.mean([len(summary.split()) for summary in summaries]))
    metrics["loss"] = output.metrics[f"{name}_loss"]
    metrics["rows"] = len(summaries)
    return metrics, summaries


def write_outputs(
    out: Path,
    cfg: ExperimentConfig,
    trainer: Seq2SeqTrainer,
    metrics: dict,
    raw: dict[str, datasets.Dataset],
    predictions: dict[str, list[str]],
) -> None:
    """Write config, normalization, metrics, samples and the training log beside the model.

    Runs at the end of :func:`train`, whose example covers it.
    """
    parts.write_run_files(out, cfg, metrics)
    split = "test" if "test" in predictions else "validation"
    rows = raw[split].select(range(min(NUM_SAMPLES, len(raw[split]))))
    summaries = predictions[split][: len(rows)]
    scores = rouge_per_example(summaries, rows["summary"])["rougeL"]
    samples = [
        {
            "split": split,
            "article": row["text"],
            "reference": row["summary"],
            "generated": summary,
            "rougeL": round(score, 2),
        }
        for row, summary, score in zip(rows, summaries, scores, strict=True)
    ]
    parts.write_jsonl(out / "samples.jsonl", samples)
    parts.write_jsonl(out / "training_log.jsonl", parts.epoch_log(trainer.state.log_history, HEADLINE))

"""Typed training configuration: defaults in code, values in YAML, ``key=value`` overrides last.

A config file has the sections of :class:`ExperimentConfig`. Every value passes through the
typed schema, so ``2e-5`` becomes a float even though plain YAML reads it as a string, and an
unknown key, a wrong type or an impossible combination is a one-line :class:`ConfigError`
naming the key and the file.

Example config (``configs/classifier/tiny.yaml``)::

    task: classification
    model:
      name_or_path: models/tiny/classifier
    data:
      train_file: data/sample/train.jsonl
    train:
      epochs: 3
      learning_rate: 5e-4
    output_dir: models/classifier
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

Task = Literal["classification", "summarization"]


class ConfigError(ValueError):
    """A config problem, reported in one line naming the file and the key."""


@dataclass
class ModelConfig:
    """Where the model starts from."""

    name_or_path: str | None = None
    """Checkpoint to fine-tune: a hub id (``HooshvareLab/bert-fa-base-uncased``) or a local directory."""
    config: str | None = None
    """Instead of a checkpoint: a model ``config.json`` (file or directory) to build fresh random weights from."""
    tokenizer: str | None = None
    """Tokenizer directory or hub id; defaults to ``name_or_path``. Required with ``config``."""


@dataclass
class DataConfig:
    """Which data to read and which of its columns feed the model."""

    train_file: str | None = None
    """Training data: a JSONL, CSV, TSV or Parquet file, or a ``datasets`` hub id."""
    validation_file: str | None = None
    """Validation data; when absent, ``validation_fraction`` of the training data is held out."""
    test_file: str | None = None
    """Test data, scored once at the end (optional)."""
    text_column: str = "article"
    """Column holding the article body."""
    label_column: str = "category"
    """Column holding the topic (classification)."""
    summary_column: str = "summary"
    """Column holding the reference summary (summarization)."""
    title_column: str | None = None
    """Optional column holding the headline; prepended to the article when set."""
    validation_fraction: float = 0.1
    """Share of the training data held out for validation when no ``validation_file`` is given."""
    max_train_samples: int | None = None
    """Use at most this many training rows (quick experiments)."""
    max_eval_samples: int | None = None
    """Use at most this many validation and test rows."""
    digits: Literal["persian", "latin", "keep"] = "persian"
    """Digit policy of the normalizer, recorded in the model directory for inference."""
    normalization_version: int = 2
    """Normalizer version (2: half-space repairs; 1: the first policy), recorded for inference."""

    def __post_init__(self) -> None:
        if self.normalization_version not in (1, 2):
            raise ConfigError(f"data.normalization_version must be 1 or 2, got {self.normalization_version}")


@dataclass
class TrainConfig:
    """Optimisation and run settings (they map onto ``transformers.TrainingArguments``)."""

    epochs: float = 3.0
    """Passes over the training data."""
    learning_rate: float = 2e-5
    """Peak learning rate of the linear schedule."""
    batch_size: int = 16
    """Examples per device per step."""
    eval_batch_size: int | None = None
    """Examples per device during evaluation; defaults to ``batch_size``."""
    gradient_accumulation_steps: int = 1
    """Steps whose gradients add up before one optimizer update."""
    max_length: int = 512
    """Longest input in tokens; longer articles are truncated."""
    max_target_length: int = 128
    """Longest reference summary in tokens (summarization)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    warmup_ratio: float = 0.0
    """Share of steps spent warming the learning rate up."""
    seed: int = 42
    """Seed for data order, initialisation and the held-out split."""
    max_steps: int = -1
    """Stop after this many optimizer steps (overrides ``epochs`` when positive)."""
    fp16: bool = False
    """Mixed precision in float16 (CUDA only; refused for T5-family models, which overflow)."""
    bf16: bool = False
    """Mixed precision in bfloat16 (where the hardware supports it)."""
    early_stopping_patience: int | None = 2
    """Stop after this many evaluations without improvement; ``null`` disables early stopping."""
    class_weights: Literal["balanced"] | None = None
    """``balanced`` weights the loss by inverse class frequency (classification)."""
    resume: bool = False
    """Continue from the last checkpoint in ``output_dir``."""
    eval_strategy: Literal["epoch", "steps"] = "epoch"
    """Evaluate after every epoch, or every ``eval_steps`` steps."""
    eval_steps: int | None = None
    """Steps between evaluations when ``eval_strategy`` is ``steps``."""
    logging_steps: int = 10
    """Steps between training-loss log lines."""
    generation_eval_samples: int | None = 64
    """Validation rows summarised with ``generate`` at each evaluation (``null``: all); keeps CPU runs quick."""
    num_workers: int | None = None
    """DataLoader worker processes; ``null``: none on the CPU, 4 on a GPU (with pinned memory)."""
    save_total_limit: int | None = 2
    """Checkpoints kept in ``output_dir`` (the best one is always kept)."""
    auto_batch: Literal["keep", "grow", "off"] = "keep"
    """On a GPU: ``keep`` the effective batch, split into the largest per-device batch that fits; ``grow`` it to
    that batch (learning rate x sqrt of the growth); ``off``: as written. The CPU always trains as written."""
    compile: bool = False
    """Compile the model with ``torch.compile`` (pays off on a GPU over long runs; minutes of compiling first)."""


@dataclass
class GenerationSettings:
    """Decoding settings saved as the model's ``generation_config.json`` (summarization)."""

    num_beams: int = 4
    """Beam width."""
    no_repeat_ngram_size: int = 3
    """Never repeat an n-gram of this size in one summary."""
    length_penalty: float = 1.0
    """Exponent on length in beam scores (>1 favours longer summaries)."""
    early_stopping: bool = True
    """Stop beam search once ``num_beams`` finished candidates exist."""
    max_new_tokens: int = 128
    """Longest summary in tokens."""
    min_new_tokens: int = 0
    """Shortest summary in tokens."""


@dataclass
class ExperimentConfig:
    """One training run: the task, the model, the data, the optimisation and where to write."""

    task: Task = "classification"
    """``classification`` (topic) or ``summarization`` (lead)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Starting point of the model."""
    data: DataConfig = field(default_factory=DataConfig)
    """Data files and column mapping."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Optimisation settings."""
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    """Decoding settings (summarization)."""
    output_dir: str = "models/classifier"
    """Directory the trained model, metrics and logs are written to."""

    def __post_init__(self) -> None:
        if not self.model.name_or_path and not self.model.config:
            raise ConfigError("model.name_or_path or model.config must be set")
        if self.model.config and not (self.model.tokenizer or self.model.name_or_path):
            raise ConfigError("model.config needs model.tokenizer (a fresh model still needs a tokenizer)")
        if not self.data.train_file:
            raise ConfigError("data.train_file must be set")
        if self.train.fp16 and self.train.bf16:
            raise ConfigError("train.fp16 and train.bf16 are exclusive: pick one")
        if self.train.eval_strategy == "steps" and not self.train.eval_steps:
            raise ConfigError("train.eval_strategy=steps needs train.eval_steps")
        if self.task == "summarization" and self.train.class_weights:
            raise ConfigError("train.class_weights applies to classification only")
        from training.validation import check_ranges  # it imports ConfigError from here

        check_ranges(self)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Convert a YAML value to the field's type, or raise naming the key."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if errors else f"{key}: bad value {value!r}")
    if origin is Literal:
        if value not in typing.get_args(hint):
            choices = ", ".join(map(repr, typing.get_args(hint)))
            raise ConfigError(f"{key}: {value!r} is not one of {choices}")
        return value
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a section (mapping), got {value!r}")
        return _build(hint, value, key + ".")
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 2e-5 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    raise ConfigError(f"{key}: unsupported type {hint}")


def _build(cls: type, values: dict, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for name, value in values.items():
        if name not in hints:
            raise ConfigError(f"unknown key {prefix + name!r}; known keys: {', '.join(prefix + n for n in names)}")
        kwargs[name] = _coerce(value, hints[name], prefix + name)
    return cls(**kwargs)


def parse_overrides(overrides: list[str]) -> dict:
    """Turn ``["train.learning_rate=3e-5", "data.train_file=x.jsonl"]`` into a nested dict.

    Values are read as YAML (``true``, ``null``, numbers); the schema then checks their type.

    Example:
        >>> parse_overrides(["train.epochs=2", "output_dir=out"])
        {'train': {'epochs': 2}, 'output_dir': 'out'}
    """
    nested: dict = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not key=value")
        node = nested
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} conflicts with another override")
        node[leaf] = _override_value(item, raw)
    return nested


def _override_value(item: str, raw: str) -> Any:
    """A plain YAML value; a tag (``!!python/...``) is refused, never constructed."""
    if not raw.strip():
        return None
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"override {item!r}: not a plain value ({problem})") from None


def _merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read a YAML config, apply ``key=value`` overrides, and validate it against the schema.

    Example:
        >>> cfg = load_config("configs/classifier/tiny.yaml", ["train.learning_rate=3e-5"])
        >>> cfg.train.learning_rate
        3e-05
    """
    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as error:
        raise ConfigError(f"{path}: cannot read config ({error.strerror})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: invalid YAML ({getattr(error, 'problem', error)})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    try:
        values = _merge(values, parse_overrides(overrides or []))
        return _build(ExperimentConfig, values)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def config_to_dict(cfg: ExperimentConfig) -> dict:
    """The resolved config as plain data, in the same shape as the YAML files.

    Example:
        >>> config_to_dict(ExperimentConfig(model=ModelConfig("m"), data=DataConfig("t.jsonl")))["task"]
        'classification'
    """
    return dataclasses.asdict(cfg)


def save_config(cfg: ExperimentConfig, path: str | Path) -> Path:
    """Write the resolved config as YAML, so a run can be repeated exactly.

    Example:
        >>> import tempfile, os
        >>> cfg = ExperimentConfig(model=ModelConfig("m"), data=DataConfig("t.jsonl"))
        >>> save_config(cfg, os.path.join(tempfile.mkdtemp(), "config.yaml")).name
        'config.yaml'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def field_help(cls: type = ExperimentConfig, prefix: str = "") -> list[tuple[str, str]]:
    """Every config key with its one-line description (from the field docstrings), for ``--help``.

    Example:
        >>> dict(field_help())["train.learning_rate"]
        'Peak learning rate of the linear schedule.'
    """
    import ast
    import inspect

    docs: dict[str, str] = {}
    body = ast.parse(inspect.getsource(cls)).body[0].body
    for node, nxt in zip(body, body[1:], strict=False):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            docs[node.target.id] = str(nxt.value.value).strip()
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            rows += field_help(hints[f.name], prefix + f.name + ".")
        else:
            rows.append((prefix + f.name, docs.get(f.name, "")))
    return rows

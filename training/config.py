"""Typed training configuration: defaults in code, values in YAML, ``key=value`` overrides last.

A config file has the sections of :class:`ExperimentConfig`. Every value passes through the
typed schema, so ``2e-5`` becomes a float even though plain YAML reads it as a string, and an
unknown key (or one the task does not read, :data:`ONE_TASK_KEYS`), a wrong type (a quoted
``"20"`` is text, not a number), an empty name or an impossible combination is a one-line
:class:`ConfigError` naming the key and the file. The YAML itself is read by
:mod:`training.config_yaml`, which refuses alias bombs and echoes no value at length.

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
import datetime
import difflib
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from inference.normalize import NORMALIZER_VERSION, NORMALIZER_VERSIONS
from training.config_yaml import PlainNumber, read_yaml, reads_as_number, shorten, shown

Task = Literal["classification", "summarization"]


class ConfigError(ValueError):
    """A config problem, reported in one line naming the file and the key."""


def key(default: Any, doc: str) -> Any:
    """A config key: its default and its one-line ``--help`` text, kept in the field's metadata.

    Metadata (not source text) carries the help, so ``khabar-train --help`` works in an install without sources.

    Example:
        >>> dataclasses.fields(TrainConfig)[0].metadata["help"]
        'Passes over the training data.'
    """
    return field(default=default, metadata={"help": doc})


@dataclass
class ModelConfig:
    """Where the model starts from."""

    name_or_path: str | None = key(
        None, "Checkpoint to fine-tune: a hub id (``HooshvareLab/bert-fa-base-uncased``) or a local directory."
    )
    config: str | None = key(
        None, "Instead of a checkpoint: a model ``config.json`` (file or directory) to build fresh random weights from."
    )
    tokenizer: str | None = key(
        None, "Tokenizer directory or hub id; defaults to ``name_or_path``. Required with ``config``."
    )


@dataclass
class DataConfig:
    """Which data to read and which of its columns feed the model."""

    train_file: str | None = key(None, "Training data: a JSONL, CSV, TSV or Parquet file, or a ``datasets`` hub id.")
    validation_file: str | None = key(
        None, "Validation data; when absent, ``validation_fraction`` of the training data is held out."
    )
    test_file: str | None = key(None, "Test data, scored once at the end (optional).")
    text_column: str = key("article", "Column holding the article body.")
    label_column: str = key("category", "Column holding the topic (classification).")
    summary_column: str = key("summary", "Column holding the reference summary (summarization).")
    title_column: str | None = key(
        None, "Optional column holding the headline; prepended to the article when set (``null``: no headline)."
    )
    validation_fraction: float = key(
        0.1, "Share of the training data held out for validation when no ``validation_file`` is given."
    )
    max_train_samples: int | None = key(None, "Use at most this many training rows (quick experiments).")
    max_eval_samples: int | None = key(None, "Use at most this many validation and test rows.")
    digits: Literal["persian", "latin", "keep"] = key(
        "persian", "Digit policy of the normalizer, recorded in the model directory for inference."
    )
    normalization_version: int = key(
        NORMALIZER_VERSION,
        "Normalizer version (4: v3 keeping the hamza of ۀ and ئ; 3: v2 on composed Unicode; "
        "2: half-space repairs; 1: the first policy), "
        "recorded for inference.",
    )

    def __post_init__(self) -> None:
        if self.normalization_version not in NORMALIZER_VERSIONS or isinstance(self.normalization_version, bool):
            known = ", ".join(map(str, NORMALIZER_VERSIONS))
            got = shown(self.normalization_version)
            raise ConfigError(f"data.normalization_version must be one of {known}, got {got}")


@dataclass
class TrainConfig:
    """Optimisation and run settings (they map onto ``transformers.TrainingArguments``)."""

    epochs: float = key(3.0, "Passes over the training data.")
    learning_rate: float = key(2e-5, "Peak learning rate of the linear schedule.")
    batch_size: int = key(16, "Examples per device per step.")
    eval_batch_size: int | None = key(None, "Examples per device during evaluation; defaults to ``batch_size``.")
    gradient_accumulation_steps: int = key(1, "Steps whose gradients add up before one optimizer update.")
    max_length: int = key(512, "Longest input in tokens; longer articles are truncated.")
    max_target_length: int = key(128, "Longest reference summary in tokens (summarization).")
    weight_decay: float = key(0.0, "AdamW weight decay.")
    warmup_ratio: float = key(0.0, "Share of steps spent warming the learning rate up.")
    seed: int = key(42, "Seed for data order, initialisation and the held-out split.")
    max_steps: int = key(-1, "Stop after this many optimizer steps (overrides ``epochs`` when positive).")
    fp16: bool = key(False, "Mixed precision in float16 (CUDA only; refused for T5-family models, which overflow).")
    bf16: bool = key(False, "Mixed precision in bfloat16 (where the hardware supports it).")
    early_stopping_patience: int | None = key(
        2, "Stop after this many evaluations without improvement; ``null`` disables early stopping."
    )
    class_weights: Literal["balanced"] | None = key(
        None, "``balanced`` weights the loss by inverse class frequency (classification)."
    )
    resume: bool = key(False, "Continue from the last checkpoint in ``output_dir``.")
    eval_strategy: Literal["epoch", "steps"] = key(
        "epoch", "Evaluate after every epoch, or every ``eval_steps`` steps."
    )
    eval_steps: int | None = key(None, "Steps between evaluations when ``eval_strategy`` is ``steps``.")
    logging_steps: int = key(10, "Steps between training-loss log lines.")
    generation_eval_samples: int | None = key(
        64, "Validation rows summarised with ``generate`` at each evaluation (``null``: all); keeps CPU runs quick."
    )
    num_workers: int | None = key(
        None, "DataLoader worker processes; ``null``: none on the CPU, 4 on a GPU (with pinned memory)."
    )
    save_total_limit: int | None = key(2, "Checkpoints kept in ``output_dir`` (the best one is always kept).")
    auto_batch: Literal["keep", "grow", "off"] = key(
        "keep",
        "On a GPU: ``keep`` the effective batch, split into the largest per-device batch that fits; ``grow`` it "
        "to that batch (learning rate x sqrt of the growth); ``off``: as written. The CPU always trains as written.",
    )
    compile: bool = key(
        False,
        "Compile the model with ``torch.compile`` (pays off on a GPU over long runs; minutes of compiling first).",
    )


@dataclass
class GenerationSettings:
    """Decoding settings saved as the model's ``generation_config.json`` (summarization).

    The defaults are the pn-summary paper's; no-repeat n-grams also keep a tiny model out of loops.
    """

    num_beams: int = key(4, "Beam width.")
    no_repeat_ngram_size: int = key(3, "Never repeat an n-gram of this size in one summary.")
    length_penalty: float = key(1.0, "Exponent on length in beam scores (>1 favours longer summaries).")
    early_stopping: bool = key(True, "Stop beam search once ``num_beams`` finished candidates exist.")
    max_new_tokens: int = key(128, "Longest summary in tokens.")
    min_new_tokens: int = key(0, "Shortest summary in tokens.")

    def decoding(self) -> dict[str, Any]:
        """These settings as ``GenerationConfig`` keyword arguments: the one definition of the default decoding.

        Example:
            >>> GenerationSettings(num_beams=1).decoding()
            {'num_beams': 1, 'no_repeat_ngram_size': 3, 'max_new_tokens': 128}
        """
        decoding = {k: getattr(self, k) for k in ("num_beams", "no_repeat_ngram_size", "max_new_tokens")}
        if self.min_new_tokens:
            decoding["min_new_tokens"] = self.min_new_tokens
        # transformers refuses to save beam-only flags without beams.
        if self.num_beams > 1:
            decoding |= {"length_penalty": self.length_penalty, "early_stopping": self.early_stopping}
        return decoding


@dataclass
class ExperimentConfig:
    """One training run: the task, the model, the data, the optimisation and where to write."""

    task: Task = key("classification", "``classification`` (topic) or ``summarization`` (lead).")
    model: ModelConfig = field(default_factory=ModelConfig, metadata={"help": "Starting point of the model."})
    data: DataConfig = field(default_factory=DataConfig, metadata={"help": "Data files and column mapping."})
    train: TrainConfig = field(default_factory=TrainConfig, metadata={"help": "Optimisation settings."})
    generation: GenerationSettings = field(
        default_factory=GenerationSettings, metadata={"help": "Decoding settings (summarization)."}
    )
    output_dir: str = key("models/classifier", "Directory the trained model, metrics and logs are written to.")
    overwrite: bool = key(
        False,
        "Write into a non-empty ``output_dir`` that holds files other than an earlier khabar run's "
        "(same-named files there are overwritten); otherwise such a folder is refused.",
    )

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


# Keys only one task reads, with that task: given to the other task they would be ignored without a word
# (``generation.num_beams`` does nothing to a classifier), so a config of that task refuses them.
ONE_TASK_KEYS: dict[str, Task] = {
    "data.label_column": "classification",
    "train.class_weights": "classification",
    "data.summary_column": "summarization",
    "train.max_target_length": "summarization",
    "train.generation_eval_samples": "summarization",
    "generation": "summarization",
}


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Convert a YAML value to the field's type, or raise naming the key."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(value, typing.get_args(hint), key)
    if origin is Literal:
        if value not in typing.get_args(hint):
            choices = ", ".join(map(repr, typing.get_args(hint)))
            raise ConfigError(f"{key}: {shown(value)} is not one of {choices}")
        return value
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a section (mapping), got {shown(value)}")
        return _build(hint, value, key + ".")
    if hint in _SCALARS:
        return _SCALARS[hint](value, key)
    raise ConfigError(f"{key}: unsupported type {hint}")


def _coerce_union(value: Any, options: tuple, key: str) -> Any:
    """The first option of ``X | None`` that takes ``value``; else the first option's error."""
    if value is None and type(None) in options:
        return None
    if str in options and type(None) in options and _blank(value):
        raise ConfigError(f"{key}: expected a non-empty string or null, got {shown(value)}")
    errors = []
    for option in options:
        if option is type(None):
            continue
        try:
            return _coerce(value, option, key)
        except ConfigError as error:
            errors.append(str(error))
    raise ConfigError(errors[0] if errors else f"{key}: bad value {shown(value)}")


def _to_bool(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    raise ConfigError(f"{key}: expected true or false, got {shown(value)}")


def _to_int(value: Any, key: str) -> int:
    number = _number(value)
    if isinstance(number, int) and not isinstance(number, bool):
        return number
    if isinstance(number, float) and number.is_integer():
        return int(number)
    raise ConfigError(f"{key}: expected an integer, got {shown(value)}{_quoted_hint(value)}")


def _to_float(value: Any, key: str) -> float:
    number = _number(value)
    if isinstance(number, (int, float)) and not isinstance(number, bool):
        return float(number)
    raise ConfigError(f"{key}: expected a number, got {shown(value)}{_quoted_hint(value)}")


def _to_str(value: Any, key: str) -> str:
    if _blank(value):  # an empty column or path names nothing; it would be read as "not set" without a word
        raise ConfigError(f"{key}: expected a non-empty string, got {shown(value)}")
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    if type(value) is datetime.date:  # YAML reads an unquoted 2024-01-01 as a date; as a name it is that text
        return value.isoformat()
    raise ConfigError(f"{key}: expected a string, got {shown(value)}")


_SCALARS = {bool: _to_bool, int: _to_int, float: _to_float, str: _to_str}


def _number(value: Any) -> Any:
    """An unquoted number YAML 1.1 left as text (``2e-5`` has no dot) as the float it is; anything else as is."""
    return float(value) if isinstance(value, PlainNumber) else value


def _blank(value: Any) -> bool:
    return isinstance(value, str) and not value.strip()


def _quoted_hint(value: Any) -> str:
    """Why ``"20"`` is refused: quotes make it text, and a number key never guesses a number out of text."""
    quoted = isinstance(value, str) and not isinstance(value, PlainNumber) and reads_as_number(value)
    return " (quotes make it text: drop them)" if quoted else ""


def _build(cls: type, values: dict, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for name, value in values.items():
        if name not in hints:
            known = ", ".join(prefix + n for n in names)
            raise ConfigError(f"unknown key {shown(f'{prefix}{name}')}; known keys: {known}")
        kwargs[name] = _coerce(value, hints[name], prefix + name)
    return cls(**kwargs)


def _refuse_unknown_keys(cls: type, values: dict, task: Any, prefix: str = "") -> None:
    """Raise naming the first key of ``values`` that ``cls`` (or a section in it) lacks, with the likely
    key meant and the keys ``task`` reads there (the other task's keys are not offered)."""
    hints = typing.get_type_hints(cls)
    for name, value in values.items():
        hint = hints.get(name) if isinstance(name, str) else None
        if hint is None:
            names = [n for n in hints if ONE_TASK_KEYS.get(prefix + n, task) == task]
            close = difflib.get_close_matches(str(name), names, n=1, cutoff=0.8)
            meant = f" (did you mean {prefix + close[0]!r}?)" if close else ""
            known = [prefix + n for n in names]
            raise ConfigError(f"unknown key {shown(f'{prefix}{name}')}{meant}; known keys: {', '.join(known)}")
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            _refuse_unknown_keys(hint, value, task, f"{prefix}{name}.")


def _refuse_other_task_keys(values: dict, cfg: ExperimentConfig) -> None:
    """Raise naming a key of ``values`` (the merged file and overrides) that ``cfg.task`` does not read.

    Only keys given with a value other than their default count: a config saved by an earlier
    version lists every key of both tasks with its default, and must still load.
    """
    for dotted, owner in ONE_TASK_KEYS.items():
        section, _, name = dotted.rpartition(".")
        given = values.get(section) if section else values
        if owner == cfg.task or not isinstance(given, dict) or name not in given:
            continue
        holder = getattr(cfg, section) if section else cfg
        if getattr(holder, name) != _default(type(holder), name):
            raise ConfigError(f"unknown key {dotted!r} for task {cfg.task!r}: it applies to {owner} only")


def _default(cls: type, name: str) -> Any:
    """The default of dataclass ``cls``'s field ``name``."""
    found = next(f for f in dataclasses.fields(cls) if f.name == name)
    return found.default_factory() if found.default is dataclasses.MISSING else found.default


def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read a YAML config, apply ``key=value`` overrides, and validate it against the schema.

    Example:
        >>> cfg = load_config("configs/classifier/tiny.yaml", ["train.learning_rate=3e-5"])
        >>> cfg.train.learning_rate
        3e-05
    """
    from training.overrides import merge, parse_overrides  # here: overrides imports ConfigError from this module

    path = Path(path)
    values = _read_config_file(path)
    try:
        values = merge(values, parse_overrides(overrides or []))
        _refuse_unknown_keys(ExperimentConfig, values, values.get("task", _default(ExperimentConfig, "task")))
        cfg = _build(ExperimentConfig, values)
        _refuse_other_task_keys(values, cfg)  # after the values' own checks, which the message would hide
        return _home_expanded(cfg)
    except ConfigError as error:
        raise ConfigError(f"{_blamed(path, overrides or [], str(error))}: {error}") from None


# Keys naming a file or folder: a leading ~ is the home folder, as a shell would read it.
_PATH_KEYS = (
    "output_dir",
    "model.name_or_path",
    "model.tokenizer",
    "data.train_file",
    "data.validation_file",
    "data.test_file",
)


def _home_expanded(cfg: ExperimentConfig) -> ExperimentConfig:
    """``cfg`` with ``~`` expanded in its paths, once: the lock, the trainer and the final save all
    used to read ``output_dir`` their own way (two of them wrote ``$HOME/x``, one ``./~/x``).

    Example:
        >>> import os
        >>> cfg = load_config("configs/classifier/tiny.yaml", ["output_dir=~/models/x"])
        >>> cfg.output_dir == os.path.expanduser("~/models/x")
        True
    """
    for dotted in _PATH_KEYS:
        *sections, name = dotted.split(".")
        owner = cfg
        for section in sections:
            owner = getattr(owner, section)
        value = getattr(owner, name)
        if isinstance(value, str) and value.startswith("~"):
            setattr(owner, name, os.path.expanduser(value))
    return cfg


def _read_config_file(path: Path) -> dict:
    """The config file's mapping of sections, or a one-line :class:`ConfigError` naming the file (and line)."""
    try:
        values = read_yaml(path.read_text(encoding="utf-8")) or {}
    except OSError as error:
        raise ConfigError(f"{path}: cannot read config ({error.strerror})") from None
    except UnicodeDecodeError:
        from training.data import encoding_error  # here: data imports config's types for its hints

        raise ConfigError(str(encoding_error(path))) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{path}{where}: invalid YAML ({shorten(problem, 200)})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return values


def _blamed(path: Path, overrides: list[str], message: str) -> str:
    """Where a bad value came from: the command-line override whose key the message names, else the file."""
    for item in reversed(overrides):  # the last override of a key is the one that counted
        parts = item.partition("=")[0].strip().split(".")
        prefixes = [".".join(parts[: i + 1]) for i in range(len(parts))]
        if any(message.startswith(f"{p}:") or f"{p!r}" in message for p in prefixes):
            return f"override {shown(item)}"
    return str(path)


def config_to_dict(cfg: ExperimentConfig) -> dict:
    """The resolved config as plain data, in the same shape as the YAML files, without the other task's keys.

    Those keys (:data:`ONE_TASK_KEYS`) would make the saved config one that :func:`load_config` refuses.

    Example:
        >>> values = config_to_dict(ExperimentConfig(model=ModelConfig("m"), data=DataConfig("t.jsonl")))
        >>> values["task"], "generation" in values, "label_column" in values["data"]
        ('classification', False, True)
    """
    values = dataclasses.asdict(cfg)
    for dotted, owner in ONE_TASK_KEYS.items():
        section, _, name = dotted.rpartition(".")
        if owner != cfg.task:
            (values[section] if section else values).pop(name)
    return values


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

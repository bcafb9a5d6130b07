"""The valid range of every numeric config key, checked when a config loads, before any work.

A value out of range would not fail loudly later: ``gradient_accumulation_steps=-2`` trains zero
steps and saves an untrained model, a negative ``logging_steps`` crashes after the data is
tokenized, a NaN learning rate trains to garbage. :data:`RANGES` lists each numeric key once; a
test checks that no numeric field of the schema is missing from it.

Example:
    >>> RANGES["train.batch_size"].describe()
    'a whole number >= 1'
    >>> check_value("train.warmup_ratio", 1.5)
    Traceback (most recent call last):
    ...
    training.config.ConfigError: train.warmup_ratio: must be a number >= 0 and < 1, got 1.5
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass

from inference.normalize import NORMALIZER_VERSIONS
from training.config import ConfigError
from training.config_yaml import shown


@dataclass(frozen=True)
class Range:
    """Bounds of one numeric key; ``None`` (where the schema allows it) is always accepted.

    Example:
        >>> Range(low=0, low_open=True).contains(0.0), Range(low=0, low_open=True).contains(1e-5)
        (False, True)
        >>> Range(low=1, also=(-1,)).describe()
        '-1 or a whole number >= 1'
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    """The bound ``low`` itself is outside the range (``> low`` instead of ``>= low``)."""
    high_open: bool = False
    """The bound ``high`` itself is outside the range (``< high`` instead of ``<= high``)."""
    whole: bool = True
    """Integer keys; a float key (``whole=False``) must also be finite."""
    also: tuple[float, ...] = ()
    """Sentinel values accepted outside the bounds (``max_steps: -1`` means "use epochs")."""

    def contains(self, value: float) -> bool:
        """Whether ``value`` is in range."""
        if value in self.also:
            return True
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def describe(self) -> str:
        """The range in words, for the error message."""
        kind = "a whole number" if self.whole else "a number"
        bounds = []
        if self.low is not None:
            bounds.append(f"{'>' if self.low_open else '>='} {_plain(self.low)}")
        if self.high is not None:
            bounds.append(f"{'<' if self.high_open else '<='} {_plain(self.high)}")
        text = f"{kind} {' and '.join(bounds)}" if bounds else f"a finite {kind.removeprefix('a ')}"
        sentinels = " or ".join(_plain(value) for value in self.also)
        return f"{sentinels} or {text}" if sentinels else text


def _plain(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


POSITIVE = Range(low=0, low_open=True, whole=False)
AT_LEAST_ONE = Range(low=1)
AT_LEAST_ZERO = Range(low=0)

# Every int or float key of the schema, once. Sizes and counts start at 1: a zero or negative one
# means no work at all (or a crash deep inside the trainer), never a sensible request.
RANGES: dict[str, Range] = {
    "data.validation_fraction": Range(low=0, high=1, low_open=True, high_open=True, whole=False),
    "data.max_train_samples": AT_LEAST_ONE,
    "data.max_eval_samples": AT_LEAST_ONE,
    "data.normalization_version": Range(low=1, high=max(NORMALIZER_VERSIONS)),  # the versions inference knows
    "train.epochs": POSITIVE,
    "train.learning_rate": POSITIVE,
    "train.batch_size": AT_LEAST_ONE,
    "train.eval_batch_size": AT_LEAST_ONE,
    "train.gradient_accumulation_steps": AT_LEAST_ONE,
    "train.max_length": AT_LEAST_ONE,
    "train.max_target_length": AT_LEAST_ONE,
    "train.weight_decay": Range(low=0, whole=False),
    # The trainer reads a value of 1 or more as a number of steps, so a share stops below 1.
    "train.warmup_ratio": Range(low=0, high=1, high_open=True, whole=False),
    "train.seed": Range(low=0, high=2**32 - 1),  # numpy's seed range
    "train.max_steps": Range(low=1, also=(-1,)),
    "train.early_stopping_patience": AT_LEAST_ONE,  # 0 would stop at the first evaluation, improved or not
    "train.eval_steps": AT_LEAST_ONE,
    "train.logging_steps": AT_LEAST_ONE,
    "train.generation_eval_samples": AT_LEAST_ONE,
    "train.num_workers": AT_LEAST_ZERO,
    "train.save_total_limit": AT_LEAST_ONE,
    "generation.num_beams": AT_LEAST_ONE,
    "generation.no_repeat_ngram_size": AT_LEAST_ZERO,  # 0 turns the rule off
    "generation.length_penalty": Range(whole=False),
    "generation.max_new_tokens": AT_LEAST_ONE,
    "generation.min_new_tokens": AT_LEAST_ZERO,
}


def check_value(key: str, value: float | None) -> None:
    """Raise :class:`ConfigError` naming ``key`` when ``value`` is outside its range.

    Example:
        >>> check_value("train.num_workers", 0)
        >>> check_value("train.logging_steps", 0)
        Traceback (most recent call last):
        ...
        training.config.ConfigError: train.logging_steps: must be a whole number >= 1, got 0
    """
    allowed = RANGES.get(key)  # a key missing here fails the schema test, not every user's run
    if allowed is not None and value is not None and not allowed.contains(value):
        raise ConfigError(f"{key}: must be {allowed.describe()}, got {shown(value)}")


def numeric_keys(cls: type, prefix: str = "") -> list[str]:
    """Every int or float key of a config dataclass (``None`` allowed or not), in schema order.

    Example:
        >>> from training.config import GenerationSettings
        >>> numeric_keys(GenerationSettings, "generation.")[:2]
        ['generation.num_beams', 'generation.no_repeat_ngram_size']
    """
    keys = []
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        hint = hints[field.name]
        if dataclasses.is_dataclass(hint):
            keys += numeric_keys(hint, f"{prefix}{field.name}.")
        elif {int, float} & set(typing.get_args(hint) or (hint,)):
            keys.append(prefix + field.name)
    return keys


def check_ranges(cfg: object) -> None:
    """Check every numeric key of an ``ExperimentConfig`` and the pairs that bound each other.

    Example:
        >>> from training.config import ExperimentConfig, ModelConfig, DataConfig, TrainConfig
        >>> bad = TrainConfig(gradient_accumulation_steps=-2)
        >>> ExperimentConfig(model=ModelConfig("m"), data=DataConfig("t.jsonl"), train=bad)
        Traceback (most recent call last):
        ...
        training.config.ConfigError: train.gradient_accumulation_steps: must be a whole number >= 1, got -2
    """
    for key in numeric_keys(type(cfg)):
        section, _, name = key.rpartition(".")
        check_value(key, getattr(getattr(cfg, section) if section else cfg, name))
    generation = cfg.generation
    if generation.min_new_tokens > generation.max_new_tokens:
        raise ConfigError(
            f"generation.min_new_tokens: {generation.min_new_tokens} exceeds "
            f"generation.max_new_tokens ({generation.max_new_tokens})"
        )

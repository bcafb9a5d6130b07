"""``key=value`` command-line overrides: parsed as plain YAML values and laid over a config file.

Values are read by the config file's YAML reader (:mod:`training.config_yaml`), so the same rules hold:
a YAML tag (``!!python/...``) is refused, never constructed, and an alias bomb is refused before it expands.

Example:
    >>> merge({"output_dir": "a"}, parse_overrides(["output_dir=b"]))
    {'output_dir': 'b'}
"""

from __future__ import annotations

from typing import Any

import yaml

from training.config import ConfigError
from training.config_yaml import read_yaml, shorten, shown


def parse_overrides(overrides: list[str]) -> dict:
    """Turn ``["train.learning_rate=3e-5", "data.train_file=x.jsonl"]`` into a nested dict.

    Values are read as YAML (``true``, ``null``, numbers); the schema then checks their type.

    Example:
        >>> parse_overrides(["train.epochs=2", "output_dir=out"])
        {'train': {'epochs': 2}, 'output_dir': 'out'}
        >>> parse_overrides(["train.max_length=64", "train={epochs: 1}"])
        {'train': {'max_length': 64, 'epochs': 1}}
    """
    nested: dict = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            # Unquoted: the file prefix load_config adds would otherwise name this override a second time.
            raise ConfigError(f"override {shorten(item, 80)} is not key=value (e.g. train.epochs=3)")
        node = nested
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {shown(item)} conflicts with another override")
        value = _override_value(item, raw)
        # A section given whole (train={epochs: 1}) merges with keys set before it (train.max_length=64),
        # as it merges with the file's section; it does not drop them.
        both_sections = isinstance(value, dict) and isinstance(node.get(leaf), dict)
        node[leaf] = merge(node[leaf], value) if both_sections else value
    return nested


def _override_value(item: str, raw: str) -> Any:
    """A plain YAML value; a tag (``!!python/...``) is refused, never constructed."""
    if not raw.strip():
        return None
    try:
        return read_yaml(raw)
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"override {shown(item)}: not a plain value ({shorten(problem, 200)})") from None


def merge(base: dict, extra: dict) -> dict:
    """``extra`` laid over ``base``, section by section (nested dicts merge, other values replace).

    Example:
        >>> merge({"train": {"epochs": 3, "seed": 1}}, {"train": {"epochs": 1}})
        {'train': {'epochs': 1, 'seed': 1}}
    """
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged

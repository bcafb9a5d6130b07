"""``khabar-train``: train a model from a YAML config, or run a training-side tool.

Usage:
    khabar-train CONFIG [key=value ...]     train (the config's ``task`` picks the trainer)
    khabar-train tiny-models [--out DIR]    build the tiny offline models
    khabar-train evaluate --model DIR ...   write an evaluation report
    khabar-train card DIR                   write a trained model's README.md model card
"""

from __future__ import annotations

import logging
import sys
from importlib import import_module

from training.config import ConfigError, field_help, load_config
from training.data import DataError
from training.distributed import one_of_several_warning, quiet_replicas

# subcommand -> module with a main(argv) -> int
TOOLS = {"tiny-models": "training.tiny", "evaluate": "training.evaluation.cli", "card": "training.model_card"}
TRAINERS = {"classification": "training.classifier", "summarization": "training.summarizer"}


def usage() -> str:
    keys = "\n".join(f"  {key:<36} {doc}" for key, doc in field_help())
    return f"{__doc__}\nConfig keys (override any with key=value):\n{keys}\n"


def train_from_config(path: str, overrides: list[str]) -> int:
    """Load the config, pick the trainer for its task, and train."""
    cfg = load_config(path, overrides)
    quiet_replicas()
    if warning := one_of_several_warning():
        logging.getLogger(__name__).warning(warning)
    trainer = import_module(TRAINERS[cfg.task])
    trainer.train(cfg)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``khabar-train``; returns the process exit code (2 for user errors)."""
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    try:
        if argv[0] in TOOLS:
            return import_module(TOOLS[argv[0]]).main(argv[1:])
        return train_from_config(argv[0], argv[1:])
    except (ConfigError, DataError) as error:
        print(f"khabar-train: error: {error}", file=sys.stderr)
        return 2

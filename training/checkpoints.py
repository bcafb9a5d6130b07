"""Checkpoint handling shared by both trainers: resume an interrupted run, never mix two runs."""

from __future__ import annotations

import logging
from pathlib import Path

from transformers.trainer_utils import get_last_checkpoint

from training.config import ConfigError, ExperimentConfig

log = logging.getLogger(__name__)


def checkpoint_to_resume(cfg: ExperimentConfig) -> str | None:
    """The last checkpoint in ``output_dir`` when ``train.resume`` is set; refuse to start over on one.

    A finished run removes its checkpoints, so one left behind means an interrupted run; starting
    afresh would mix the two runs' checkpoints, so the user must choose.

    Example:
        >>> from training.config import load_config
        >>> checkpoint_to_resume(load_config("configs/classifier/tiny.yaml", ["output_dir=/nonexistent"])) is None
        True
    """
    out = Path(cfg.output_dir)
    last = get_last_checkpoint(str(out)) if out.is_dir() else None
    if cfg.train.resume:
        if last is None:
            log.warning("train.resume: no checkpoint in %s yet; starting from the beginning", out)
        else:
            log.info("resuming from %s", last)
        return last
    if last is not None:
        raise ConfigError(
            f"output_dir: {out} holds {Path(last).name} of an interrupted run; continue it with train.resume=true, "
            "or delete its checkpoint-* folders to start over"
        )
    return None

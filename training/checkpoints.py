"""Checkpoint handling shared by both trainers: resume an interrupted run, never mix two runs."""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

from transformers.trainer_utils import get_last_checkpoint

from training.config import ConfigError, ExperimentConfig

log = logging.getLogger(__name__)
CHECKPOINT_RE = re.compile(r"^checkpoint-\d+$")


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


def remove_checkpoints(out: Path) -> None:
    """Delete the ``checkpoint-N`` folders of a finished run: they existed to resume it, and the best
    model is now the directory itself (one left behind would read as an interrupted run).

    Example:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp())
        >>> (out / "checkpoint-40").mkdir(); (out / "checkpoints-notes").mkdir()
        >>> remove_checkpoints(out); sorted(p.name for p in out.iterdir())
        ['checkpoints-notes']
    """
    for checkpoint in out.iterdir():
        if checkpoint.is_dir() and CHECKPOINT_RE.match(checkpoint.name):
            shutil.rmtree(checkpoint)

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
        complete = last_complete_checkpoint(out)
        if complete is None:
            log.warning("train.resume: no complete checkpoint in %s yet; starting from the beginning", out)
        else:
            log.info("resuming from %s", complete)
        return complete
    if last is not None:
        raise ConfigError(
            f"output_dir: {out} holds {Path(last).name} of an interrupted run; continue it with train.resume=true, "
            "or delete its checkpoint-* folders to start over"
        )
    return None


def last_complete_checkpoint(out: Path) -> str | None:
    """The newest ``checkpoint-N`` whose trainer state was written, skipping one torn by a kill mid-save.

    The main process writes ``trainer_state.json`` after the weights, optimizer and random states,
    so a checkpoint without it was interrupted while being written and cannot be resumed.

    Example:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp())
        >>> for step in (10, 20): (out / f"checkpoint-{step}").mkdir()
        >>> _ = (out / "checkpoint-10" / "trainer_state.json").write_text("{}")
        >>> pathlib.Path(last_complete_checkpoint(out)).name  # checkpoint-20 lacks its trainer state
        'checkpoint-10'
    """
    if not out.is_dir():
        return None
    steps = sorted(
        (int(path.name.removeprefix("checkpoint-")), path)
        for path in out.iterdir()
        if path.is_dir() and CHECKPOINT_RE.match(path.name) and (path / "trainer_state.json").is_file()
    )
    if not steps:
        return None
    newest = get_last_checkpoint(str(out))
    if Path(newest).name != steps[-1][1].name:
        log.warning("%s was not completely written; resuming from %s", newest, steps[-1][1])
    return str(steps[-1][1])


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

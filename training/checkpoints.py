"""Checkpoint handling shared by both trainers: resume an interrupted run, never mix two runs."""

from __future__ import annotations

import json
import logging
import re
import shutil
import zipfile
from pathlib import Path

from safetensors import SafetensorError, safe_open
from transformers import TrainerCallback
from transformers.trainer_utils import get_last_checkpoint

from inference.model_checks import first_line
from training.config import ConfigError, ExperimentConfig
from training.data import DataError
from training.distributed import gathered, is_main_process, world_size

log = logging.getLogger(__name__)
CHECKPOINT_RE = re.compile(r"^checkpoint-\d+$")
# Written into each checkpoint: the size and SHA-256 of the files the run learns from.
DATA_NOTE = "khabar-data.json"
PROCESSES = "processes"  # the number of processes that wrote a checkpoint, beside its data hashes


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
    if last is not None and last_complete_checkpoint(out) is None:
        _remove_torn(out)  # only torn ones: the run was stopped while saving its first; nothing to resume
        last = None
    if cfg.train.resume:
        complete = last_complete_checkpoint(out)
        if complete is None:
            finished = out.is_dir() and (out / "config.yaml").is_file()
            why = "holds a finished model, not an interrupted run" if finished else "has no complete checkpoint yet"
            log.warning("train.resume: %s %s; starting from the beginning", out, why)
        else:
            check_checkpoint(Path(complete))
            _check_same_data(Path(complete), cfg)
            log.info("resuming from %s", complete)
        return complete
    if last is not None and is_main_process():
        # Only the main process says it: it holds the run lock, so it can tell this from another run
        # still writing there (another process would call that run "interrupted"); the launcher then
        # stops the others.
        raise ConfigError(
            f"output_dir: {out} holds {Path(last).name} of an interrupted run; continue it with train.resume=true, "
            "or delete its checkpoint-* folders to start over"
        )
    return None


def checkpoint_folders(out: Path) -> list[Path]:
    """The ``checkpoint-N`` folders directly in ``out`` (none when ``out`` is not a folder), in no order.

    Example:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp())
        >>> (out / "checkpoint-40").mkdir(); (out / "checkpoints-notes").mkdir()
        >>> [p.name for p in checkpoint_folders(out)]
        ['checkpoint-40']
    """
    if not out.is_dir():
        return []
    return [path for path in out.iterdir() if path.is_dir() and CHECKPOINT_RE.match(path.name)]


def _remove_torn(out: Path) -> None:
    """Delete the ``checkpoint-N`` folders of ``out`` (all torn: none complete), on the main process."""
    if not is_main_process():
        return
    for checkpoint in checkpoint_folders(out):
        log.info("removing %s: it was interrupted while being saved, so it cannot be resumed", checkpoint)
        shutil.rmtree(checkpoint)


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
    complete = _complete_checkpoints(out)
    if not complete:
        return None
    newest = get_last_checkpoint(str(out))
    if Path(newest).name != complete[-1].name:
        log.warning("%s was not completely written; resuming from %s", newest, complete[-1])
    return str(complete[-1])


def check_checkpoint(checkpoint: Path) -> None:
    """Refuse to resume from a damaged checkpoint (truncated weights, unreadable state), naming the one to use.

    The trainer would otherwise fail deep inside its loaders with a long traceback.

    Example:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp())
        >>> for step in (10, 20): (out / f"checkpoint-{step}").mkdir()
        >>> _ = (out / "checkpoint-10" / "trainer_state.json").write_text("{}")
        >>> _ = (out / "checkpoint-20" / "trainer_state.json").write_text("{")
        >>> try:
        ...     check_checkpoint(out / "checkpoint-20")
        ... except ConfigError as error:
        ...     print(str(error).split("; ")[-1])
        delete it to resume from checkpoint-10
    """
    problem = checkpoint_problem(checkpoint)
    if problem is None:
        if not (checkpoint / "optimizer.pt").is_file():  # the trainer would quietly start a fresh optimizer
            log.warning("%s has no optimizer.pt: the run resumes with a fresh optimizer and schedule state", checkpoint)
        return
    earlier = [
        path.name
        for path in _complete_checkpoints(checkpoint.parent)
        if _step(path) < _step(checkpoint) and checkpoint_problem(path) is None
    ]
    then = f"resume from {earlier[-1]}" if earlier else "start over (or delete all checkpoint-* folders)"
    raise ConfigError(f"train.resume: {checkpoint} is damaged ({problem}); delete it to {then}")


def checkpoint_problem(checkpoint: Path) -> str | None:
    """What is unreadable in ``checkpoint`` (its first damaged file and why), or ``None``.

    Only headers and archive directories are read, so the check costs little even for a large model.

    Example:
        >>> import tempfile, pathlib
        >>> checkpoint = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (checkpoint / "trainer_state.json").write_text("{}")
        >>> _ = (checkpoint / "optimizer.pt").write_bytes(b"PK\x03\x04 cut short")
        >>> checkpoint_problem(checkpoint)
        'optimizer.pt: cut short or not a torch file'
    """
    for name in ("trainer_state.json", "config.json"):
        path = checkpoint / name
        if path.is_file():
            try:
                json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
                return f"{name}: {first_line(error)}"
    for path in sorted(checkpoint.glob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt") as weights:
                weights.keys()
        except (OSError, SafetensorError) as error:
            return f"{path.name}: {first_line(error)}"
    for path in sorted([*checkpoint.glob("*.pt"), *checkpoint.glob("*.pth"), *checkpoint.glob("*.bin")]):
        # torch.save writes a zip archive; a file cut short lacks the directory at its end.
        if not zipfile.is_zipfile(path):
            return f"{path.name}: cut short or not a torch file"
    return None


def _step(checkpoint: Path) -> int:
    return int(checkpoint.name.removeprefix("checkpoint-"))


def _complete_checkpoints(out: Path) -> list[Path]:
    """The ``checkpoint-N`` folders written to the end, oldest first.

    The trainer writes ``trainer_state.json`` last and khabar its data note after it: a kill while
    the state is written leaves it empty or cut short, a kill just after leaves no note. A folder
    without a note counts only while none has one (checkpoints of earlier versions have none).
    """
    found = checkpoint_folders(out)
    noted = any((path / DATA_NOTE).is_file() for path in found)
    complete = [path for path in found if _readable_state(path) and (not noted or (path / DATA_NOTE).is_file())]
    return sorted(complete, key=_step)


def _readable_state(checkpoint: Path) -> bool:
    try:
        return isinstance(json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8")), dict)
    except (OSError, ValueError):
        return False


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
    for checkpoint in checkpoint_folders(out):
        shutil.rmtree(checkpoint)


def training_data(cfg: ExperimentConfig) -> dict[str, dict | None]:
    """The size and SHA-256 of the files a run learns from, by config key; None for a hub id or no file.

    Example:
        >>> from training.config import load_config
        >>> sorted(training_data(load_config("configs/classifier/tiny.yaml"))["data.train_file"])
        ['sha256', 'size']
    """
    from inference.batch.fingerprint import fingerprint

    files = {"data.train_file": cfg.data.train_file, "data.validation_file": cfg.data.validation_file}
    noted = {}
    for key, path in files.items():
        found = fingerprint(path) if path else None
        noted[key] = {"size": found["size"], "sha256": found["sha256"]} if found else None
    return noted


class DataNote(TrainerCallback):
    """Notes :func:`training_data` in each checkpoint, so ``train.resume`` can tell it is given the same data.

    Resumed with other data, a run would finish on rows it never started with (or, with fewer rows,
    train not at all, its step budget already spent) and save a model whose config names data it
    never saw.

    Example:
        >>> from training.config import load_config
        >>> DataNote(load_config("configs/classifier/tiny.yaml")).data["data.validation_file"] is not None
        True
    """

    def __init__(self, cfg: ExperimentConfig) -> None:
        self.data = training_data(cfg)  # hashed once, at the start
        self.processes = world_size()

    def on_train_begin(self, args, state, control, **kwargs) -> None:
        """Under several processes, refuse to start when one reads other data than the first.

        Each machine reads its own copy of the data; a stale copy on one of them trained without a
        word (the same row count) or ended in gloo's "collective mismatch" abort (another count).
        """
        first, *others = gathered(self.data)  # every process compares the same list: one message
        for rank, data in enumerate(others, start=1):
            for key, value in data.items():
                if value != first.get(key):
                    raise DataError(
                        f"{key}: process {rank} reads other content than process 0 (size {_size(value)} against "
                        f"{_size(first.get(key))} bytes); every process must read the same file: copy it again"
                    )

    def on_save(self, args, state, control, **kwargs) -> None:
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and folder.is_dir():
            note = {**self.data, PROCESSES: self.processes}
            (folder / DATA_NOTE).write_text(json.dumps(note, indent=1), encoding="utf-8")


def _size(value: dict | None) -> object:
    return value.get("size") if isinstance(value, dict) else None


def _check_same_data(checkpoint: Path, cfg: ExperimentConfig) -> None:
    """Refuse to resume ``checkpoint`` on data other than it noted (a checkpoint without a note is not checked)."""
    try:
        noted = json.loads((checkpoint / DATA_NOTE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    noted = dict(noted) if isinstance(noted, dict) else {}
    processes = noted.pop(PROCESSES, None)
    if isinstance(processes, int) and processes != world_size():
        log.warning(
            "train.resume: %s was written by a run of %d process(es), this one has %d: the global batch and an "
            "epoch's steps change, so the run will not match an uninterrupted one (keep the number of processes)",
            checkpoint.name,
            processes,
            world_size(),
        )
    now = training_data(cfg)
    for key, before in noted.items():
        if before and now.get(key) and before != now[key]:
            raise ConfigError(
                f"train.resume: {key} is not the file {checkpoint.name} was trained with (its content differs); "
                "resuming would finish the run on other data: give the same file, or delete the checkpoint-* "
                "folders to start over"
            )

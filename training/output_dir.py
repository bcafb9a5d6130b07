"""Where a run writes: refuse an ``output_dir`` that cannot be written, would overwrite something
that is not a khabar run's, or is in use by another run, before any data is read or step trained.

Training writes nothing until its first checkpoint, minutes or hours in; each problem here would
otherwise surface only then, as a traceback, after the work was done. :func:`claim_output_dir`
holds an exclusive ``flock`` on ``output_dir/.khabar-train.lock`` for the whole run: the kernel
releases it when the process ends, even by ``kill -9``, so a lock file left behind never blocks.

Example:
    >>> import tempfile
    >>> from training.tiny import tiny_config
    >>> cfg = tiny_config("classifier")
    >>> with claim_output_dir(cfg) as out:
    ...     (out / LOCK_NAME).is_file()
    True
    >>> Path(cfg.output_dir).exists()  # created for the run, removed again as nothing was written
    False
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from training.checkpoints import checkpoint_folders
from training.config import ConfigError, ExperimentConfig
from training.distributed import is_main_process

LOCK_NAME = ".khabar-train.lock"
# A finished run leaves both beside its model; an interrupted one leaves checkpoint-N folders.
RUN_MARKERS = ("config.yaml", "training_log.jsonl")


def check_writable_folder(path: Path, key: str) -> None:
    """Refuse a folder that cannot be created or written (a file, under a file, read-only), naming ``key``.

    Nothing is left behind: a probe file is created and removed in ``path`` or its nearest existing parent.

    Example:
        >>> import tempfile
        >>> check_writable_folder(Path(tempfile.mkdtemp()) / "new" / "folder", "output_dir")
        >>> check_writable_folder(Path(__file__), "output_dir")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        training.config.ConfigError: output_dir: .../output_dir.py is a file, not a folder
    """
    path = path.expanduser()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{key}: {path} is a file, not a folder")
    existing = next(parent for parent in (path, *path.parents) if parent.exists())
    if not existing.is_dir():
        raise ConfigError(f"{key}: cannot create {path}: {existing} is a file, not a folder")
    try:  # os.access trusts permission bits only; a probe also meets read-only mounts and root-squashed shares
        descriptor, probe = tempfile.mkstemp(prefix=".khabar-write-check-", dir=existing)
        os.close(descriptor)
        os.unlink(probe)
    except OSError as error:
        where = "" if existing == path else f" ({existing} is not writable)"
        raise ConfigError(f"{key}: cannot write to {path}{where}: {error.strerror}") from None


def is_previous_run(folder: Path) -> bool:
    """Whether ``folder`` holds the output of an earlier khabar run (finished or interrupted).

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> (folder / "checkpoint-8").mkdir()
        >>> is_previous_run(folder)
        True
    """
    if all((folder / name).is_file() for name in RUN_MARKERS):
        return True
    return bool(checkpoint_folders(folder))


def check_output_dir(cfg: ExperimentConfig) -> None:
    """Refuse an ``output_dir`` training would fail to write, or whose files it would overwrite.

    It may not be the starting model or tokenizer; a non-empty folder must hold an earlier
    khabar run's output (see :func:`is_previous_run`) unless ``overwrite`` is set.

    Example:
        >>> from training.config import load_config
        >>> cfg = load_config("configs/classifier/tiny.yaml", ["output_dir=models/tiny/classifier"])
        >>> check_output_dir(cfg)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        training.config.ConfigError: output_dir: models/tiny/classifier is the starting model (model.name_or_path); ...
    """
    out = Path(cfg.output_dir).expanduser()
    for key, source in (("model.name_or_path", cfg.model.name_or_path), ("model.tokenizer", cfg.model.tokenizer)):
        if source and Path(source).expanduser().resolve() == out.resolve():
            raise ConfigError(
                f"output_dir: {out} is the starting model ({key}); training would overwrite it: write to another folder"
            )
    if is_main_process():  # the one process that writes; the others' probe files would be writes of their own
        check_writable_folder(out, "output_dir")
    if not out.is_dir() or cfg.overwrite:
        return
    others = sorted(child.name for child in out.iterdir() if child.name != LOCK_NAME)
    if others and not is_previous_run(out):
        shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        raise ConfigError(
            f"output_dir: {out} holds files that are not from a khabar training run ({shown}), which training "
            "would overwrite; use an empty or new folder, or set overwrite=true"
        )
    earlier = _earlier_task(out)
    if earlier and earlier != cfg.task:
        raise ConfigError(
            f"output_dir: {out} holds a {earlier} run, which this {cfg.task} run would replace; "
            "use another folder, or set overwrite=true"
        )


def _earlier_task(folder: Path) -> str | None:
    """The task of the finished run whose ``config.yaml`` is in ``folder``; None when there is none or unreadable."""
    task = saved_run_config(folder).get("task")
    return task if isinstance(task, str) else None


def saved_run_config(folder: Path) -> dict:
    """The ``config.yaml`` a finished run left in ``folder`` (a model directory); empty when none or unreadable.

    Example:
        >>> saved_run_config(Path("/nonexistent"))
        {}
    """
    import yaml

    try:
        saved = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        return {}
    return saved if isinstance(saved, dict) else {}


@contextlib.contextmanager
def claim_output_dir(cfg: ExperimentConfig) -> Iterator[Path]:
    """Check ``output_dir``, create it and hold its lock for the block; a second run into it is refused.

    On exit the lock is released and, when the block wrote nothing into a folder it created, the
    folder is removed again, so a refused run leaves no trace. Under ``torchrun`` only the main
    process locks (the others share its run).

    Example:
        >>> from training.tiny import tiny_config
        >>> cfg = tiny_config("classifier")
        >>> with claim_output_dir(cfg):
        ...     with claim_output_dir(cfg):  # doctest: +ELLIPSIS
        ...         pass
        Traceback (most recent call last):
        ...
        training.config.ConfigError: output_dir: ... is in use by another khabar-train run (process ...); ...
    """
    check_output_dir(cfg)
    out = Path(cfg.output_dir).expanduser()
    if not is_main_process():
        yield out
        return
    existing = next(parent for parent in (out, *out.parents) if parent.exists())
    out.mkdir(parents=True, exist_ok=True)
    try:
        with _locked(out / LOCK_NAME, out):
            yield out
    finally:
        _remove_empty(out, existing)


@contextlib.contextmanager
def _locked(path: Path, out: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (writing this process's id in it), removing it on release."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; run unguarded rather than not at all
        yield
        return
    descriptor = _acquire(path, out, fcntl)
    try:
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, str(os.getpid()).encode(), 0)
        yield
    finally:
        path.unlink(missing_ok=True)  # while still locked, so no other run can hold this very file
        os.close(descriptor)


def _acquire(path: Path, out: Path, fcntl) -> int:
    """An open descriptor of ``path`` holding its exclusive lock; a ``ConfigError`` if another run holds it."""
    for _ in range(3):
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(descriptor, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(descriptor)
            raise ConfigError(
                f"output_dir: {out} is in use by another khabar-train run (process {owner}); "
                "wait for it to finish, or write to another output_dir"
            ) from None
        # A run that just finished unlinks the file it locked: a lock on that old file guards nothing, so retry.
        if path.exists() and os.stat(path).st_ino == os.fstat(descriptor).st_ino:
            return descriptor
        os.close(descriptor)
    raise ConfigError(f"output_dir: {out}: could not take the run lock {path.name}; try again")


def _remove_empty(folder: Path, stop: Path) -> None:
    """Remove ``folder`` and its parents up to (not including) ``stop`` while they are empty."""
    for path in (folder, *folder.parents):
        if path == stop or not path.is_relative_to(stop):
            return
        try:
            path.rmdir()
        except OSError:  # not empty: the run wrote something, which stays
            return

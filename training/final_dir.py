"""Write a finished model beside ``output_dir``'s files, then move it in at once.

A run may retrain into the folder of an earlier finished run. Written in place, a save that
failed halfway (a full disk, a kill) left the new weights beside the old tokenizer, config and
card, or half a weights file: the earlier model was lost and ``khabar classify`` served a mix.
So the model and its run files are written into ``output_dir/.khabar-final`` first; only when
all of them are written are they moved into ``output_dir`` by renames on the same file system
(no new space needed, signals held off for those few milliseconds). A failed save removes the
staging folder and leaves the earlier model as it was.

Example:
    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp())
    >>> _ = (out / "model.safetensors").write_text("old")
    >>> with staged_model_dir(out) as stage:
    ...     _ = (stage / "model.safetensors").write_text("new")
    >>> (out / "model.safetensors").read_text(), (out / STAGE_NAME).exists()
    ('new', False)
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

from inference.batch.atomic import current_umask
from training.distributed import is_main_process
from training.model_card import CARD_NAME

STAGE_NAME = ".khabar-final"
# Weight files from_pretrained would pick up: an earlier run's shards must not stay beside a new
# single file (or the reverse). save_pretrained drops them when it writes in place; so do we.
WEIGHT_FILE = re.compile(r"^(model|pytorch_model)(-\d{5}-of-\d{5})?\.(safetensors|bin)(\.index\.json)?$")
_HELD_SIGNALS = {signal.SIGINT, signal.SIGTERM}


@contextlib.contextmanager
def staged_model_dir(out: Path) -> Iterator[Path]:
    """Yield the folder a finished model is written to; when the block ends, move it into ``out``.

    On the main process: a staging folder left by an earlier killed run is emptied first; if the
    block raises, the staging folder is removed and ``out`` is untouched; if it completes, the
    staged files replace those of the same names in ``out`` (see :func:`publish`). The card and
    the checkpoints are the caller's to write and drop after. Other processes (``torchrun``) only
    get the path: one process writes.

    Example:
        >>> import tempfile
        >>> out = Path(tempfile.mkdtemp())
        >>> _ = (out / "config.json").write_text("old")
        >>> with staged_model_dir(out) as stage:  # doctest: +ELLIPSIS
        ...     _ = (stage / "config.json").write_text("half")
        ...     raise OSError(28, "No space left on device")
        Traceback (most recent call last):
        ...
        OSError: [Errno 28] No space left on device
        >>> (out / "config.json").read_text(), sorted(p.name for p in out.iterdir())
        ('old', ['config.json'])
    """
    stage = Path(out) / STAGE_NAME
    if not is_main_process():
        yield stage
        return
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)  # frees what the failed save took; the old model stays
        raise
    publish(stage, Path(out))


def publish(stage: Path, out: Path) -> None:
    """Move every file of ``stage`` into ``out`` (replacing files of the same name); drop the earlier
    run's weights the new one did not write, and its card, which describes the earlier model.

    Example:
        >>> import tempfile
        >>> out = Path(tempfile.mkdtemp()); stage = out / STAGE_NAME; stage.mkdir()
        >>> _ = (out / "model-00001-of-00002.safetensors").write_text("old shard")
        >>> _ = (stage / "model.safetensors").write_text("new")
        >>> publish(stage, out); sorted(p.name for p in out.iterdir())
        ['model.safetensors']
    """
    new = {path.name for path in stage.iterdir()}
    readable_as_umask_allows(stage)
    with _signals_held():
        for name in sorted(new):
            target = out / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)  # os.replace cannot put a folder over a non-empty one
            os.replace(stage / name, target)
        for old in out.iterdir():
            if old.name not in new and old.is_file() and (WEIGHT_FILE.match(old.name) or old.name == CARD_NAME):
                old.unlink()
        stage.rmdir()


def readable_as_umask_allows(folder: Path) -> None:
    """Give the files of ``folder`` the permissions a new file gets (``0o666`` less the umask).

    safetensors writes its files owner-only (0600) where every other file of a model directory is
    0644 under the usual umask: a model trained by one account and served by another then fails
    to load its weights alone.

    Example:
        >>> import tempfile, stat
        >>> folder = Path(tempfile.mkdtemp()); weights = folder / "model.safetensors"
        >>> _ = weights.write_bytes(b""); weights.chmod(0o600); before = os.umask(0o022)
        >>> readable_as_umask_allows(folder); _ = os.umask(before)
        >>> oct(stat.S_IMODE(weights.stat().st_mode))
        '0o644'
    """
    mask = current_umask()
    for path in folder.iterdir():
        if path.is_file() and not path.is_symlink():
            path.chmod(0o666 & ~mask)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block is done: a stop between two renames would leave a mix.

    Python-level handlers that only note the signal, not ``pthread_sigmask``: torch's threads
    would still take the signal, and Python raises it in the main thread all the same. A signal
    noted is raised again once the block ends, to the handlers that were there before.
    """
    if threading.current_thread() is not threading.main_thread():  # only the main thread sets handlers
        yield
        return
    received: list[int] = []
    before = {number: signal.signal(number, lambda number, frame: received.append(number)) for number in _HELD_SIGNALS}
    try:
        yield
    finally:
        for number, handler in before.items():
            signal.signal(number, handler)
        if received:
            signal.raise_signal(received[0])

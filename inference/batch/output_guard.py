"""Guard ``khabar predict``'s output: one run at a time, and ``--resume`` only onto the same input.

:func:`guarded_output` locks the output (see :mod:`inference.batch.locking`) for the whole run and,
on ``--resume``, refuses an input that changed since the output was started (see
:mod:`inference.batch.fingerprint`), an id column other than the one it was started with (the
rows done would not be recognized and would run again), or another model or decoding setting
(see :mod:`inference.batch.provenance`). stdout and devices such as
``/dev/null`` need neither.

Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "in.jsonl").write_text('{"id": "a"}\\n')
    >>> with guarded_output(str(folder / "out.jsonl"), str(folder / "in.jsonl"), resume=False, id_column="id") as guard:
    ...     guard.record_input()
    ...     _ = (folder / "out.jsonl").write_text('{"id": "a", "line": 1}\\n')
    >>> sorted(p.name for p in folder.iterdir())
    ['in.jsonl', 'out.jsonl', 'out.jsonl.khabar-run']
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from inference.batch.fingerprint import difference, fingerprint
from inference.batch.formats import STDIO, UsageError
from inference.batch.locking import OutputLock, OutputLocked, unwritable_run_file
from inference.batch.provenance import model_difference


class OutputGuard:
    """The lock on one output and the fingerprint of the input it is written from.

    Example:
        >>> OutputGuard(None, None).record_input()  # stdout: nothing to record
    """

    def __init__(
        self,
        lock: OutputLock | None,
        input_fingerprint: dict[str, Any] | None,
        id_column: str = "id",
        models: dict[str, dict] | None = None,
    ) -> None:
        self._lock = lock
        self._input = input_fingerprint
        self._id_column = id_column
        self._models = models or {}
        # Set when a resumed output has no run file to say what wrote it: nothing could be checked.
        self.unchecked = False

    def record_input(self) -> None:
        """Note, beside the output, which input, id column and models it is written from (once the output is open)."""
        if self._lock is not None:
            try:
                self._lock.save({"input": self._input, "id_column": self._id_column, "models": self._models})
            except OSError as exc:
                raise UsageError(f"-o {self._lock.output}: {unwritable_run_file(self._lock.path, exc)}") from None


@contextmanager
def guarded_output(
    output: str,
    input_path: str,
    resume: bool,
    id_column: str = "id",
    models: Callable[[], dict[str, dict]] | None = None,
) -> Iterator[OutputGuard]:
    """Hold ``output``'s lock for the ``with`` block; with ``resume``, first check that the input, the
    id column and the ``models`` (a function giving kind -> :func:`~inference.batch.provenance.model_record`,
    called once the lock is held, so a busy output is refused before any model file is read) are the
    ones the output was started with.

    Example:
        >>> with guarded_output("-", "in.jsonl", resume=False) as guard:
        ...     guard.record_input()
    """
    if not _lockable(output):
        yield OutputGuard(None, None)
        return
    try:
        lock = OutputLock(output).__enter__()
    except OutputLocked as exc:
        raise UsageError(str(exc)) from None
    try:
        now = fingerprint(input_path)
        noted = models() if models else {}
        guard = OutputGuard(lock, now, id_column, noted)
        if resume and _has_records(output):  # an output that is gone or empty holds nothing to mix up
            previous = lock.previous or {}
            # A run file copied away from its output, deleted, or written by stdout redirection.
            guard.unchecked = not {"input", "models"} & previous.keys()
            _check_same_input(output, input_path, previous.get("input"), now)
            _check_same_id_column(output, previous.get("id_column"), id_column)
            _check_same_models(output, previous.get("models"), noted)
        yield guard
    finally:
        lock.__exit__(None, None, None)


def _lockable(output: str) -> bool:
    """A file path (new or regular), not stdout or a device such as /dev/null."""
    if output == STDIO:
        return False
    try:
        return stat.S_ISREG(os.stat(output).st_mode)
    except FileNotFoundError:
        return True
    except OSError:
        return False


def _has_records(output: str) -> bool:
    try:
        return os.stat(output).st_size > 0
    except OSError:
        return False


def _check_same_input(output: str, input_path: str, before: dict | None, now: dict | None) -> None:
    change = difference(before, now)
    if change:
        raise UsageError(
            f"--resume: INPUT {input_path} is not the input {output} was started from ({change}); "
            "resuming would skip the wrong rows, so rerun with --overwrite to start again"
        )


def _check_same_id_column(output: str, before: str | None, now: str) -> None:
    if before is not None and before != now:
        raise UsageError(
            f"--resume: {output} was started with --id-column {before}, not {now}; resume with "
            f"--id-column {before} (other ids would run every row again) or rerun with --overwrite"
        )


def _check_same_models(output: str, before: Any, now: dict[str, dict]) -> None:
    before = before if isinstance(before, dict) else {}
    for kind, record in now.items():
        change = model_difference(kind, before.get(kind), record)
        if change:
            raise UsageError(
                f"--resume: {output}: {change}; resuming would mix answers of two models or settings in one "
                "file, so resume with the same model and settings or rerun with --overwrite"
            )

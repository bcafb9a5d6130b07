"""The batch loop behind ``khabar predict``: rows in, prediction or error records out.

Rows are read lazily, grouped into batches, checked, sent through the models and written
(one flushed write per batch), so memory stays flat whatever the input size. A bad row
becomes an error record and the run goes on; a row the models reject is found by retrying
its batch row by row, so it never takes the rest of its batch down with it.

Each record carries the input ``line`` it came from, so shard outputs (see
:mod:`inference.batch.shards`) can be merged back into input order, and ``--resume`` skips rows
whose id is already in the output.

Example:
    >>> from inference.batch.reading import Row
    >>> rows = [Row(0, 1, {"id": "a", "article": "متن خبر"}), Row(1, 2, {"id": "b", "article": ""})]
    >>> job = Job(InputColumns(), classify=lambda texts: [{"label": "sports", "score": 0.9} for _ in texts])
    >>> [sorted(r) for r in predict_batch(rows, job)]
    [['id', 'line', 'topic', 'topic_score'], ['error', 'id', 'line']]
"""

from __future__ import annotations

import re
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from inference.batch.checks import InputColumns, ReadyRow, check_row, row_id
from inference.batch.formats import OUTPUT_FIELDS
from inference.batch.memory import release_freed_memory
from inference.batch.reading import Row
from inference.batch.resume import done_key
from inference.batch.safe_records import writable
from inference.batch.shards import Shard

_INDEX_PREFIX = re.compile(r"^text at index \d+: ")

ClassifyFn = Callable[[list[str]], list[dict]]
SummarizeFn = Callable[[list[str]], list[str]]


@dataclass
class Job:
    """The models to run (None skips that task) and how to treat bad rows.

    With ``strict`` (``--strict``) :func:`run` stops at the first bad row, after writing the rows
    before it, and says why in :attr:`RunStats.fatal`; nothing is raised.

    Example:
        >>> Job(InputColumns(), summarize=lambda texts: ["خلاصه"] * len(texts)).tasks()
        ['summary']
    """

    columns: InputColumns
    classify: ClassifyFn | None = None
    summarize: SummarizeFn | None = None
    strict: bool = False

    def tasks(self) -> list[str]:
        """The tasks this job runs, in output order."""
        return [name for name, fn in (("topic", self.classify), ("summary", self.summarize)) if fn]

    def output_fields(self) -> list[str]:
        """The output columns: id, line, the tasks' fields, error, then the kept columns."""
        task_fields = {"topic": ("topic", "topic_score"), "summary": ("summary",)}
        wanted = {"id", "line", "error", *(f for task in self.tasks() for f in task_fields[task])}
        return [f for f in OUTPUT_FIELDS if f in wanted] + self.columns.kept_names()


def predict_batch(rows: list[Row], job: Job) -> list[dict]:
    """Check ``rows``, run the job's models on the good ones and return one record per row, in order.

    Example:
        >>> job = Job(InputColumns(), summarize=lambda texts: [t[:3] for t in texts])
        >>> predict_batch([Row(0, 1, {"text": "خبر امروز"})], job)
        [{'id': 1, 'line': 1, 'summary': 'خبر'}]
    """
    checked = [check_row(row, job.columns) for row in rows]
    ready = [item for item in checked if isinstance(item, ReadyRow)]
    if job.classify and ready:
        _run_task("topic", job.classify, ready, [item.classifier_text for item in ready])
    still_ready = [item for item in ready if "error" not in item.record]
    if job.summarize and still_ready:
        _run_task("summary", job.summarize, still_ready, [item.text for item in still_ready])
    return [_finish(item, job.columns.kept_names()) for item in checked]


def _run_task(task: str, model: Callable[[list[str]], list], items: list[ReadyRow], texts: list[str]) -> None:
    """Put ``model``'s result for each item in its record, or the reason it failed under ``error``."""
    for item, result in zip(items, _isolate(model, texts), strict=True):
        if isinstance(result, Exception):
            item.record["error"] = _reason(task, result)
        elif task == "topic":
            item.record.update(topic=result["label"], topic_score=result["score"])
        else:
            item.record["summary"] = result


def _finish(item: ReadyRow | dict, kept: list[str]) -> dict:
    record = item if isinstance(item, dict) else item.record
    if "error" in record:
        # A row that failed one task reports only the error, so a resumed run never mixes halves.
        record = {k: v for k, v in record.items() if k not in ("topic", "topic_score", "summary")}
    results = {k: v for k, v in record.items() if k not in kept}
    # Last guard before the file: a NaN score or an unwritable value becomes an error record.
    return writable({**results, **{name: record[name] for name in kept}})


def _isolate(model: Callable[[list[str]], list], texts: list[str]) -> list:
    """Run ``model`` on the batch; if it rejects the batch, retry row by row so only bad rows fail."""
    try:
        results = model(texts)
    except (ValueError, TypeError) as exc:
        if len(texts) == 1:
            return [exc]
        return [_isolate(model, [text])[0] for text in texts]
    if len(results) != len(texts):
        raise RuntimeError(f"model returned {len(results)} results for {len(texts)} texts")
    return results


def _reason(task: str, exc: Exception) -> str:
    return f"{task}: {_INDEX_PREFIX.sub('', str(exc))}"


@dataclass
class RunStats:
    """What a run did; ``summary()`` is the line printed at the end.

    Example:
        >>> RunStats(read=10, written=8, failed=2, seconds=4.0).summary()
        '10 rows read, 8 written, 2 failed in 4.0s (2.5 rows/s)'
        >>> RunStats(read=4, written=2, seconds=1.0, fatal="line 3: text field 'article' is empty").summary()
        '4 rows read, 2 written, stopped at a failed row in 1.0s (2.0 rows/s)'
    """

    read: int = 0
    written: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    fatal: str | None = None

    def count(self, records: list[dict]) -> None:
        """Add a written batch to the totals."""
        failed = sum("error" in record for record in records)
        self.failed += failed
        self.written += len(records) - failed

    def summary(self) -> str:
        """One line: rows read, written, failed, skipped on resume, time and speed."""
        done = self.written + self.failed
        skipped = f", {self.skipped} already done" if self.skipped else ""
        speed = f" ({done / self.seconds:.1f} rows/s)" if self.seconds > 0 else ""
        # Under --strict the failed row is not written: "0 failed" would read as a clean run.
        failed = "stopped at a failed row" if self.fatal else f"{self.failed} failed"
        counts = f"{self.read} rows read, {self.written} written, {failed}{skipped}"
        return f"{counts} in {self.seconds:.1f}s{speed}"


class StopFlag:
    """Set by the first Ctrl-C (or SIGTERM) while a batch is busy: the run stops once it is written.

    Example:
        >>> StopFlag().requested
        False
    """

    requested = False
    reading = False  # waiting for input rows: nothing is pending, so a signal may stop the run at once


@contextmanager
def stop_after_batch(notice: Callable[[str], None]) -> Iterator[StopFlag]:
    """Make SIGINT/SIGTERM stop the run cleanly: at once between batches, after the batch while one is busy.

    Between batches nothing is pending, so stopping at once loses nothing (and does not wait
    for a slow stdin); a busy batch is finished and written first, unless a second signal comes.

    Example:
        >>> with stop_after_batch(print) as stop:
        ...     stop.requested
        False
    """
    flag = StopFlag()

    def handle(signum: int, frame: object) -> None:
        if flag.requested or flag.reading:
            raise KeyboardInterrupt
        flag.requested = True
        notice("stopping after this batch; press Ctrl-C again to stop now")

    wanted = (signal.SIGINT, signal.SIGTERM)
    try:
        previous = {sig: signal.signal(sig, handle) for sig in wanted}
    except ValueError:  # not the main thread: signals stay as they are
        previous = {}
    try:
        yield flag
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _Progress:
    def update(self, n: int) -> None: ...


def run(
    rows: Iterable[Row],
    job: Job,
    write: Callable[[list[dict]], None],
    batch_size: int = 16,
    shard: Shard | None = None,
    done: Counter | None = None,
    progress: Any = None,
    stop: StopFlag | None = None,
) -> RunStats:
    """Predict every row of this ``shard`` not already ``done``, writing one batch of records at a time.

    ``done`` counts (id, line) keys already in the output (``--resume``, see
    :func:`~inference.batch.resume.done_key`); it is consumed as rows are skipped.
    Under ``job.strict`` the run stops at the first bad row, after writing the rows before it.

    Example:
        >>> out = []
        >>> rows = [Row(i, i + 1, {"article": "خبر"}) for i in range(3)]
        >>> job = Job(InputColumns(), classify=lambda texts: [{"label": "sports", "score": 1.0}] * len(texts))
        >>> run(rows, job, out.extend, batch_size=2, done=Counter({("1", "1"): 1})).skipped, [r["id"] for r in out]
        (1, [2, 3])
    """
    stats, started = RunStats(), time.monotonic()
    progress = progress if progress is not None else _Progress()  # a bar of unknown length has no truth value
    stop = stop or StopFlag()
    try:
        stop.reading = True
        for batch in _batched(_todo(rows, job.columns.id, shard or Shard(), done or Counter(), stats), batch_size):
            stop.reading = False
            records = predict_batch(batch, job)
            bad = next((i for i, record in enumerate(records) if "error" in record), None)
            if job.strict and bad is not None:
                write(records[:bad])
                stats.count(records[:bad])
                stats.fatal = f"line {records[bad]['line']}: {records[bad]['error']}"
                break
            write(records)
            stats.count(records)
            progress.update(len(batch))
            # Without this glibc keeps each batch's freed buffers and peak RSS grows with the input.
            release_freed_memory()
            if stop.requested:
                break
            stop.reading = True
    except KeyboardInterrupt:
        stop.requested = True
    stop.reading = False
    stats.interrupted = stop.requested
    stats.seconds = time.monotonic() - started
    return stats


def _todo(rows: Iterable[Row], id_column: str, shard: Shard, done: Counter, stats: RunStats) -> Iterator[Row]:
    for row in rows:
        if not shard.holds(row.index):
            continue
        stats.read += 1
        key = done_key(row_id(row, id_column), row.line)
        if done[key] > 0:
            # Counting, not a set: a row written twice before (an old bug) is skipped once.
            done[key] -= 1
            stats.skipped += 1
            continue
        yield row


def _batched(rows: Iterable[Row], size: int) -> Iterator[list[Row]]:
    batch: list[Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch

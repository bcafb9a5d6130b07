"""Micro-batching: texts from concurrent requests share one model call, run in a worker thread.

Each text is queued with a key (the task and the decoding settings it needs) and a future. One
worker thread takes the first text, waits up to ``max_wait_ms`` for up to ``max_batch`` texts in
all, then takes whatever else is already queued, up to ``max_gather`` texts. It sorts the texts
of each key by length and calls the model on ``max_batch`` of them at a time, so under a deep
queue the server pads as little as an in-process call over many articles does (32 clients, tiny
summarizer: 0.65 of in-process throughput when a call held one batch). Between those calls it
drops the texts of requests given up on (timed out, or the client hung up): at most one model
batch runs for nobody, not the whole gathered queue.

Right after a call, the clients it answered tend to send their next texts together, but not within
``max_wait_ms``: the event loop is still writing the other answers. So for a tenth of that call's
time (at most a second) the batcher waits until as many requests as the call answered are back (or
``max_batch`` texts), instead of starting a call with the first one or two. An idle server's
first text still waits ``max_wait_ms`` only, and ``max_wait_ms=0`` turns waiting off altogether.

The event loop only queues and awaits, so health checks are answered while a batch runs; a request
given up on before its texts' model call started is skipped.

Example:
    >>> import asyncio
    >>> batcher = MicroBatcher(lambda key, texts: [t.upper() for t in texts], max_batch=4, max_wait_ms=1)
    >>> asyncio.run(batcher.run("shout", ["a", "b"]))
    ['A', 'B']
    >>> batcher.close()
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)
# (key, texts) -> one result or exception per text, in order.
RunBatch = Callable[[Hashable, list[Any]], list[Any]]
# Model batches one call may hold when the queue is deep. More sorts better but makes the first
# texts of a call wait for the last; four keeps a call's extra wait within a few batches.
GATHER_BATCHES = 4
# How long after a call its clients are waited for: a share of the call's own time, so the wait
# stays small beside the call it fills (32 closed-loop clients, real-size summaries, 2 cores: two
# texts came back at once and the rest over the next 130 ms; a call started with the two cost
# 1.3 s of model time, a call of 30 took 6 s).
RETURN_WINDOW_SHARE = 0.1
RETURN_WINDOW_MAX_S = 1.0
_STOP = object()
# The worker threads' name: khabar serve looks for one still running when it exits.
WORKER_NAME = "khabar-batcher"


@dataclass(eq=False)
class _Request:
    """What the texts of one request share: whether its caller still waits for them."""

    abandoned: bool = False


@dataclass
class _Pending:
    key: Hashable
    item: Any
    request: _Request
    future: Future = field(default_factory=Future)


class MicroBatcher:
    """Queue texts from any thread or event loop; one worker thread runs them in batches.

    ``run_batch(key, items)`` returns one result per item; an ``Exception`` in its place fails
    that item only. An exception raised by ``run_batch`` itself fails every item of the call.

    Example:
        >>> import asyncio
        >>> calls = []
        >>> def run_batch(key, items):
        ...     calls.append(len(items))
        ...     return [ValueError("odd") if i % 2 else i for i in items]
        >>> batcher = MicroBatcher(run_batch, max_batch=8, max_wait_ms=50)
        >>> async def three_requests():
        ...     return await asyncio.gather(*(batcher.run("k", [i], return_exceptions=True) for i in range(3)))
        >>> [[str(r) for r in rs] for rs in asyncio.run(three_requests())], calls
        ([['0'], ['odd'], ['2']], [3])
        >>> batcher.close()
    """

    def __init__(
        self, run_batch: RunBatch, max_batch: int = 16, max_wait_ms: float = 10.0, max_gather: int | None = None
    ) -> None:
        max_gather = max_gather or GATHER_BATCHES * max_batch
        if max_batch < 1 or max_wait_ms < 0 or max_gather < max_batch:
            raise ValueError(
                f"max_batch must be at least 1, max_wait_ms 0 or more and max_gather at least max_batch, "
                f"got {max_batch}, {max_wait_ms}, {max_gather}"
            )
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.max_gather = max_gather
        self.max_wait = max_wait_ms / 1000
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        # (requests the last call answered, until when they are waited for) - see the module docstring.
        self._returning: tuple[int, float] = (0, 0.0)
        self._worker = threading.Thread(target=self._work, name=WORKER_NAME, daemon=True)
        self._worker.start()

    def submit(self, key: Hashable, item: Any) -> Future:
        """Queue one item; its future gets the result (or the item's exception).

        Example:
            >>> batcher = MicroBatcher(lambda key, items: [i * 2 for i in items])
            >>> batcher.submit("double", 21).result(timeout=5)
            42
            >>> batcher.close()
        """
        return self._put(key, [item])[0]

    async def run(self, key: Hashable, items: list[Any], return_exceptions: bool = False) -> list[Any]:
        """Queue ``items`` and wait for their results, in order; cancelling this cancels the queued ones.

        With ``return_exceptions`` an item's exception is returned in its place instead of raised.

        Example:
            >>> import asyncio
            >>> batcher = MicroBatcher(lambda key, items: [ValueError(i) if i < 0 else i for i in items])
            >>> asyncio.run(batcher.run("k", [1, -1], return_exceptions=True))
            [1, ValueError(-1)]
            >>> batcher.close()
        """
        request = _Request()
        futures = [asyncio.wrap_future(future) for future in self._put(key, items, request)]
        try:
            return await asyncio.gather(*futures, return_exceptions=return_exceptions)
        except BaseException:
            request.abandoned = True  # texts in a gathered call not run yet are dropped between model batches
            for future in futures:
                future.cancel()  # items not started yet leave the queue unrun
            raise

    def _put(self, key: Hashable, items: list[Any], request: _Request | None = None) -> list[Future]:
        """Queue the texts of one request."""
        request = request or _Request()
        pendings = [_Pending(key, item, request) for item in items]
        for pending in pendings:
            self._queue.put(pending)
        return [pending.future for pending in pendings]

    def close(self, timeout: float | None = None) -> None:
        """Finish what is queued, then stop the worker thread.

        Example:
            >>> batcher = MicroBatcher(lambda key, items: items)
            >>> future = batcher.submit("k", 1)
            >>> batcher.close(); future.result()
            1
        """
        self._queue.put(_STOP)
        self._worker.join(timeout)

    def _work(self) -> None:
        while True:
            batch, stop = self._gather()
            self._run(batch)
            if stop:
                return

    def _gather(self) -> tuple[list[_Pending], bool]:
        """Block for a first item, wait for more until a batch is full or the wait is over, then
        take what is already queued up to ``max_gather``."""
        first = self._queue.get()
        if first is _STOP:
            return [], True
        batch, deadline, requests = [first], time.monotonic() + self.max_wait, {first.request}
        while len(batch) < self.max_gather:
            remaining = self._wait_until(len(batch), len(requests), deadline) - time.monotonic()
            try:
                # Past the wait (or with a batch in hand), items already queued still join: they
                # cost the call little and are sorted by length with the rest.
                pending = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if pending is _STOP:
                return batch, True
            batch.append(pending)
            requests.add(pending.request)
        return batch, False

    def _wait_until(self, texts: int, requests: int, deadline: float) -> float:
        """When to stop waiting for another text, with ``texts`` from ``requests`` in hand; a past time
        takes only what is queued."""
        if texts >= self.max_batch or not self.max_wait:
            return 0.0
        expected, window_end = self._returning
        return max(deadline, window_end) if requests < expected else deadline

    def _run(self, batch: list[_Pending]) -> None:
        started = time.monotonic()
        live = [pending for pending in batch if pending.future.set_running_or_notify_cancel()]
        self._run_live(live)
        finished = time.monotonic()
        window = min(RETURN_WINDOW_SHARE * (finished - started), RETURN_WINDOW_MAX_S)
        requests = len({pending.request for pending in live})
        self._returning = (requests, finished + window)
        if live:  # what --max-batch / --max-wait-ms are tuned by: the size of each call and its time
            log.debug("model call: %d text(s) from %d request(s) in %.2f s", len(live), requests, finished - started)

    def _run_live(self, live: list[_Pending]) -> None:
        by_key: dict[Hashable, list[_Pending]] = {}
        for pending in live:
            by_key.setdefault(pending.key, []).append(pending)
        for key, group in by_key.items():
            todo = sorted(group, key=_length)  # as the model would: similar lengths pad little
            while todo:
                todo = [pending for pending in todo if not _dropped(pending)]
                self._call(key, todo[: self.max_batch])
                todo = todo[self.max_batch :]

    def _call(self, key: Hashable, piece: list[_Pending]) -> None:
        """One model call; each text's future gets its result or exception."""
        if not piece:
            return
        try:
            results = self.run_batch(key, [pending.item for pending in piece])
            if len(results) != len(piece):
                raise RuntimeError(f"the model returned {len(results)} results for {len(piece)} texts")
        except Exception as exc:  # noqa: BLE001 - reported to each waiting request, never lost
            results = [exc] * len(piece)
        for pending, result in zip(piece, results, strict=True):
            if isinstance(result, Exception):
                pending.future.set_exception(result)
            else:
                pending.future.set_result(result)


def _length(pending: _Pending) -> int:
    return len(pending.item) if isinstance(pending.item, str) else 0


def _dropped(pending: _Pending) -> bool:
    """Whether the request of this text was given up on; its future, already running, is then settled."""
    if pending.request.abandoned:
        pending.future.set_exception(CancelledError())  # nobody awaits it: settled so nothing hangs on it
    return pending.request.abandoned

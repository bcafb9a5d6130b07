"""Timing machinery: one process per route, driven in turn, so routes interleave and RSS is per route.

Each route lives in its own process for the whole run: its peak RSS is its own (loading included),
and the parent can alternate routes repetition by repetition so that a noisy neighbour slows
every route alike instead of whichever happened to run at that moment.
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import statistics
import time
from pathlib import Path

import torch

from bench.routes import Route, load

WARMUP_DOCS = 2


class Worker:
    """A process holding one loaded route; ``run`` times it on a named workload.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from training.tiny import build_tiny_classifier
        >>> model_dir = build_tiny_classifier(tempfile.mkdtemp())
        >>> route = Route("classifier", "default", "torch", None, 4)
        >>> worker = Worker(route, model_dir, {"demo": ["خبر ورزشی"] * 4})
        >>> wall, cpu = worker.run("demo", "greedy")
        >>> wall > 0 and cpu > 0
        True
        >>> worker.close() > 0   # peak RSS in MB
        True
    """

    def __init__(self, route: Route, model_dir: Path, workloads: dict[str, list[str]], threads: int | None = None):
        self.route = route
        ctx = mp.get_context("spawn")  # a clean interpreter: no torch state or memory from the parent
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child, route, model_dir, workloads, threads), daemon=True)
        self.process.start()
        status, detail = self.conn.recv()
        if status != "ready":
            self.process.join()
            raise RuntimeError(f"{route.label} failed to load: {detail}")
        self.via = detail

    def run(self, workload: str, decoding: str) -> tuple[float, float]:
        """Wall-clock and CPU seconds (all threads) the route takes over the whole workload.

        CPU time is the contention-proof figure: on a shared machine other processes stretch
        the wall-clock time but not the work this process did.
        """
        self.conn.send(("run", workload, decoding))
        status, detail = self.conn.recv()
        if status != "ok":
            raise RuntimeError(f"{self.route.label} failed on {workload}/{decoding}: {detail}")
        return detail

    def close(self) -> float:
        """Stop the process; its peak RSS in MB."""
        self.conn.send(("stop",))
        peak = self.conn.recv()[1]
        self.process.join()
        return peak


def _serve(conn, route: Route, model_dir: Path, workloads: dict[str, list[str]], threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)
    import transformers

    transformers.logging.set_verbosity_error()  # the intended untied-weights warning, once per route
    try:
        run, via = load(route, model_dir)
        # Warm up every shape family once (first calls allocate and pick kernels).
        for texts in workloads.values():
            run(texts[:WARMUP_DOCS], "greedy")
    except Exception as err:  # reported to the parent, which names the route
        conn.send(("error", f"{type(err).__name__}: {err}"))
        return
    conn.send(("ready", via))
    while True:
        command = conn.recv()
        if command[0] == "stop":
            conn.send(("rss", peak_rss_mb()))
            return
        _, workload, decoding = command
        try:
            start, cpu = time.perf_counter(), time.process_time()
            run(workloads[workload], decoding)
            conn.send(("ok", (time.perf_counter() - start, time.process_time() - cpu)))
        except Exception as err:
            conn.send(("error", f"{type(err).__name__}: {err}"))


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB (Linux reports ``ru_maxrss`` in KB).

    Example:
        >>> peak_rss_mb() > 10
        True
    """
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def spread(values: list[float]) -> dict:
    """Median, min and max, rounded for the report.

    Example:
        >>> spread([1.0, 3.0, 2.0])
        {'median': 2.0, 'min': 1.0, 'max': 3.0}
    """
    return {key: round(f(values), 3) for key, f in (("median", statistics.median), ("min", min), ("max", max))}


def sgemm_gflops(seconds: float = 1.5, size: int = 1024) -> float:
    """fp32 matrix-multiply speed of this machine now: the ceiling for an fp32 encoder.

    Example:
        >>> sgemm_gflops(seconds=0.1, size=128) > 0
        True
    """
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best, end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return round(2 * size**3 / best / 1e9, 1)

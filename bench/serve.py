"""How fast ``khabar serve`` answers, beside the models called in-process: ``python -m bench.serve``.

Starts ``khabar serve`` on 127.0.0.1 (a free port) with the tiny models (``--real``: ParsBERT-base
and mT5-small sized, random weights, see :mod:`bench.models`), then drives each endpoint with N
concurrent clients, each sending one article per request in a closed loop, for a bounded number
of requests. Reports requests/s, articles/s and p50/p95/p99 latency per endpoint and client
count, beside the in-process ``Classifier`` / ``Summarizer`` throughput on the same articles in
batches of the server's ``--max-batch``. Writes ``bench/serve-results.json`` and prints a table.

The targets: with 32 concurrent clients, served articles/s at least 80% of in-process batched
throughput (micro-batching at work); p99 latency at 4 clients within 2x the one-client latency.

Example:
    python -m bench.serve                 # tiny models, about a minute
    python -m bench.serve --real          # real-size models (built once in ~/.cache/khabar/bench)
    python -m bench.serve --clients 1,4,32 --requests 256 --max-batch 16 --max-wait-ms 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import report
from bench.workloads import read_articles, real_mix

RESULTS = Path(__file__).resolve().parent / "serve-results.json"
ENDPOINTS = ("classify", "summarize")
# Greedy summaries of bounded length keep the run short; the real-size model's saved decoding also
# forces min_new_tokens = 48, so with these settings every summary is exactly 48 tokens.
DECODING = {"num_beams": 1, "max_new_tokens": 16}
REAL_DECODING = {"num_beams": 1, "max_new_tokens": 48}


def free_port() -> int:
    """A TCP port nobody listens on now.

    Example:
        >>> 0 < free_port() < 65536
        True
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0-1) of ``values``, interpolated.

    Example:
        >>> percentile([1.0, 2.0, 3.0, 4.0], 0.5)
        2.5
    """
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def in_process(model_dirs: dict[str, Path], texts: list[str], batch: int, decoding: dict) -> dict[str, float]:
    """Articles/s of the models called directly, in batches of ``batch``, after one warm-up batch."""
    from inference import Classifier, Summarizer

    speeds = {}
    classifier = Classifier.from_pretrained(model_dirs["classifier"], device="cpu")
    classifier.predict(texts[:batch], batch_size=batch)
    started = time.perf_counter()
    classifier.predict(texts, batch_size=batch)
    speeds["classify"] = len(texts) / (time.perf_counter() - started)
    summarizer = Summarizer.from_pretrained(model_dirs["summarizer"], device="cpu")
    # As the server does: calls of at most ``batch`` articles, fewer where the beams run faster so.
    size = summarizer.batch_size_for(decoding.get("num_beams"), at_most=batch)
    summarizer.summarize(texts[:size], batch_size=size, **decoding)
    started = time.perf_counter()
    summarizer.summarize(texts, batch_size=size, **decoding)
    speeds["summarize"] = len(texts) / (time.perf_counter() - started)
    return speeds


class Server:
    """``khabar serve`` in a child process on a free port; ``stop()`` sends SIGTERM and returns its exit code."""

    def __init__(
        self, model_dirs: dict[str, Path], max_batch: int, max_wait_ms: float, max_new_tokens: int, threads: int
    ):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [
            sys.executable, "-m", "inference.cli", "serve",
            "--classifier", str(model_dirs["classifier"]), "--summarizer", str(model_dirs["summarizer"]),
            "--device", "cpu", "--port", str(self.port), "--log-level", "warning",
            "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms),
            "--max-new-tokens", str(max(max_new_tokens, 256)),
            "--timeout", "3600",  # a deep queue of real-size work on a busy CPU is slow, not broken
        ]  # fmt: skip
        env = {**os.environ, "HF_HUB_OFFLINE": "1"} | ({"OMP_NUM_THREADS": str(threads)} if threads else {})
        self.process = subprocess.Popen(command, env=env)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 600) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"khabar serve exited with code {self.process.returncode}")
            try:
                response = httpx.get(f"{self.url}/readyz", timeout=1)
            except httpx.HTTPError:
                response = None
            if response is not None and response.status_code == 200:
                return
            if response is not None and "failed" in response.json().get("status", ""):
                self.stop()
                raise RuntimeError(f"khabar serve: {response.json()['status']}")
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("khabar serve did not become ready")

    def stop(self) -> int:
        self.process.terminate()
        return self.process.wait(60)


async def drive(url: str, endpoint: str, texts: list[str], clients: int, requests: int, decoding: dict) -> dict:
    """``clients`` concurrent closed-loop clients send ``requests`` single-article requests in all."""
    import httpx

    latencies: list[float] = []
    sent = 0
    body_extra = decoding if endpoint == "summarize" else {}

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal sent
        while sent < requests:
            text = texts[sent % len(texts)]
            sent += 1
            began = time.perf_counter()
            response = await http.post(f"{url}/v1/{endpoint}", json={"text": text, **body_extra})
            latencies.append(time.perf_counter() - began)
            if response.status_code != 200 or "error" in response.json()["results"][0]:
                raise RuntimeError(f"{endpoint}: {response.status_code} {response.text[:200]}")

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=600) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        seconds = time.perf_counter() - started
    return {
        "endpoint": endpoint,
        "clients": clients,
        "requests": len(latencies),
        "requests_per_s": round(len(latencies) / seconds, 2),
        "articles_per_s": round(len(latencies) / seconds, 2),  # one article per request
        "p50_ms": round(1000 * percentile(latencies, 0.50), 1),
        "p95_ms": round(1000 * percentile(latencies, 0.95), 1),
        "p99_ms": round(1000 * percentile(latencies, 0.99), 1),
        "mean_ms": round(1000 * statistics.fmean(latencies), 1),
    }


def targets(records: list[dict], speeds: dict[str, float]) -> list[dict]:
    """Per endpoint: served/in-process articles/s at the most clients, and p99 at 4 clients over the
    single-request latency, both as p50 at 1 client (``p99_ratio``) and as p99 at 1 (``p99_vs_p99``):
    on articles of mixed lengths the single-request p99 is the long ones' latency.

    Example:
        >>> rows = [{"endpoint": "classify", "clients": 1, "p50_ms": 10.0, "p99_ms": 12.0, "articles_per_s": 90.0},
        ...         {"endpoint": "classify", "clients": 4, "p50_ms": 12.0, "p99_ms": 18.0, "articles_per_s": 300.0}]
        >>> check = targets(rows, {"classify": 400.0})[0]
        >>> check["throughput_ratio"], check["p99_ratio"]
        (0.75, 1.8)
    """
    checks = []
    for endpoint in speeds:
        mine = {r["clients"]: r for r in records if r["endpoint"] == endpoint}
        if not mine:
            continue
        most = max(mine)
        check = {"endpoint": endpoint, "clients": most}
        check["throughput_ratio"] = round(mine[most]["articles_per_s"] / speeds[endpoint], 2)
        check["throughput_ok"] = check["throughput_ratio"] >= 0.8
        if 1 in mine and 4 in mine:
            check["p99_ratio"] = round(mine[4]["p99_ms"] / mine[1]["p50_ms"], 2)
            check["p99_ok"] = check["p99_ratio"] <= 2.0
            check["p99_vs_p99"] = round(mine[4]["p99_ms"] / mine[1]["p99_ms"], 2)
        checks.append(check)
    return checks


def table(records: list[dict], speeds: dict[str, float]) -> str:
    """The markdown table of the results.

    Example:
        >>> print(table([], {"classify": 100.0}).splitlines()[2])
        | classify | in-process batched | - | - | **100.0** | - | - | - |
    """
    lines = [
        "| endpoint | clients | requests | req/s | articles/s | p50 ms | p95 ms | p99 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for endpoint, speed in speeds.items():
        lines.append(f"| {endpoint} | in-process batched | - | - | **{speed:.1f}** | - | - | - |")
        for r in (r for r in records if r["endpoint"] == endpoint):
            lines.append(
                f"| {endpoint} | {r['clients']} | {r['requests']} | {r['requests_per_s']} | {r['articles_per_s']} "
                f"| {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} |"
            )
    return "\n".join(lines)


def build_models(real: bool, work: Path) -> dict[str, Path]:
    """The model directories: tiny random-weight models in a temporary folder, or the real-size ones in ``work``."""
    if real:
        from bench import models

        texts = read_articles("train", limit=3000)
        return {
            "classifier": models.build_classifier(work / "classifier", texts),
            "summarizer": models.build_summarizer(work / "summarizer", texts),
        }
    from training.tiny import build_tiny_classifier, build_tiny_summarizer, sample_texts

    out = Path(tempfile.mkdtemp(prefix="khabar-bench-serve-"))
    texts = sample_texts()
    return {
        "classifier": build_tiny_classifier(out / "classifier", texts=texts),
        "summarizer": build_tiny_summarizer(out / "summarizer", texts=texts),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table and the targets, save the records."""
    from bench.models import default_work_folder

    parser = argparse.ArgumentParser(prog="python -m bench.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--real", action="store_true", help="real-size random-weight models instead of tiny ones")
    parser.add_argument("--clients", default="1,4,32", help="concurrent clients to try (1,4,32)")
    parser.add_argument("--requests", type=int, help="requests per endpoint and client count (tiny 256, real 64)")
    parser.add_argument("--summary-requests", type=int, help="the same for summarize (tiny 128, real 32)")
    parser.add_argument("--articles", type=int, default=64, help="distinct articles sent, drawn from the test split")
    parser.add_argument("--endpoints", default=",".join(ENDPOINTS), help="classify,summarize")
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch threads of the server and of the in-process run (1; 0: torch's default). On a shared machine "
        "one thread per process avoids the intra-op threads spin-waiting on each other",
    )  # fmt: skip
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--max-wait-ms", type=float, default=10.0)
    parser.add_argument("--work", type=Path, default=default_work_folder(), help="where --real models are built")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    clients = [int(n) for n in args.clients.split(",")]
    endpoints = args.endpoints.split(",")
    decoding = REAL_DECODING if args.real else DECODING
    requests = {
        "classify": args.requests or (64 if args.real else 256),
        "summarize": args.summary_requests or (32 if args.real else 128),
    }

    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    if args.threads:
        torch.set_num_threads(args.threads)
    model_dirs = build_models(args.real, args.work)
    texts = real_mix(read_articles("test"), args.articles)
    _say(f"{len(texts)} articles; measuring the models in-process (batches of {args.max_batch})")
    before = {k: v for k, v in in_process(model_dirs, texts, args.max_batch, decoding).items() if k in endpoints}
    _say("in-process articles/s: " + ", ".join(f"{k} {v:.1f}" for k, v in before.items()))
    server = Server(model_dirs, args.max_batch, args.max_wait_ms, decoding["max_new_tokens"], args.threads)
    records = []
    try:
        for endpoint in endpoints:
            asyncio.run(drive(server.url, endpoint, texts, 1, 4, decoding))  # warm the connection and caches
            for n in clients:
                records.append(asyncio.run(drive(server.url, endpoint, texts, n, requests[endpoint], decoding)))
                _say(json.dumps(records[-1]))
    except Exception as exc:  # noqa: BLE001 - keep what was measured
        _say(f"stopped early: {exc}")
    finally:
        code = server.stop()
    # Measured again after the server ran, and averaged: a shared host drifts over a run's minutes.
    after = {k: v for k, v in in_process(model_dirs, texts, args.max_batch, decoding).items() if k in endpoints}
    _say("in-process articles/s after: " + ", ".join(f"{k} {v:.1f}" for k, v in after.items()))
    speeds = {k: (before[k] + after[k]) / 2 for k in before}
    info = report.machine("cpu")
    info |= {"models": "real-size" if args.real else "tiny", "max_batch": args.max_batch, "threads": args.threads}
    info |= {"max_wait_ms": args.max_wait_ms, "decoding": decoding, "server_exit_code": code}
    checks = targets(records, speeds)
    saved = json.loads(args.out.read_text()) if args.out.is_file() else {}
    runs = {"in_process_before": before, "in_process_after": after}
    saved[info["models"]] = {"machine": info, "in_process": speeds, **runs, "results": records, "targets": checks}
    args.out.write_text(json.dumps(saved, indent=1, ensure_ascii=False) + "\n")
    print(table(records, speeds))
    for check in checks:
        print(json.dumps(check))
    print(f"server exit code on SIGTERM: {code}; written to {args.out}")
    return 0


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())

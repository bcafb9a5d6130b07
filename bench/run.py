"""Benchmark khabar's inference against a typical user script: ``python -m bench.run`` (``make bench``).

Builds ParsBERT-base and mT5-small sized models with random weights, then times three routes
(naive ``transformers``, khabar's default CPU path, khabar's fastest CPU path) on fixed 512-token
articles and on the real mix of article lengths, summaries in greedy and beam-4 decoding, routes
interleaved over repetitions. Writes ``bench/results.json`` and prints a markdown table.

Example:
    python -m bench.run                       # the full CPU run, about 10-15 minutes on 2 cores
    python -m bench.run --quick               # a smoke run of a minute or two
    python -m bench.run --device cuda         # GPU: bf16, batch 64; adds records beside the CPU ones
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from pathlib import Path

from bench import models, report
from bench.measure import Worker, sgemm_gflops, spread
from bench.routes import DECODINGS, Route, load
from bench.workloads import fit, fixed_length, read_articles, real_mix, token_lengths
from inference.fast.cache import user_cache_dir

RESULTS = Path(__file__).resolve().parent / "results.json"
WORKLOADS = ("512", "real")
# Documents per route and repetition, chosen so the full run takes 10-15 minutes on 2 cores. The
# naive route handles one document at a time, so its speed does not depend on how many it gets;
# batched routes need enough documents to fill their batches.
DOCS = {
    "classifier": {"naive": 8, "default": 16, "fast": 32},
    "summarizer": {"naive": 3, "default": 16, "fast": 32},
}
QUICK_DOCS = {
    "classifier": {"naive": 2, "default": 4, "fast": 4},
    "summarizer": {"naive": 1, "default": 2, "fast": 4},
}


def routes(task: str, device: str, batch: dict[str, int]) -> list[Route]:
    """The naive, default and fast routes of ``task`` on ``device``.

    On a GPU the fast route is the torch backend in bf16 with a large batch: the engines here are
    CPU engines.

    Example:
        >>> [r.name for r in routes("summarizer", "cpu", {"default": 16, "fast": 32})]
        ['naive', 'default', 'fast']
    """
    fast_backend = "onnx" if task == "classifier" else "ctranslate2"
    if device != "cpu":
        fast = Route(task, "fast", "torch", None, batch["fast"], device, "bfloat16")
    else:
        fast = Route(task, "fast", fast_backend, "int8", batch["fast"], device)
    return [
        Route(task, "naive", "torch", None, 1, device),
        Route(task, "default", "torch", None, batch["default"], device),
        fast,
    ]


def build_workloads(task: str, model_dir: Path, docs: int) -> tuple[dict[str, list[str]], dict[str, list[int]]]:
    """The two workloads' texts for ``task`` and their token lengths."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    articles = read_articles("test")
    texts = {"512": fixed_length(articles, tokenizer, docs), "real": fit(real_mix(articles, docs), tokenizer)}
    return texts, {name: token_lengths(t, tokenizer) for name, t in texts.items()}


def prepare(route: Route, model_dir: Path) -> None:
    """Convert the model for ``route`` in a throwaway process, so conversion memory is nobody's RSS."""
    if route.name != "fast" or route.backend == "torch":
        return
    process = mp.get_context("spawn").Process(target=load, args=(route, model_dir))
    process.start()
    process.join()
    if process.exitcode:
        raise RuntimeError(f"converting {model_dir} for {route.label} failed")


def measure(task: str, model_dir: Path, args: argparse.Namespace) -> list[dict]:
    """Time every route of ``task``, interleaved, and return one record per workload x decoding x route."""
    counts = (QUICK_DOCS if args.quick else DOCS)[task]
    texts, lengths = build_workloads(task, model_dir, max(counts.values()))
    task_routes = routes(task, args.device, {"default": args.batch_size, "fast": args.fast_batch_size})
    workers = []
    for route in task_routes:
        prepare(route, model_dir)
        mine = {name: t[: counts[route.name]] for name, t in texts.items()}
        workers.append(Worker(route, model_dir, mine, args.threads))
        _say(f"{task}: loaded {route.label} via {workers[-1].via}")
    decodings = list(DECODINGS) if task == "summarizer" else [None]
    seconds: dict[tuple, list[float]] = {}
    for rep in range(args.reps):
        for workload in WORKLOADS:
            for decoding in decodings:
                # Rotate the order each repetition so no route always runs first (or right after another).
                for worker in workers[rep % 3 :] + workers[: rep % 3]:
                    elapsed = worker.run(workload, decoding or "greedy")
                    seconds.setdefault((workload, decoding, worker.route.name), []).append(elapsed)
                    _say(f"rep {rep + 1} {task} {workload} {decoding or ''} {worker.route.name}: {elapsed:.1f}s")
    peaks = [worker.close() for worker in workers]
    return _records(task, task_routes, workers, peaks, counts, seconds, lengths, decodings, args)


def _records(task, task_routes, workers, peaks, counts, seconds, lengths, decodings, args) -> list[dict]:
    records = []
    for workload in WORKLOADS:
        for decoding in decodings:
            naive = [counts["naive"] / s for s in seconds[(workload, decoding, "naive")]]
            for route, worker, peak in zip(task_routes, workers, peaks, strict=True):
                n = counts[route.name]
                rates = [n / s for s in seconds[(workload, decoding, route.name)]]
                record = {
                    "device": args.device,
                    "model": task,
                    "workload": workload,
                    "decoding": decoding,
                    "route": route.name,
                    "label": route.label,
                    "via": worker.via,
                    "docs": n,
                    "repetitions": args.reps,
                    "mean_input_tokens": round(sum(lengths[workload][:n]) / n, 1),
                    "summary_tokens": 48 if task == "summarizer" else None,
                    "docs_per_s": spread(rates),
                    # Ratios pair by pair: each repetition's rate over the naive rate of the same repetition.
                    "ratio_to_naive": spread([r / b for r, b in zip(rates, naive, strict=True)]),
                    "peak_rss_mb": round(peak),
                }
                if task == "classifier":
                    gflop = report.encoder_gflop(lengths[workload][:n])
                    record["gflop_per_s"] = round(gflop * record["docs_per_s"]["median"] / n, 1)
                records.append(record)
    return records


def main(argv: list[str] | None = None) -> int:
    """Build the models, run every route, write the results file and print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="classifier,summarizer", help="comma-separated: classifier,summarizer")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of every route (medians over them)")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda for the GPU run (bf16, batch 64)")
    parser.add_argument("--batch-size", type=int, default=None, help="default route batch (16 on CPU, 64 on GPU)")
    parser.add_argument("--fast-batch-size", type=int, default=None, help="fast route batch (16 on CPU, 64 on GPU)")
    parser.add_argument("--threads", type=int, default=None, help="torch/engine threads (default: physical cores)")
    parser.add_argument("--work", type=Path, default=user_cache_dir() / "bench", help="where the models are built")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results file (records of other devices are kept)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: few documents, one repetition")
    args = parser.parse_args(argv)
    gpu = args.device != "cpu"
    args.batch_size = args.batch_size or (64 if gpu else 16)
    args.fast_batch_size = args.fast_batch_size or (64 if gpu else 16)
    if args.quick:
        args.reps = 1
    started = time.time()
    info = report.machine(args.device)
    info["sgemm_gflops_before"] = sgemm_gflops()
    _say(f"{info['cpu']}, {info['physical_cores']} cores; fp32 sgemm {info['sgemm_gflops_before']} GFLOP/s")
    records = []
    for task in args.models.split(","):
        records += measure(task, _model(task, args.work), args)
    info["sgemm_gflops_after"] = sgemm_gflops()
    info["minutes"] = round((time.time() - started) / 60, 1)
    report.save(records, info, args.out)
    print(report.table(records))
    print(
        f"\nfp32 sgemm {info['sgemm_gflops_before']} -> {info['sgemm_gflops_after']} GFLOP/s; "
        f"{info['minutes']} min; written to {args.out}"
    )
    return 0


def _model(task: str, work: Path) -> Path:
    builder = models.build_classifier if task == "classifier" else models.build_summarizer
    out = work / task
    if not (out / models.DONE).is_file():
        _say(f"building the real-size {task} with random weights in {out} (once)")
    return builder(out, read_articles("train", limit=3000))


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark khabar's inference against a typical user script: ``python -m bench.run`` (``make bench``).

Builds ParsBERT-base and mT5-small sized models with random weights, then times the routes
(naive ``transformers``; khabar with no flags; its torch path with ``dtype="auto"`` and in fp32;
khabar's fast CPU engines) on fixed 512-token
articles and on the real mix of article lengths, summaries in greedy and beam-4 decoding, routes
interleaved over repetitions. Writes ``bench/results.json`` and prints a markdown table.

Example:
    python -m bench.run                       # the full CPU run, about 10-15 minutes on 2 cores
    python -m bench.run --quick               # a smoke run of a minute or two
    python -m bench.run --device cuda         # GPU: bf16, batch 64; adds records beside the CPU ones
    python -m bench.run --isa AVX2            # as a processor without AVX-512 or AMX would run
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path

from bench import models, report
from bench.measure import Worker, sgemm_gflops, spread
from bench.routes import DECODINGS, Route, generation, load
from bench.workloads import fit, fixed_length, read_articles, real_mix, spread_subset, token_lengths
from inference.precision import BENCH_ISAS, ISA_ENV, cpu_capabilities, effective_isa, isa_limit

RESULTS = Path(__file__).resolve().parent / "results.json"
WORKLOADS = ("512", "real")
# Documents per route and repetition, chosen so the full run takes 10-15 minutes on 2 cores. The
# naive route handles one document at a time, so its speed does not depend on how many it gets;
# batched routes need enough documents to fill their batches.
DOCS = {
    "classifier": {"naive": 8, "default": 16, "torch": 16, "fp32": 16, "fast": 32},
    "summarizer": {"naive": 3, "default": 16, "torch": 16, "fp32": 16, "fast": 16, "fast-vocab": 16},
}
QUICK_DOCS = {
    "classifier": {"naive": 2, "default": 4, "torch": 4, "fp32": 4, "fast": 4},
    "summarizer": {"naive": 1, "default": 2, "torch": 2, "fp32": 2, "fast": 2, "fast-vocab": 2},
}
FAST_BATCH = 16


def default_batch(task: str) -> int | None:
    """The batch size khabar's class uses when none is given (``None``: it picks per call, by beams).

    Example:
        >>> default_batch("classifier") > 0
        True
    """
    import inspect

    from inference import Classifier, Summarizer

    method = Classifier.predict if task == "classifier" else Summarizer.summarize
    return inspect.signature(method).parameters["batch_size"].default


def routes(task: str, device: str, batch: dict[str, int | None], vocab: int | None = None) -> list[Route]:
    """The routes of ``task`` on ``device``: naive, default (no flags), torch, fp32, fast (and fast-vocab).

    On a GPU the fast route is the torch backend in bf16 with a large batch: the engines here are
    CPU engines. ``fast-vocab`` runs when ``vocab`` is given.

    Example:
        >>> [r.name for r in routes("summarizer", "cpu", {"default": 8, "fast": 16}, vocab=26535)]
        ['naive', 'default', 'torch', 'fp32', 'fast', 'fast-vocab']
    """
    naive = Route(task, "naive", "torch", None, 1, device)
    default = Route(task, "default", "auto", None, batch["default"], device)
    if device != "cpu":
        return [naive, default, Route(task, "fast", "torch", None, batch["fast"], device, "bfloat16")]
    # What a user without the fast extra gets: torch with dtype="auto".
    torch_route = Route(task, "torch", "torch", None, batch["default"], device)
    fp32 = Route(task, "fp32", "torch", None, batch["default"], device, "float32")
    engine = "onnx" if task == "classifier" else "ctranslate2"
    fast = [Route(task, "fast", engine, "int8", batch["fast"], device)]
    if task == "summarizer" and vocab:
        fast.append(Route(task, "fast-vocab", engine, "int8", batch["fast"], device, vocab=vocab))
    return [naive, default, torch_route, fp32, *fast]


def build_workloads(task: str, model_dir: Path, docs: int) -> tuple[dict[str, list[str]], dict[str, list[int]]]:
    """The two workloads' texts for ``task`` and their token lengths."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    articles = read_articles("test")
    texts = {"512": fixed_length(articles, tokenizer, docs), "real": fit(real_mix(articles, docs), tokenizer)}
    return texts, {name: token_lengths(t, tokenizer) for name, t in texts.items()}


def prepare(route: Route, model_dir: Path) -> None:
    """Convert the model for ``route`` in a throwaway process, so conversion memory is nobody's RSS."""
    if route.backend == "torch":
        return
    process = mp.get_context("spawn").Process(target=load, args=(route, model_dir))
    process.start()
    process.join()
    if process.exitcode:
        raise RuntimeError(f"converting {model_dir} for {route.label} failed")


def measure(task: str, model_dirs: dict[str, Path], args: argparse.Namespace) -> list[dict]:
    """Time every route of ``task``, interleaved, and return one record per workload x decoding x route."""
    counts = (QUICK_DOCS if args.quick else DOCS)[task]
    texts, lengths = build_workloads(task, model_dirs["default"], max(counts.values()))
    batch = {"default": args.batch_size or default_batch(task), "fast": args.fast_batch_size}
    vocab = models.vocabulary_size(model_dirs["fast-vocab"]) if "fast-vocab" in model_dirs else None
    task_routes = routes(task, args.device, batch, vocab)
    workers, route_lengths = [], {}
    for route in task_routes:
        model_dir = model_dirs.get(route.name, model_dirs["default"])
        prepare(route, model_dir)
        # A route reading fewer documents reads the same mix of lengths (see spread_subset).
        mine = {name: spread_subset(t, lengths[name], counts[route.name]) for name, t in texts.items()}
        route_lengths[route.name] = {name: spread_subset(n, n, counts[route.name]) for name, n in lengths.items()}
        workers.append(Worker(route, model_dir, mine, args.threads))
        _say(f"{task}: loaded {route.label} via {workers[-1].via}")
    decodings = args.decodings if task == "summarizer" else [None]
    seconds: dict[tuple, list[float]] = {}
    cpu: dict[tuple, list[float]] = {}
    for rep in range(args.reps):
        for workload in args.workloads:
            for decoding in decodings:
                # Rotate the order each repetition so no route always runs first (or right after another).
                shift = rep % len(workers)
                for worker in workers[shift:] + workers[:shift]:
                    elapsed, busy = worker.run(workload, decoding or "greedy")
                    seconds.setdefault((workload, decoding, worker.route.name), []).append(elapsed)
                    cpu.setdefault((workload, decoding, worker.route.name), []).append(busy)
                    _say(
                        f"rep {rep + 1} {task} {workload} {decoding or ''} {worker.route.name}: "
                        f"{elapsed:.1f}s ({busy:.1f} CPU-s)"
                    )
    peaks = [worker.close() for worker in workers]
    timings = {"seconds": seconds, "cpu": cpu}
    return _records(task, task_routes, workers, peaks, counts, timings, route_lengths, decodings, args)


def _batch_size(route: Route, decoding: str | None) -> int | None:
    """The articles per model call a route ran: its own size, or the one the summarizer picks by beams.

    ``None`` on a GPU, where a token budget decides (see ``inference.summarizer.gpu_batching``).

    Example:
        >>> _batch_size(Route("summarizer", "default", "auto", None, None), "beam4")
        8
    """
    if route.batch_size is not None or route.device != "cpu":
        return route.batch_size
    from inference.summarizer import cpu_batch_size

    return cpu_batch_size(generation(decoding or "greedy").get("num_beams") or 1)


def _records(task, task_routes, workers, peaks, counts, timings, lengths, decodings, args) -> list[dict]:
    seconds, cpu = timings["seconds"], timings["cpu"]
    records = []
    for workload in args.workloads:
        for decoding in decodings:
            naive = [counts["naive"] / s for s in seconds[(workload, decoding, "naive")]]
            for route, worker, peak in zip(task_routes, workers, peaks, strict=True):
                n = counts[route.name]
                rates = [n / s for s in seconds[(workload, decoding, route.name)]]
                record = {
                    "device": args.device,
                    "isa": args.isa,
                    "model": task,
                    "workload": workload,
                    "decoding": decoding,
                    "route": route.name,
                    "label": route.label,
                    "batch_size": _batch_size(route, decoding),
                    "via": worker.via,
                    "docs": n,
                    "repetitions": args.reps,
                    "mean_input_tokens": round(sum(lengths[route.name][workload]) / n, 1),
                    "summary_tokens": 48 if task == "summarizer" else None,
                    "docs_per_s": spread(rates),
                    # Ratios pair by pair: each repetition's rate over the naive rate of the same repetition.
                    "ratio_to_naive": spread([r / b for r, b in zip(rates, naive, strict=True)]),
                    "peak_rss_mb": round(peak),
                    "cpu_seconds_per_doc": spread([c / n for c in cpu[(workload, decoding, route.name)]]),
                }
                if task == "classifier":
                    gflop = report.encoder_gflop(lengths[route.name][workload])
                    record["gflop_per_s"] = round(gflop * record["docs_per_s"]["median"] / n, 1)
                records.append(record)
    return records


def main(argv: list[str] | None = None) -> int:
    """Build the models, run every route, write the results file and print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="classifier,summarizer", help="comma-separated: classifier,summarizer")
    parser.add_argument("--workloads", type=lambda text: text.split(","), default=list(WORKLOADS), help="512,real")
    parser.add_argument("--decodings", type=lambda text: text.split(","), default=list(DECODINGS), help="greedy,beam4")
    parser.add_argument("--reps", type=int, help="repetitions of every route, medians over them (3; --quick: 1)")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda for the GPU run (bf16, batch 64)")
    parser.add_argument("--batch-size", type=int, default=None, help="default route batch (default: the class's own)")
    parser.add_argument("--fast-batch-size", type=int, default=None, help="fast route batch (16 on CPU, 64 on GPU)")
    parser.add_argument("--no-vocab", action="store_true", help="skip the fast-vocab summarizer route")
    parser.add_argument("--threads", type=int, default=None, help="torch/engine threads (default: physical cores)")
    parser.add_argument("--work", type=Path, default=models.default_work_folder(), help="where the models are built")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results file (records of other devices are kept)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: few documents, one repetition by default")
    parser.add_argument(
        "--isa",
        type=str.upper,
        choices=BENCH_ISAS,
        help="run as a processor with this instruction set at most would (sets ONEDNN_MAX_CPU_ISA)",
    )
    args = parser.parse_args(argv)
    if args.isa and isa_limit() != args.isa:
        return _rerun_with_isa(args.isa, argv)
    args.isa = isa_limit()
    _quiet()
    gpu = args.device != "cpu"
    args.fast_batch_size = args.fast_batch_size or (64 if gpu else FAST_BATCH)
    args.reps = args.reps or (1 if args.quick else 3)
    started = time.time()
    info = report.machine(args.device)
    info["sgemm_gflops_before"] = sgemm_gflops()
    caps = cpu_capabilities()
    info.update(cpu_flags=caps.describe(), isa=effective_isa(caps, args.isa), isa_limit=args.isa)
    _say(f"{info['cpu']}, {info['physical_cores']} cores; fp32 sgemm {info['sgemm_gflops_before']} GFLOP/s")
    capped = f" (ONEDNN_MAX_CPU_ISA={args.isa})" if args.isa else ""
    _say(f"capabilities: {info['cpu_flags']}; oneDNN runs at {info['isa']}{capped}")
    records = []
    for task in args.models.split(","):
        records += measure(task, _models(task, args), args)
    info["sgemm_gflops_after"] = sgemm_gflops()
    info["minutes"] = round((time.time() - started) / 60, 1)
    info["models"] = args.models.split(",")
    report.save(records, info, args.out)
    print(report.table(records))
    print(
        f"\nfp32 sgemm {info['sgemm_gflops_before']} -> {info['sgemm_gflops_after']} GFLOP/s; "
        f"{info['minutes']} min; written to {args.out}"
    )
    return 0


def _rerun_with_isa(isa: str, argv: list[str] | None) -> int:
    """Run the benchmark again in a child process with oneDNN capped at ``isa``.

    oneDNN reads ``ONEDNN_MAX_CPU_ISA`` once, when it first runs, and torch has used it by the
    time this process got here; a fresh interpreter (whose route workers inherit it) is the only
    reliable way to cap it. MKL (torch's fp32 matrix multiplies) and CTranslate2 are capped alike
    where they have a switch; ONNX Runtime and fbgemm have none and keep this machine's kernels.
    """
    wide = "AVX512" if isa.startswith("AVX512") else "AVX2"
    env = {**os.environ, ISA_ENV[0]: isa, "MKL_ENABLE_INSTRUCTIONS": wide, "CT2_FORCE_CPU_ISA": wide}
    env.pop(ISA_ENV[1], None)
    given = sys.argv[1:] if argv is None else argv
    return subprocess.call([sys.executable, "-m", "bench.run", *given], env=env)


def _models(task: str, args: argparse.Namespace) -> dict[str, Path]:
    """The model directory of each route: one shared, plus the vocabulary-restricted copy when asked."""
    builder = models.build_classifier if task == "classifier" else models.build_summarizer
    out = args.work / task
    if not (out / models.DONE).is_file():
        _say(f"building the real-size {task} with random weights in {out} (once)")
    dirs = {"default": builder(out, read_articles("train", limit=3000))}
    if task == "summarizer" and args.device == "cpu" and not args.no_vocab:
        _say("writing the Persian output vocabulary of the summarizer (once)")
        dirs["fast-vocab"] = models.with_output_vocabulary(dirs["default"], args.work / "summarizer-vocab")
    return dirs


def _quiet() -> None:
    """Silence transformers' advice (over-long texts are cut on purpose; the untied weights are intended)."""
    import transformers

    transformers.logging.set_verbosity_error()


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())

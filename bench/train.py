"""Training speed of the shipped recipes: ``python -m bench.train`` (CPU) or ``--device cuda``.

Each recipe (``configs/classifier/parsbert.yaml``, ``configs/summarizer/mt5-small.yaml``) trains
its real-size random-weight model (:mod:`bench.models`) through khabar's own ``train`` for a
fixed number of optimizer steps, beside a plain PyTorch loop on the same model (bf16 autocast on a
GPU, fused AdamW, fixed-length random batches) as the reference. Reported per route: samples/s,
tokens/s, time per optimizer step, peak memory and MFU (model FLOPs over ``--peak-flops``). The
first ``--warmup`` steps are not timed. Records go to ``bench/results.json`` under ``training``.

Example:
    python -m bench.train --device cuda                       # the recipes as written, 30 timed steps
    python -m bench.train --steps 3 --max-length 128 --batch-size 4   # a short CPU run, a few minutes
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from transformers import TrainerCallback

from bench import flops, models, report
from bench.workloads import read_articles

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results.json"
RECIPES = {
    "classifier": ROOT / "configs" / "classifier" / "parsbert.yaml",
    "summarizer": ROOT / "configs" / "summarizer" / "mt5-small.yaml",
}
# A rough sustained fp32 rate of 2 AVX-512 cores (the CPU runs' MFU denominator unless --peak-flops).
CPU_PEAK = 2 * 2.0e9 * 32 * 2  # cores x 2 GHz x 32 fp32 FMA lanes (2 AVX-512 units) x 2 FLOP


class StepTimer(TrainerCallback):
    """Times optimizer steps after ``warmup`` and reads the batch the trainer used and the data's token counts."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.seconds, self.steps = warmup, None, None, 0
        self.batch = self.accumulation = 0
        self.source_tokens = self.target_tokens = 0.0

    def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
        self.batch, self.accumulation = args.per_device_train_batch_size, args.gradient_accumulation_steps
        dataset = train_dataloader.dataset
        self.source_tokens = sum(len(ids) for ids in dataset["input_ids"]) / len(dataset)
        if "labels" in dataset.column_names and isinstance(dataset[0]["labels"], list):
            self.target_tokens = sum(len(ids) for ids in dataset["labels"]) / len(dataset)

    def on_step_end(self, args, state, control, **kwargs):
        _sync()
        if state.global_step == self.warmup:
            _reset_peak()
            self.start = time.perf_counter()
        elif state.global_step > self.warmup:
            self.seconds, self.steps = time.perf_counter() - self.start, state.global_step - self.warmup


def run_recipe(task: str, model_dir: Path, args: argparse.Namespace) -> dict:
    """Train ``task``'s recipe on ``model_dir`` for ``args.steps`` steps through khabar; the timed record."""
    from training import classifier, summarizer
    from training.config import load_config

    cfg = load_config(RECIPES[task], _overrides(task, model_dir, args))
    timer = StepTimer(args.warmup)
    trainer = classifier.train if task == "classifier" else summarizer.train
    with tempfile.TemporaryDirectory() as out:
        cfg.output_dir = out
        trainer(cfg, callbacks=[timer])
    if timer.seconds is None:
        raise RuntimeError(f"{task}: training stopped before step {args.warmup + 1}; raise --steps")
    samples = timer.batch * timer.accumulation
    return _record(
        task,
        "recipe",
        cfg.train,
        model_dir,
        args,
        samples,
        timer.steps,
        timer.seconds,
        (timer.source_tokens, timer.target_tokens),
        {"batch": timer.batch, "accumulation": timer.accumulation},
    )


def _overrides(task: str, model_dir: Path, args: argparse.Namespace) -> list[str]:

    # All training rows (a subset would miss topics of the test split); max_steps ends the run.
    overrides = [
        f"model.name_or_path={model_dir}",
        "data.max_eval_samples=8",
        f"train.max_steps={args.steps + args.warmup}",
        "train.logging_steps=1000",
        f"train.bf16={str(args.device != 'cpu').lower()}",
    ]
    if task == "summarizer":  # a classifier config refuses the summarizer's keys
        overrides += ["train.generation_eval_samples=2", "generation.max_new_tokens=8"]
    if args.batch_size:
        overrides += [f"train.batch_size={args.batch_size}", "train.gradient_accumulation_steps=1"]
    if args.max_length:
        overrides.append(f"train.max_length={args.max_length}")
    if args.max_target_length and task == "summarizer":
        overrides.append(f"train.max_target_length={args.max_target_length}")
    return overrides


def run_plain(task: str, model_dir: Path, args: argparse.Namespace, batch: int) -> dict:
    """The reference: a bare PyTorch loop on the same model at ``batch``, full-length random inputs."""
    import torch

    from training.config import load_config

    recipe = load_config(RECIPES[task], _overrides(task, model_dir, args)).train
    model = _load_model(task, model_dir).to(args.device).train()
    gpu = args.device != "cpu"
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=gpu)
    source, target = recipe.max_length, recipe.max_target_length if task == "summarizer" else 0
    from training.batch_probe import random_batch

    make = random_batch(model, source, target or None)
    inputs = make(batch)
    for step in range(args.steps + args.warmup):
        if step == args.warmup:
            _sync()
            _reset_peak()
            start = time.perf_counter()
        with torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=gpu):
            loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    _sync()
    seconds = time.perf_counter() - start
    return _record(
        task,
        "plain",
        recipe,
        model_dir,
        args,
        batch,
        args.steps,
        seconds,
        (source, target),
        {"batch": batch, "accumulation": 1},
    )


def _load_model(task: str, model_dir: Path):
    from transformers import AutoModelForSeq2SeqLM, AutoModelForSequenceClassification

    auto = AutoModelForSequenceClassification if task == "classifier" else AutoModelForSeq2SeqLM
    return auto.from_pretrained(model_dir)


def _record(task, route, train_cfg, model_dir, args, samples, steps, seconds, tokens, batching) -> dict:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir)
    source, target = tokens
    if task == "classifier":
        forward = flops.encoder_forward_flops(config, round(source))
    else:
        forward = flops.seq2seq_forward_flops(config, round(source), round(target))
    per_step = seconds / steps
    rate = samples / per_step
    achieved = flops.training_flops(forward) * rate
    return {
        "device": args.device,
        "model": task,
        "route": route,
        **batching,
        "samples_per_step": samples,
        "max_length": train_cfg.max_length,
        "max_target_length": train_cfg.max_target_length if task == "summarizer" else None,
        "mean_source_tokens": round(source, 1),
        "mean_target_tokens": round(target, 1) if target else None,
        "timed_steps": steps,
        "s_per_step": round(per_step, 4),
        "samples_per_s": round(rate, 2),
        "tokens_per_s": round(rate * (source + target)),
        "model_tflop_per_s": round(achieved / 1e12, 3),
        "mfu": round(achieved / args.peak_flops, 4),
        "peak_memory_mb": _peak_memory_mb(),
    }


def _sync() -> None:
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _reset_peak() -> None:
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.reset_peak_memory_stats()


def _peak_memory_mb() -> float:
    """Peak GPU memory allocated since the last reset; on the CPU the process's peak RSS (all of its life)."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return round(torch.cuda.max_memory_allocated() / 2**20)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def save(records: list[dict], info: dict, path: Path) -> None:
    """Put ``records`` under ``training`` in the results file, replacing those of the same device and model.

    Example:
        >>> p = Path(tempfile.mkdtemp()) / "r.json"
        >>> save([{"device": "cpu", "model": "classifier", "route": "plain"}], {"device": "cpu"}, p)
        >>> save([{"device": "cpu", "model": "classifier", "route": "recipe"}], {"device": "cpu"}, p)
        >>> [r["route"] for r in json.loads(p.read_text())["training"]["results"]]
        ['recipe']
    """
    old = json.loads(path.read_text()) if path.is_file() else {}
    section = old.setdefault("training", {"machines": {}, "results": []})
    replaced = {(r["device"], r["model"]) for r in records}
    section["machines"][info["device"]] = info
    section["results"] = [r for r in section["results"] if (r["device"], r["model"]) not in replaced] + records
    path.write_text(json.dumps(old, indent=2, ensure_ascii=False) + "\n")


def table(records: list[dict]) -> str:
    """The records as a markdown table.

    Example:
        >>> row = {"model": "classifier", "route": "plain", "batch": 4, "accumulation": 1, "max_length": 128,
        ...        "max_target_length": None, "s_per_step": 2.0, "samples_per_s": 2.0, "tokens_per_s": 256,
        ...        "model_tflop_per_s": 0.1, "mfu": 0.39, "peak_memory_mb": 3000}
        >>> print(table([row]).splitlines()[2])
        | classifier | plain | 4 x 1 | 128 | 2.000 | 2.00 | 256 | 0.100 | 39.0% | 3000 |
    """
    lines = [
        "| model | route | batch x accumulation | tokens in (→ out) | s/step | samples/s | tokens/s | model TFLOP/s "
        "| MFU | peak MB |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        length = f"{r['max_length']}" + (f" → {r['max_target_length']}" if r["max_target_length"] else "")
        lines.append(
            f"| {r['model']} | {r['route']} | {r['batch']} x {r['accumulation']} | {length} | {r['s_per_step']:.3f} "
            f"| {r['samples_per_s']:.2f} | {r['tokens_per_s']} | {r['model_tflop_per_s']:.3f} | {100 * r['mfu']:.1f}% "
            f"| {r['peak_memory_mb']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Build the models, time each recipe and its plain loop, write the results and print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="classifier,summarizer", help="comma-separated: classifier,summarizer")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (bf16, the GPU settings of training)")
    parser.add_argument("--steps", type=int, default=None, help="timed optimizer steps (30 on a GPU, 3 on the CPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed first steps (5 on a GPU, 1 on the CPU)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="per-device batch, no accumulation (default: the recipe's; on a GPU then re-split by train.auto_batch)",
    )
    parser.add_argument("--max-length", type=int, default=None, help="input tokens (default: the recipe's 512)")
    parser.add_argument("--max-target-length", type=int, default=None, help="summary tokens (default: 128)")
    parser.add_argument(
        "--peak-flops",
        type=float,
        default=None,
        help="device peak FLOP/s for MFU (default: the "
        "GPU's bf16 dense peak, e.g. H200 790e12; on the CPU a 2-core AVX-512 fp32 estimate)",
    )
    parser.add_argument("--work", type=Path, default=models.default_work_folder(), help="where the models are built")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results file (other records are kept)")
    args = parser.parse_args(argv)
    gpu = args.device != "cpu"
    if not gpu:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the trainer would take a visible GPU
    args.steps = args.steps or (30 if gpu else 3)
    args.warmup = args.warmup if args.warmup is not None else (5 if gpu else 1)
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    info = report.machine(args.device)
    if args.peak_flops is None:
        args.peak_flops = flops.gpu_peak(torch.cuda.get_device_name(0)) if gpu else CPU_PEAK
    info["peak_flops"] = args.peak_flops
    started, records = time.time(), []
    for task in args.models.split(","):
        builder = models.build_classifier if task == "classifier" else models.build_summarizer
        model_dir = builder(args.work / task, read_articles("train", limit=3000))
        recipe = run_recipe(task, model_dir, args)
        _say(f"{task} recipe: {recipe['samples_per_s']} samples/s, {recipe['s_per_step']} s/step")
        plain = run_plain(task, model_dir, args, recipe["batch"])
        _say(f"{task} plain loop: {plain['samples_per_s']} samples/s, {plain['s_per_step']} s/step")
        records += [recipe, plain]
    info["minutes"] = round((time.time() - started) / 60, 1)
    save(records, info, args.out)
    print(table(records))
    print(f"\n{info['cpu']}{', ' + info['gpu'] if 'gpu' in info else ''}; {info['minutes']} min; written to {args.out}")
    return 0


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())

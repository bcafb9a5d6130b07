"""What normalization v2 changes on the Persian news splits, how fast it is, and what it does to scores.

``python -m bench.normalization`` prints, and saves to ``bench/normalization.json``:

* **changes**: per split, how many rows v2 changes against v1 and how many repairs each v2 rule
  makes (one repair = one word boundary: a mark kept as a ZWNJ, or a space made a half-space);
* **throughput**: v1 and v2 on every article, title and summary, in MB of UTF-8 input per
  second of CPU time of this one process (best of ``--reps``), so other load on the machine
  counts less than in wall time;
* **baselines**: TF-IDF + linear SVM topic scores (test accuracy / macro-F1) and lead-1 ROUGE
  on the test split, with the data normalized by v1 and by v2, same seed. ROUGE is scored as
  training scores it (``training.metrics.rouge``), so only the text the baselines read differs.

``--tiny-classifier`` also trains the tiny classifier on the full splits once per version and seed
(``--tiny-seeds``; about 5 minutes a run on 2 busy cores) and reports the test scores of each
``metrics.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from bench.workloads import ROOT, data_dir
from inference.normalize import count_repairs, normalize

OUT = Path(__file__).resolve().parent / "normalization.json"
FIELDS = ("title", "article", "summary")
VERSIONS = (1, 2)


def read_rows(split: str) -> list[dict]:
    """The raw rows of ``split`` from the shared data (or the bundled sample).

    Example:
        >>> bool(read_rows("test"))
        True
    """
    with (data_dir() / f"{split}.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def changes(rows: list[dict]) -> dict:
    """Rows v2 changes against v1, repairs made by each rule, and rows touched by each rule.

    Example:
        >>> changes([{"article": "رسانه ها می گویند", "title": "خبر"}])["repairs"]
        {'plural': 1, 'verb_prefix': 1}
    """
    repairs: Counter = Counter()
    touched: Counter = Counter()
    changed_rows = words = 0
    for row in rows:
        texts = [row[field] for field in FIELDS if isinstance(row.get(field), str)]
        row_repairs = sum((count_repairs(text) for text in texts), Counter())
        repairs.update(row_repairs)
        touched.update(row_repairs.keys())
        changed_rows += any(normalize(text) != normalize(text, version=1) for text in texts)
        words += sum(len(normalize(text, version=1).split()) for text in texts)
    return {
        "rows": len(rows),
        "rows_changed": changed_rows,
        "words_v1": words,
        "repairs": dict(sorted(repairs.items())),
        "rows_by_rule": dict(sorted(touched.items())),
    }


def throughput(texts: list[str], reps: int) -> dict:
    """MB/s (UTF-8 input per CPU second, best of ``reps``) of v1 and v2 over ``texts``.

    Example:
        >>> sorted(throughput(["خبر"], reps=1))
        ['megabytes', 'v1_mb_per_s', 'v2_mb_per_s']
    """
    megabytes = sum(len(text.encode("utf-8")) for text in texts) / 1e6
    result = {"megabytes": round(megabytes, 2)}
    for version in VERSIONS:
        best = float("inf")
        for _ in range(reps):
            start = time.process_time()
            for text in texts:
                normalize(text, version=version)
            best = min(best, time.process_time() - start)
        result[f"v{version}_mb_per_s"] = round(megabytes / max(best, 1e-9), 2)
    return result


def baselines(version: int, seed: int = 0) -> dict:
    """TF-IDF topic scores and lead-1 ROUGE on the test split, data normalized with ``version``."""
    from training.data import Columns, load_split
    from training.evaluation.baselines import classification_scores, lead_baseline, rouge_scores, tfidf_baseline

    folder = data_dir()
    topics = Columns(text="article", label="category")
    train = load_split(str(folder / "train.jsonl"), topics, "train", version=version)
    test = load_split(str(folder / "test.jsonl"), topics, "test", version=version)
    predicted = tfidf_baseline(train["text"], train["label"], test["text"], seed=seed)
    topic = classification_scores(predicted, test["label"], draws=200, seed=seed)
    summaries = load_split(
        str(folder / "test.jsonl"), Columns(text="article", summary="summary"), "test", version=version
    )
    lead = rouge_scores(lead_baseline(summaries["text"], 1), summaries["summary"], draws=200, seed=seed)
    return {
        "tfidf_accuracy": round(topic["accuracy"], 4),
        "tfidf_macro_f1": round(topic["macro_f1"], 4),
        "lead1_rouge1": round(lead["rouge1"], 2),
        "lead1_rouge2": round(lead["rouge2"], 2),
        "lead1_rougeL": round(lead["rougeL"], 2),
    }


def tiny_classifier(version: int, work: Path, seed: int = 42) -> dict:
    """Train the tiny classifier on the full splits with ``version``; its test accuracy and macro-F1."""
    folder, out = data_dir(), work / f"tiny-classifier-v{version}-seed{seed}"
    command = [
        str(Path(sys.executable).parent / "khabar-train"), "configs/classifier/tiny.yaml",
        f"data.train_file={folder / 'train.jsonl'}", f"data.validation_file={folder / 'validation.jsonl'}",
        f"data.test_file={folder / 'test.jsonl'}", "train.epochs=2", "train.batch_size=16",
        "train.learning_rate=1e-3", f"train.seed={seed}", f"data.normalization_version={version}",
        f"output_dir={out}",
    ]  # fmt: skip
    subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    test = json.loads((out / "metrics.json").read_text(encoding="utf-8"))["test"]
    return {"accuracy": round(test["accuracy"], 4), "macro_f1": round(test["macro_f1"], 4)}


def processor() -> str:
    """The CPU model name (``/proc/cpuinfo``), or what ``platform`` knows.

    Example:
        >>> bool(processor())
        True
    """
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def table(results: dict) -> str:
    """The README table: one row per measure, v1 and v2 side by side."""
    lines = ["| measure | v1 | v2 |", "|---|---|---|"]
    speed = results["throughput"]
    lines.append(f"| throughput, MB/s (one core, CPU time) | {speed['v1_mb_per_s']} | {speed['v2_mb_per_s']} |")
    for key, label in [
        ("tfidf_accuracy", "TF-IDF + SVM test accuracy"),
        ("tfidf_macro_f1", "TF-IDF + SVM test macro-F1"),
        ("lead1_rouge1", "lead-1 ROUGE-1"),
        ("lead1_rouge2", "lead-1 ROUGE-2"),
        ("lead1_rougeL", "lead-1 ROUGE-L"),
    ]:
        lines.append(f"| {label} | {results['baselines']['v1'][key]} | {results['baselines']['v2'][key]} |")
    for seed, tiny in results.get("tiny_classifier", {}).items():
        v1, v2 = (f"{tiny[v]['accuracy']:.3f} / {tiny[v]['macro_f1']:.3f}" for v in ("v1", "v2"))
        lines.append(f"| tiny classifier test accuracy / macro-F1 ({seed}) | {v1} | {v2} |")
    lines += ["", "| split | rows | rows changed | " + " | ".join(_rules(results)) + " |"]
    lines.append("|---" * (3 + len(_rules(results))) + "|")
    for split, found in results["changes"].items():
        counts = [f"{found['repairs'].get(rule, 0)} ({found['rows_by_rule'].get(rule, 0)})" for rule in _rules(results)]
        lines.append(f"| {split} | {found['rows']} | {found['rows_changed']} | " + " | ".join(counts) + " |")
    return "\n".join(lines)


def _rules(results: dict) -> list[str]:
    return sorted({rule for found in results["changes"].values() for rule in found["repairs"]})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="throughput repetitions (the best counts)")
    parser.add_argument("--tiny-classifier", action="store_true", help="also train the tiny classifier per version")
    parser.add_argument("--tiny-seeds", type=int, nargs="+", default=[42], help="seeds of the tiny classifier runs")
    parser.add_argument("--work", type=Path, default=Path("models/bench-normalization"), help="tiny model folder")
    parser.add_argument("--out", type=Path, default=OUT, help="where the figures are saved")
    args = parser.parse_args(argv)

    splits = {split: read_rows(split) for split in ("train", "validation", "test")}
    results: dict = {"data": os.path.relpath(data_dir(), ROOT), "processor": processor()}
    results["changes"] = {split: changes(rows) for split, rows in splits.items()}
    texts = [row[field] for rows in splits.values() for row in rows for field in FIELDS if row.get(field)]
    results["throughput"] = throughput(texts, args.reps)
    results["baselines"] = {f"v{version}": baselines(version) for version in VERSIONS}
    if args.tiny_classifier:
        results["tiny_classifier"] = {
            f"seed {seed}": {f"v{version}": tiny_classifier(version, args.work, seed) for version in VERSIONS}
            for seed in args.tiny_seeds
        }
    args.out.write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(table(results))
    print(f"\nrepairs per rule, rows touched in brackets; saved to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

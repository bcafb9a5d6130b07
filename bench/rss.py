"""Does ``khabar predict`` hold its memory flat as the input grows? ``python -m bench.rss``.

Runs ``khabar predict`` (both tasks, or ``--tasks``) on 1,000 and on 10,000 rows built by
cycling the data's articles, each in a fresh process, and records the peak RSS of each in
``bench/results.json`` under ``predict_rss``, keyed by ``--tasks``. Tiny models suffice: what is
measured is whether rows accumulate in memory, which does not depend on the model's size.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.run import RESULTS
from bench.workloads import data_dir

# Runs the CLI in this child process and reports the child's own peak RSS (KB on Linux) last.
_CHILD = (
    "import resource, sys\n"
    "from inference.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def write_rows(path: Path, n: int) -> Path:
    """``n`` JSONL rows (``id``, ``article``) cycling through the test split's articles.

    Example:
        >>> import tempfile, pathlib
        >>> p = write_rows(pathlib.Path(tempfile.mkdtemp()) / "rows.jsonl", 3)
        >>> len(p.read_text(encoding="utf-8").splitlines())
        3
    """
    with (data_dir() / "test.jsonl").open(encoding="utf-8") as f:
        articles = [json.loads(line)["article"] for line in f]
    with path.open("w", encoding="utf-8") as out:
        for i in range(n):
            out.write(json.dumps({"id": i, "article": articles[i % len(articles)]}, ensure_ascii=False) + "\n")
    return path


def peak_rss_mb(rows: Path, flags: list[str]) -> float:
    """Peak RSS in MB of one ``khabar predict`` run over ``rows``."""
    output = rows.with_suffix(".out.jsonl")
    command = [sys.executable, "-c", _CHILD, "predict", str(rows), "-o", str(output), "--overwrite", "--quiet"]
    done = subprocess.run([*command, *flags], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"khabar predict failed: {done.stderr.strip()[-500:]}")
    return round(int(done.stderr.strip().splitlines()[-1]) / 1024, 1)


def main(argv: list[str] | None = None) -> int:
    """Measure the peak RSS of ``khabar predict`` at each size and add it to the results file."""
    parser = argparse.ArgumentParser(prog="python -m bench.rss", description=__doc__.split("\n\n")[0])
    parser.add_argument("--classifier", type=Path, required=True, help="a (tiny) classifier directory")
    parser.add_argument("--summarizer", type=Path, required=True, help="a (tiny) summarizer directory")
    parser.add_argument("--rows", default="1000,10000", help="comma-separated input sizes")
    parser.add_argument("--tasks", default="topic,summary", help="what khabar predict computes")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    # Short greedy summaries keep 10k rows to minutes; memory growth would come from the rows.
    flags = ["--classifier", str(args.classifier), "--summarizer", str(args.summarizer), "--device", "cpu"]
    flags += ["--tasks", args.tasks, "--num-beams", "1", "--max-new-tokens", "8"]
    measured = {}
    with tempfile.TemporaryDirectory() as scratch:
        for n in map(int, args.rows.split(",")):
            measured[n] = peak_rss_mb(write_rows(Path(scratch) / f"rows-{n}.jsonl", n), flags)
            print(f"{n:,} rows: peak RSS {measured[n]} MB", file=sys.stderr, flush=True)
    sizes = sorted(measured)
    growth = round(measured[sizes[-1]] / measured[sizes[0]] - 1, 4)
    results = json.loads(args.out.read_text()) if args.out.is_file() else {"machines": {}, "results": []}
    # One entry per --tasks, so the topic-only and the full runs sit side by side.
    entry = {"flags": flags, "peak_rss_mb": measured, "growth": growth}
    results["predict_rss"] = {**results.get("predict_rss", {}), args.tasks: entry}
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(entry))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What the benchmark writes: machine facts, work per document, the results file and the table."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path


def machine(device: str) -> dict:
    """CPU model and core counts (and the GPU when one ran), with engine versions.

    Example:
        >>> machine("cpu")["logical_cores"] >= 1
        True
    """
    import torch
    import transformers

    info = {
        "device": device,
        "cpu": _cpu_model(),
        "physical_cores": _physical_cores(),
        "logical_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    for name in ("onnxruntime", "ctranslate2"):
        try:
            info[name] = __import__(name).__version__
        except ImportError:
            info[name] = None
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _physical_cores() -> int:
    import torch

    # torch's default intra-op thread count is the number of physical cores.
    return torch.get_num_threads()


def encoder_gflop(lengths: list[int], layers: int = 12, hidden: int = 768, intermediate: int = 3072) -> float:
    """fp32-equivalent GFLOP to encode documents of these token lengths with a BERT encoder.

    Per layer and token: the four attention projections and the two feed-forward matrices
    (2 FLOP per multiply-add), plus the attention scores and weighted sum, which grow with length.

    Example:
        >>> round(encoder_gflop([512]))  # ParsBERT-base on one 512-token article
        97
    """
    dense = 2 * (4 * hidden * hidden + 2 * hidden * intermediate)
    return sum(layers * (n * dense + 4 * n * n * hidden) for n in lengths) / 1e9


def save(records: list[dict], info: dict, path: Path) -> None:
    """Write ``records`` into ``path``, replacing earlier records of the same device and model, keeping others.

    So ``--models classifier`` reruns the classifier without dropping the summarizer's numbers.

    Example:
        >>> import tempfile, pathlib, json
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "r.json"
        >>> save([{"device": "cpu", "model": "classifier", "x": 1}], {"device": "cpu"}, p)
        >>> save([{"device": "cuda", "model": "classifier", "x": 2}], {"device": "cuda"}, p)
        >>> save([{"device": "cpu", "model": "classifier", "x": 3}], {"device": "cpu"}, p)
        >>> [(r["device"], r["x"]) for r in json.loads(p.read_text())["results"]]
        [('cuda', 2), ('cpu', 3)]
    """
    old = json.loads(path.read_text()) if path.is_file() else {"machines": {}, "results": []}
    device = info["device"] + (f" {info['isa_limit']}" if info.get("isa_limit") else "")
    # A run capped with --isa is another kind of processor: it keeps the native run's records.
    replaced = {(r["device"], r.get("isa"), r["model"]) for r in records}
    old["machines"][device] = info
    old["results"] = [r for r in old["results"] if (r["device"], r.get("isa"), r.get("model")) not in replaced]
    old["results"] += records
    path.write_text(json.dumps(old, indent=2, ensure_ascii=False) + "\n")


def table(records: list[dict]) -> str:
    """The results as a markdown table.

    Example:
        >>> row = {"model": "classifier", "workload": "512", "decoding": None, "route": "naive",
        ...        "docs": 4, "docs_per_s": {"median": 1.0, "min": 0.9, "max": 1.1},
        ...        "ratio_to_naive": {"median": 1.0, "min": 1.0, "max": 1.0}, "peak_rss_mb": 900.0,
        ...        "cpu_seconds_per_doc": {"median": 1.9},
        ...        "gflop_per_s": 97, "label": "naive (transformers, batch 1)"}
        >>> print(table([row]).splitlines()[2])
        | classifier | 512 | - | naive (transformers, batch 1) | 4 | 1.00 (0.90–1.10) | 1.00× | 1.90 | 900 | 97 |
    """
    lines = [
        "| model | workload | decoding | route | docs | docs/s median (min–max) | × naive | CPU-s/doc | peak RSS MB "
        "| GFLOP/s |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        rate, ratio = r["docs_per_s"], r["ratio_to_naive"]
        lines.append(
            f"| {r['model']} | {r['workload']} | {r['decoding'] or '-'} | {r['label']} | {r['docs']} "
            f"| {rate['median']:.2f} ({rate['min']:.2f}–{rate['max']:.2f}) | {ratio['median']:.2f}× "
            f"| {r['cpu_seconds_per_doc']['median']:.2f} | {r['peak_rss_mb']:.0f} | {r.get('gflop_per_s') or '-'} |"
        )
    return "\n".join(lines)

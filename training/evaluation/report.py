"""Write an evaluation result as ``metrics.json``, ``report.md``, ``predictions.jsonl`` and PNG plots.

``report.md`` is meant to be read on its own: what was evaluated, the model beside its baselines
with 95% bootstrap intervals, the plots, and (for summaries) a few articles side by side.

Example:
    >>> format_score(0.8712, (0.84, 0.9))
    '0.871 [0.840, 0.900]'
    >>> format_score(26.51, (25.9, 27.2), digits=1)
    '26.5 [25.9, 27.2]'
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure

from inference.batch.atomic import write_text_atomically
from training.evaluation.plots import plot_confusion_matrix

CLASSIFICATION_COLUMNS = {"accuracy": "accuracy", "macro_f1": "macro-F1", "weighted_f1": "weighted-F1"}
ROUGE_COLUMNS = {"rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L", "rougeLsum": "ROUGE-Lsum"}


def format_score(value: float, interval: Sequence[float] | None = None, digits: int = 3) -> str:
    """A score and its interval; three decimals suit 0-1 scores, one suits 0-100 ROUGE.

    Example:
        >>> format_score(0.5)
        '0.500'
    """
    text = f"{value:.{digits}f}"
    if interval is not None:
        text += f" [{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]"
    return text


# What write_report writes. The plots come first: a first report interrupted after them leaves
# only its own pictures, so only the other files tell a foreign file from a report's.
REPORT_FILES = ("metrics.json", "report.md", "predictions.jsonl")
PLOTS = {
    "classification": {"confusion_matrix.png": "confusion matrix", "per_class_f1.png": "F1 per class"},
    "summarization": {"lengths.png": "summary lengths"},
}


def write_report(result: dict, out_dir: str | Path) -> list[Path]:
    """Write every report file for ``result`` (from ``training.evaluation``) into ``out_dir``; return their paths.

    Example:
        >>> import tempfile
        >>> from training.evaluation import evaluate_summarization
        >>> result = evaluate_summarization(["الف ب. ج د."], ["الف ب"], ["الف"], draws=10)
        >>> sorted(p.name for p in write_report(result, tempfile.mkdtemp()))
        ['lengths.png', 'metrics.json', 'predictions.jsonl', 'report.md']
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # report.md is the mark of a finished report: gone while the files change, written last, so an
    # interrupted rewrite never leaves an old report.md beside new metrics (or the other way round).
    (out / "report.md").unlink(missing_ok=True)
    plots = PLOTS[result["kind"]]
    if result["kind"] == "classification":
        plot_confusion_matrix(result["systems"]["model"]["confusion_matrix"], out / "confusion_matrix.png")
        plot_per_class_f1(result["systems"], out / "per_class_f1.png")
    else:
        plot_lengths(result["predictions"]["model"], result["references"], out / "lengths.png")
    per_row = ("predictions", "references", "examples", "lines")  # in predictions.jsonl, one line a row
    metrics = {k: v for k, v in result.items() if k not in per_row}
    metrics["plots"] = list(plots)
    write_text_atomically(out / "metrics.json", json.dumps(metrics, ensure_ascii=False, indent=2) + "\n")
    _write_predictions(result, out / "predictions.jsonl")
    write_text_atomically(out / "report.md", render_markdown(result, plots))
    return [out / name for name in (*REPORT_FILES, *plots)]


def _write_predictions(result: dict, path: Path) -> None:
    """One line per evaluated row: reference and every output.

    ``row`` is the position among the evaluated rows; ``line`` where the row is in the data file
    (rows without text or target are skipped, so positions and lines part ways after the first).
    """
    systems = result["predictions"]
    lines = result.get("lines") or [None] * len(result["references"])
    with path.open("w", encoding="utf-8") as f:
        for index, reference in enumerate(result["references"]):
            where = {"row": index, "line": lines[index]}
            row = {**where, "reference": reference, **{name: systems[name][index] for name in systems}}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def render_markdown(result: dict, plots: dict[str, str]) -> str:
    """The whole ``report.md`` text.

    Example:
        >>> from training.evaluation import evaluate_classification
        >>> result = evaluate_classification(["a", "b"], ["x", "y"], ["x", "x"], draws=10)
        >>> "| model | 0.500" in render_markdown(result, {})
        True
    """
    classification = result["kind"] == "classification"
    columns = CLASSIFICATION_COLUMNS if classification else {**ROUGE_COLUMNS, "mean_length": "mean length (words)"}
    lines = [f"# Evaluation of `{result['model']}` ({result['kind']})", "", *_header(result), "", "## Scores", ""]
    lines += [_score_legend(result), "", *_score_table(result, columns), ""]
    lines += [f"- **{name}**: {text}" for name, text in result["descriptions"].items()]
    lines += [f"- ⚠ {warning}" for warning in result.get("warnings", [])]
    if classification:
        lines += ["", "## Per class (model)", "", *_per_class_table(result["systems"])]
    else:
        lines += ["", *_readme_rouge(result["systems"])]
    for name, title in plots.items():
        lines += ["", f"## {title.capitalize()}", "", f"![{title}]({name})"]
    if result.get("examples"):
        lines += ["", "## Examples", "", "Rows picked at random (seeded), not the best or the worst.", ""]
        lines += [line for example in result["examples"] for line in _example(example)]
    return "\n".join(lines) + "\n"


def _header(result: dict) -> list[str]:
    skipped = result["skipped_rows"]
    rows = f"{result['rows']}"
    if result.get("limit"):
        rows += f" (the first {result['limit']} usable rows, as asked with --limit)"
    fields = " or ".join(f"`{c}`" for c in result["required_columns"])
    return [
        "| | |",
        "|---|---|",
        f"| model | `{result['model']}` |",
        *([f"| engine | {result['engine']} (`--backend` picks another) |"] if result.get("engine") else []),
        f"| data | `{result['data']}` |",
        f"| columns | {', '.join(f'{role} `{name}`' for role, name in result['columns'].items())} |",
        f"| rows evaluated | {rows} |",
        f"| rows skipped | {skipped} (missing or empty {fields}) |",
        *([f"| decoding | {_decoding(result['decoding'])} |"] if "decoding" in result else []),
        f"| date | {result['date']} |",
        f"| khabar | {result['khabar_version']} |",
    ]


def _decoding(decoding: dict | str) -> str:
    if isinstance(decoding, str):
        return decoding
    return ", ".join(f"{key} {value}" for key, value in decoding.items()) + " (overriding the saved settings)"


def _score_legend(result: dict) -> str:
    boot = result["bootstrap"]
    unit = "0-1" if result["kind"] == "classification" else "F1, 0-100, mean over articles"
    legend = (
        f"Scores ({unit}) on the same rows for every system; in brackets the {boot['confidence']:.0%} "
        f"bootstrap interval ({boot['draws']} resamples of the rows, seed {boot['seed']}). "
        "Two systems whose intervals overlap may not really differ."
    )
    if result["kind"] == "summarization":
        legend += (
            " ROUGE words: normalized text, runs of letters and digits (ZWNJ and punctuation separate"
            " words), as the trainer's `metrics.json` counts them."
        )
    return legend


def _score_table(result: dict, columns: dict[str, str]) -> list[str]:
    lines = ["| system | " + " | ".join(columns.values()) + " |", "|---" * (len(columns) + 1) + "|"]
    digits = 3 if result["kind"] == "classification" else 1
    for name, scores in result["systems"].items():
        cells = [
            f"{scores[key]:.1f}" if key == "mean_length" else format_score(scores[key], scores[f"{key}_ci"], digits)
            for key in columns
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if "reference_mean_length" in result:
        dashes = ["–"] * (len(columns) - 1)
        lines.append(
            "| reference summaries | " + " | ".join([*dashes, f"{result['reference_mean_length']:.1f}"]) + " |"
        )
    return lines


def _per_class_table(systems: dict) -> list[str]:
    others = [name for name in systems if name != "model"]
    head = "| label | support | precision | recall | F1 | " + " | ".join(f"F1 {n}" for n in others) + " |"
    lines = [head, "|---" * (5 + len(others)) + "|"]
    for label, s in systems["model"]["per_class"].items():
        baseline_f1 = [format_score(systems[n]["per_class"].get(label, {}).get("f1", 0.0)) for n in others]
        cells = [str(s["support"]), *(format_score(s[k]) for k in ("precision", "recall", "f1")), *baseline_f1]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def _readme_rouge(systems: dict) -> list[str]:
    """The same outputs scored as the data README's reference figures count words, to compare with those."""
    lines = [
        "The persian-news README's reference figures split words at spaces and ZWNJ only, punctuation "
        "kept on its word, which gives lower figures. The same outputs scored that way:",
        "",
        "| system | " + " | ".join(ROUGE_COLUMNS.values()) + " |",
        "|---" * (len(ROUGE_COLUMNS) + 1) + "|",
    ]
    for name, scores in systems.items():
        lines.append(f"| {name} | " + " | ".join(f"{scores['readme_rouge'][k]:.1f}" for k in ROUGE_COLUMNS) + " |")
    return lines


def _example(example: dict) -> list[str]:
    lines = [f"### Row {example['row']}", "", "| | |", "|---|---|"]
    lines += [f"| {name} | {_cell(text)} |" for name, text in example.items() if name != "row"]
    return [*lines, ""]


def _cell(text: str) -> str:
    """Text that stays inside one Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ") or "*(empty)*"


def plot_per_class_f1(systems: dict, path: Path) -> Path:
    """Grouped bars: F1 of each label for the model and every baseline.

    Example:
        >>> import tempfile, pathlib
        >>> systems = {"model": {"per_class": {"sports": {"f1": 0.9}}}, "baseline": {"per_class": {}}}
        >>> plot_per_class_f1(systems, pathlib.Path(tempfile.mkdtemp()) / "f1.png").read_bytes()[:4]
        b'\x89PNG'
    """
    labels = list(systems["model"]["per_class"])
    fig = Figure(figsize=(max(6.0, 0.9 * len(labels) + 2), 4), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / len(systems)
    for k, (name, scores) in enumerate(systems.items()):
        f1 = [scores["per_class"].get(label, {}).get("f1", 0.0) for label in labels]
        ax.bar([i + k * width for i in range(len(labels))], f1, width, label=name)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(labels))], labels, rotation=45, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("F1")
    ax.set_title("F1 per class (labels by support, most frequent first)")
    ax.legend()
    fig.savefig(path, dpi=120)
    return path


def plot_lengths(generated: Sequence[str], references: Sequence[str], path: Path) -> Path:
    """Overlaid histograms of generated and reference summary lengths in words.

    Example:
        >>> import tempfile, pathlib
        >>> plot_lengths(["یک دو", "سه"], ["یک دو سه", "چهار"], pathlib.Path(tempfile.mkdtemp()) / "l.png").suffix
        '.png'
    """
    generated_lengths = [len(text.split()) for text in generated]
    reference_lengths = [len(text.split()) for text in references]
    top = max([*generated_lengths, *reference_lengths, 1])
    bins = range(0, top + 2, max(1, (top + 1) // 30))
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    ax.hist(reference_lengths, bins=bins, alpha=0.6, label="reference")
    ax.hist(generated_lengths, bins=bins, alpha=0.6, label="model")
    ax.set_xlabel("summary length (words)")
    ax.set_ylabel("articles")
    ax.set_title("Generated vs reference summary lengths")
    ax.legend()
    fig.savefig(path, dpi=120)
    return path

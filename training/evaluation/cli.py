"""``khabar-train evaluate``: score a model beside the obvious baselines and write a report a reader trusts.

Usage::

    khabar-train evaluate --model models/classifier --data test.jsonl \\
        --baseline-train train.jsonl -o reports/classifier
    khabar-train evaluate --model models/summarizer --data test.jsonl --limit 200 -o reports/summarizer

The kind of model (topic classifier or summarizer) is read from its ``config.json``. The report
folder gets ``metrics.json``, ``report.md``, ``predictions.jsonl`` and PNG plots. Every score comes
with a 95% bootstrap interval over the evaluated rows, so a reader can tell a real gap from noise.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from inference.cli import decoding_flag
from inference.model_checks import BrokenModelError, check_model_files
from inference.normalize import join_title, load_normalization
from training.checkpoints import checkpoint_folders
from training.config import ConfigError
from training.data import Columns, DataError, load_split
from training.distributed import is_main_process, world_size
from training.evaluation.predict import generate_summaries, predict_topics
from training.evaluation.report import PLOTS, REPORT_FILES, write_report
from training.evaluation.rows import load_rows
from training.evaluation.scoring import evaluate_classification, evaluate_summarization
from training.model_checks import check_model_source
from training.model_kind import detect_kind
from training.output_dir import check_writable_folder, saved_run_config

T = TypeVar("T")
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command stopped by Ctrl-C
# report.md is written last (training.evaluation.report), so a folder without it is not a finished report.
INTERRUPTED = "interrupted; no new report was written to {output} (a report is finished once report.md is there)"
MAX_SEED = 2**32 - 1  # the largest random_state scikit-learn takes (the TF-IDF baseline's SVM)
DESCRIPTION = "Score a classifier or summarizer beside simple baselines; write metrics.json, report.md, plots."


def build_parser() -> argparse.ArgumentParser:
    """The ``khabar-train evaluate`` argument parser.

    Example:
        >>> build_parser().parse_args(["--model", "m", "--data", "d.jsonl", "-o", "out"]).label_column
        'category'
    """
    parser = argparse.ArgumentParser(prog="khabar-train evaluate", description=DESCRIPTION)
    return add_arguments(parser)


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The ``khabar-train evaluate`` flags, added to ``parser``.

    Example:
        >>> add_arguments(argparse.ArgumentParser()).parse_args(["--model", "m", "--data", "d", "-o", "o"]).bootstrap
        1000
    """
    parser.add_argument(
        "--model", required=True, type=Path, help="trained model directory (its config.json tells the kind)"
    )
    parser.add_argument("--data", required=True, help="labelled JSONL/CSV/TSV/Parquet file (or a datasets hub id)")
    parser.add_argument("-o", "--output", required=True, type=Path, help="report folder to write")
    parser.add_argument("--text-column", default="article", help="column holding the article (default: article)")
    parser.add_argument("--label-column", default="category", help="topic column, for classifiers (default: category)")
    parser.add_argument("--summary-column", default="summary", help="reference summary column (default: summary)")
    parser.add_argument(
        "--title-column",
        help="headline column, prepended to the article as in training (classifiers; default: the column the "
        "model was trained with, from its config.yaml; none: no headlines)",
    )
    parser.add_argument("--split", default="test", help="split to read when --data is a hub id (default: test)")
    parser.add_argument("--limit", type=_positive, help="evaluate only the first N usable rows")
    parser.add_argument("--baseline-train", help="training file for the majority and TF-IDF baselines (classifiers)")
    batch_help = "rows per model call (16 topics; summaries: 16 greedy, 8 with 4 beams)"
    parser.add_argument("--batch-size", type=_positive, help=batch_help)
    parser.add_argument("--device", help="torch device, e.g. cpu, cuda, cuda:1 (default: the best available)")
    parser.add_argument(
        "--backend",
        choices=["auto", "torch", "onnx", "ctranslate2", "fast"],
        default="auto",
        help="engine to score, as khabar predict --backend (default: auto, what khabar predict runs; "
        "torch scores the trained weights themselves)",
    )
    parser.add_argument(
        "--num-beams", type=decoding_flag("num_beams"), help="summarizers: beams (default: the model's saved setting)"
    )
    parser.add_argument(
        "--max-new-tokens",
        type=decoding_flag("max_new_tokens"),
        help="summarizers: longest summary in tokens (default: the model's setting)",
    )
    parser.add_argument("--bootstrap", type=_positive, default=1000, help="bootstrap resamples (default: 1000)")
    parser.add_argument(
        "--seed", type=_seed, default=0, help="seed for resampling, examples and baselines (default: 0)"
    )
    return parser


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {value!r}")
    return int(value)


def _seed(value: str) -> int:
    # numpy refuses a negative seed and scikit-learn one past 2**32 - 1, both only after the slow model pass.
    if not value.isdigit() or int(value) > MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected a whole number from 0 to {MAX_SEED}, got {value!r}")
    return int(value)


def run(args: argparse.Namespace) -> dict:
    """Evaluate as the parsed command line asks, write the report folder and return the result.

    Example:
        >>> args = build_parser().parse_args(["--model", "m", "--data", "d.jsonl", "-o", "out"])
        >>> run(args)
        Traceback (most recent call last):
        training.data.DataError: m: not a model directory (no config.json)
    """
    kind = detect_kind(args.model)
    _check_flags_fit(args, kind)
    # Before any data is read: a model that asks to run its own code, or has broken weights, is refused.
    check_model_source(str(args.model), "--model")
    try:  # no tokenizer or no weights: the model would load as garbage, or fail after the data is read
        check_model_files(args.model)
    except BrokenModelError as error:
        raise ConfigError(f"--model: {error}") from None
    if args.output.exists() and not args.output.is_dir():
        raise DataError(f"{args.output}: exists and is not a folder (-o needs a folder for the report)")
    _check_not_a_model_folder(args.output)
    _check_only_a_report_is_replaced(args.output, args.data)
    # The report is written after the slow model pass: a folder it cannot write must fail first.
    check_writable_folder(args.output, "-o")
    columns = _columns(args, kind)
    # Read every file before the slow model runs, so a wrong column fails in a second, not an hour.
    columns, rows, skipped = _load_rows(args, columns)
    train = _baseline_train(args, columns) if kind == "classification" else None
    # The model sees the headline and the article laid out as in training; baselines see the same rows.
    inputs = [join_title(title, text) for title, text in zip(rows["title"], rows["text"], strict=True)]
    engine: dict[str, str] = {}
    if kind == "classification":
        predictions = predict_topics(args.model, inputs, args.batch_size or 16, args.device, args.backend, engine)
        result = evaluate_classification(inputs, rows["label"], predictions, train, args.bootstrap, args.seed)
        result["warnings"] += _label_warnings(args.model, rows["label"])
    else:
        if args.baseline_train:
            print("khabar-train evaluate: note: lead-k baselines need no --baseline-train; ignored", file=sys.stderr)
        decoding = {k: v for k, v in (("num_beams", args.num_beams), ("max_new_tokens", args.max_new_tokens)) if v}
        summaries = generate_summaries(
            args.model, inputs, args.batch_size, args.device, args.backend, engine, **decoding
        )
        # Lead-k takes the article's own first sentences, never the headline.
        result = evaluate_summarization(rows["text"], rows["summary"], summaries, args.bootstrap, args.seed)
        result["decoding"] = decoding or "the model's saved settings"
    result.update(
        model=str(args.model),
        engine=next(iter(engine.values()), None),  # the scores are this engine's: int8 differs from the weights a bit
        data=str(args.data),
        columns={role: name for role, name in vars(columns).items() if name},
        required_columns=[columns.text, columns.target],
        skipped_rows=skipped,
        limit=args.limit,
        lines=rows["line"],
    )
    write_report(result, args.output)
    return result


def _check_flags_fit(args: argparse.Namespace, kind: str) -> None:
    """Refuse decoding flags for a classifier: they would be ignored, and usually mean the wrong --model."""
    decoding = (("--num-beams", args.num_beams), ("--max-new-tokens", args.max_new_tokens))
    asked = [flag for flag, value in decoding if value]
    if kind == "classification" and asked:
        raise DataError(f"{asked[0]} is for summarizers, but --model {args.model} is a topic classifier")
    from inference.backends import CLASSIFIER_BACKENDS, SUMMARIZER_BACKENDS

    model, backends = (
        ("classifier", CLASSIFIER_BACKENDS) if kind == "classification" else ("summarizer", SUMMARIZER_BACKENDS)
    )
    if args.backend not in backends:
        raise DataError(
            f"--backend {args.backend}: runs no {model}; --model {args.model} is one ({', '.join(backends)})"
        )


def _check_not_a_model_folder(output: Path) -> None:
    """Refuse to write a report into a model directory: its metrics.json would replace the training one.

    The model card (``khabar-train card``) reads a model's training ``metrics.json``; the report's has
    another layout, so writing there would silently break the card and lose the training scores.
    """
    if (output / "config.json").is_file():
        raise DataError(
            f"-o {output}: is a model directory (it has config.json); the report's metrics.json would replace "
            "the model's own, so pick another folder, e.g. reports/NAME"
        )
    if checkpoint_folders(output):
        raise DataError(
            f"-o {output}: is a training run's output_dir (it holds checkpoint folders); the model it is "
            "training would be written over the report, so pick another folder, e.g. reports/NAME"
        )


def _check_only_a_report_is_replaced(output: Path, data: str) -> None:
    """Refuse an -o folder whose files of the report's names are not an earlier report (or are --data itself).

    An earlier report (``report.md``, or the report's ``metrics.json`` left by an interrupted rewrite)
    is replaced, as a rerun should; anything else of those names, such as a ``khabar predict`` output
    called ``predictions.jsonl``, would be lost.
    """
    plots = [name for kind in PLOTS.values() for name in kind]
    for name in (*REPORT_FILES, *plots):
        if (output / name).is_file() and Path(data).is_file() and os.path.samefile(output / name, data):
            raise DataError(f"-o {output}: writing {name} would replace --data {data}; pick another folder")
    present = [name for name in REPORT_FILES if (output / name).is_file()]  # plots: see REPORT_FILES
    if present and not _is_report(output):
        raise DataError(
            f"-o {output}: holds {present[0]}, which is not from an earlier report and would be replaced; "
            "pick a new or empty folder, e.g. reports/NAME"
        )


def _is_report(folder: Path) -> bool:
    if (folder / "report.md").is_file():
        return True
    try:
        metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(metrics, dict) and "systems" in metrics


def _columns(args: argparse.Namespace, kind: str) -> Columns:
    """The columns the flags name: the label for a classifier, the summary for a summarizer.

    A classifier trained on headlines reads them from the column it was trained with (its
    ``config.yaml``) unless ``--title-column`` says otherwise (``none``: no headlines); scored
    without them it would be understated, and silently.
    """
    target = {"label": args.label_column} if kind == "classification" else {"summary": args.summary_column}
    title = args.title_column
    if title is None and kind == "classification":
        title = _trained_title_column(args.model)
    return Columns(text=args.text_column, title=None if title in (None, "none") else title, **target)


def _load_rows(args: argparse.Namespace, columns: Columns) -> tuple[Columns, dict, int]:
    """:func:`load_rows` with ``columns``; headlines the model was trained with but the data lacks are
    left out with a warning (the flag given by the user is not second-guessed)."""
    normalization = _normalization(args.model)
    outcome = "scored without them, it may score lower than it would"
    read = lambda cols: load_rows(args.data, cols, args.split, args.limit, normalization)  # noqa: E731
    used, (rows, skipped) = _with_trained_headlines(args, args.data, columns, read, outcome)
    if args.title_column is None and used.title is not None:
        print(
            f"khabar-train evaluate: note: headlines from column {used.title!r}, as {args.model} was trained "
            "(--title-column none leaves them out)",
            file=sys.stderr,
        )
    return used, rows, skipped


def _trained_title_column(model_dir: Path) -> str | None:
    """``data.title_column`` of the run that trained ``model_dir`` (its ``config.yaml``); None when unknown."""
    data = saved_run_config(model_dir).get("data")
    title = data.get("title_column") if isinstance(data, dict) else None
    return title if isinstance(title, str) and title else None


def _with_trained_headlines(
    args: argparse.Namespace, source: str, columns: Columns, read: Callable[[Columns], T], outcome: str
) -> tuple[Columns, T]:
    """``read(columns)``, and the columns it used. When the headline column came from the model (not
    from ``--title-column``) and ``source`` lacks it, ``source`` is read without headlines, saying
    ``outcome``: the flag a user gave is not second-guessed."""
    try:
        return columns, read(columns)
    except DataError as error:
        lacks = columns.title is not None and f"column {columns.title!r} not found" in str(error)
        if args.title_column is not None or not lacks:
            raise
    print(
        f"khabar-train evaluate: warning: {args.model} was trained with headlines (column {columns.title!r}), "
        f"which {source} lacks; {outcome}",
        file=sys.stderr,
    )
    columns = dataclasses.replace(columns, title=None)
    return columns, read(columns)


def _baseline_train(args: argparse.Namespace, columns: Columns) -> tuple[list[str], list[str]] | None:
    """The TF-IDF baseline's training texts (laid out like the model's inputs) and labels.

    A baseline file without the headlines the model was trained with (not named by the user) is
    read without them, with a warning.
    """
    source = args.baseline_train
    if not source:
        return None
    read = lambda cols: load_split(source, cols, split="train")  # noqa: E731
    outcome = "the TF-IDF baseline learns from articles alone"
    columns, data = _with_trained_headlines(args, source, columns, read, outcome)
    if len(set(data["label"])) < 2:  # checked here, before the model's predictions, not after them
        raise DataError(
            f"{source}: column {columns.label!r} has {len(set(data['label']))} distinct label(s); "
            "the TF-IDF baseline of --baseline-train needs at least two"
        )
    titles = data["title"] if columns.title else [None] * len(data)
    return [join_title(t, x) for t, x in zip(titles, data["text"], strict=True)], data["label"]


def _normalization(model_dir: Path) -> dict:
    try:
        return load_normalization(model_dir)
    except ValueError as error:  # an unknown record: the model would refuse it at load too
        raise DataError(str(error)) from None


def _label_warnings(model_dir: Path, references: Sequence[str]) -> list[str]:
    """A model can never predict a label missing from its ``id2label``: usually the wrong column or data."""
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    known = {str(label) for label in (config.get("id2label") or {}).values()}
    unknown = sorted(set(references) - known)
    if not unknown:
        return []
    share = sum(label in unknown for label in references) / len(references)
    return [f"{share:.0%} of the rows have labels the model does not know: {', '.join(unknown[:10])}"]


def main(argv: list[str] | None = None) -> int:
    """``khabar-train evaluate ...``; returns the exit code (2 with a one-line message for user mistakes).

    Example:
        >>> main(["--model", "no-such-dir", "--data", "d.jsonl", "-o", "out"])
        2
    """
    return execute(build_parser().parse_args(argv))


def execute(args: argparse.Namespace) -> int:
    """Run a parsed ``khabar-train evaluate`` and print its one-line outcome; returns the exit code.

    Example:
        >>> execute(build_parser().parse_args(["--model", "no-such-dir", "--data", "d.jsonl", "-o", "out"]))
        2
    """
    if world_size() > 1:
        # The report needs every row in one place (bootstrap intervals, baselines, examples); the
        # model pass is inference only, which `khabar predict` already spreads over processes.
        if is_main_process():
            print(
                f"khabar-train evaluate: error: runs as one process, not under torchrun or accelerate launch "
                f"(WORLD_SIZE={world_size()}); run it directly, with --device cuda:0 for a GPU",
                file=sys.stderr,
            )
        return 2
    from inference.loading import DeviceError, ModelNotFoundError

    try:
        result = run(args)
    except (ConfigError, DataError, DeviceError, ModelNotFoundError, BrokenModelError) as error:
        print(f"khabar-train evaluate: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        from training.cli import close_progress_bars  # here: training.cli imports this module

        close_progress_bars()  # else the bar redraws itself over the message
        print(f"khabar-train evaluate: {INTERRUPTED.format(output=args.output)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    model = result["systems"]["model"]
    headline = "accuracy" if result["kind"] == "classification" else "rouge1"
    print(
        f"{result['kind']}: {result['rows']} rows, {headline} {model[headline]:.3g}; report in {args.output}/report.md"
    )
    for warning in result.get("warnings", []):  # in the report too, but a score of 0 should not need opening it
        print(f"khabar-train evaluate: warning: {warning}", file=sys.stderr)
    return 0

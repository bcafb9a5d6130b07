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
import json
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import numpy as np

import inference
from inference.normalize import join_title, load_normalization
from training.baselines import classification_scores, lead_baseline, majority_baseline, rouge_scores, tfidf_baseline
from training.config import ConfigError
from training.data import Columns, DataError, load_split, read_records
from training.distributed import is_main_process, world_size
from training.model_checks import check_model_source
from training.report import write_report

Kind = Literal["classification", "summarization"]

# Encoder-decoder families that summarize; anything else with a classification head is a classifier.
SEQ2SEQ_TYPES = {"t5", "mt5", "umt5", "bart", "mbart", "pegasus", "led", "longt5"}


def detect_kind(model_dir: str | Path) -> Kind:
    """Tell a topic classifier from a summarizer by its ``config.json`` (architectures, then model type).

    Example:
        >>> import json, tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / "config.json").write_text(json.dumps({"architectures": ["BertForSequenceClassification"]}))
        >>> detect_kind(folder)
        'classification'
    """
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise DataError(f"{model_dir}: not a model directory (no config.json)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: malformed JSON ({error.msg})") from None
    architectures = " ".join(config.get("architectures") or [])
    if "ForSequenceClassification" in architectures:
        return "classification"
    if "ForConditionalGeneration" in architectures or config.get("model_type") in SEQ2SEQ_TYPES:
        return "summarization"
    raise DataError(
        f"{path}: cannot tell a classifier from a summarizer "
        f"(architectures: {architectures or 'none'}, model_type: {config.get('model_type')})"
    )


def load_rows(
    source: str, columns: Columns, split: str = "test", limit: int | None = None, normalization: dict | None = None
) -> tuple[dict, int]:
    """Load the evaluation rows (normalized) and count the rows skipped for a missing field.

    ``normalization`` is the model's record (``load_normalization``): rows are read with its
    digits and version, so a report scores a model on the text it was trained on.

    Returns ``(rows, skipped)``: ``rows`` maps ``text``, the target and ``title`` (``None`` when
    unmapped) to lists. The whole file is read even with ``limit``, so that ``skipped``
    describes the file, not only the prefix that was evaluated.

    Example:
        >>> rows, skipped = load_rows("data/sample/test.jsonl", Columns(label="category"), limit=3)
        >>> len(rows["text"]), skipped
        (3, 0)
    """
    total = sum(1 for _ in read_records(source, split))
    record = normalization or load_normalization(None)
    data = load_split(source, columns, split=split, digits=record["digits"], version=record["version"])
    skipped = total - len(data)
    if limit:
        data = data.select(range(min(limit, len(data))))
    rows = data.to_dict()
    rows.setdefault("title", [None] * len(data))
    return rows, skipped


def evaluate_classification(
    texts: Sequence[str],
    references: Sequence[str],
    predictions: Sequence[str],
    train: tuple[Sequence[str], Sequence[str]] | None = None,
    draws: int = 1000,
    seed: int = 0,
) -> dict:
    """Score topic ``predictions`` beside the majority-class and (given ``train`` texts/labels) TF-IDF baselines.

    Without ``train`` the majority class is taken from the evaluated rows themselves, which
    flatters that baseline; the report says so.

    Example:
        >>> result = evaluate_classification(["x", "y", "z"], ["a", "a", "b"], ["a", "b", "b"], draws=10)
        >>> list(result["systems"]), round(result["systems"]["majority"]["accuracy"], 3)
        (['model', 'majority'], 0.667)
    """
    outputs = {"model": list(predictions)}
    majority_source = train[1] if train else references
    outputs["majority"] = majority_baseline(majority_source, len(references))
    where = "the training file" if train else "the evaluated rows themselves (no --baseline-train given)"
    descriptions = {
        "model": "the evaluated model",
        "majority": f"always `{outputs['majority'][0]}`, the most frequent label of {where}",
    }
    if train:
        outputs["tfidf"] = tfidf_baseline(train[0], train[1], texts, seed=seed)
        descriptions["tfidf"] = (
            f"TF-IDF of word 1-2 grams + linear SVM, trained on {len(train[0])} rows of the training file"
        )
    systems = {name: classification_scores(out, references, draws, seed) for name, out in outputs.items()}
    return _result("classification", systems, descriptions, outputs, references, draws, seed)


def evaluate_summarization(
    texts: Sequence[str],
    references: Sequence[str],
    summaries: Sequence[str],
    draws: int = 1000,
    seed: int = 0,
    examples: int = 5,
) -> dict:
    """Score ``summaries`` with ROUGE beside the lead-1 and lead-2 baselines, and pick a few examples.

    Example:
        >>> result = evaluate_summarization(["الف ب؟ ج د"], ["الف ب؟"], ["الف"], draws=10)
        >>> result["systems"]["lead-1"]["rouge1"]
        100.0
    """
    outputs = {"model": list(summaries), "lead-1": lead_baseline(texts, 1), "lead-2": lead_baseline(texts, 2)}
    descriptions = {
        "model": "the evaluated model",
        "lead-1": "the article's first sentence",
        "lead-2": "the article's first two sentences",
    }
    systems = {name: rouge_scores(out, references, draws, seed) for name, out in outputs.items()}
    result = _result("summarization", systems, descriptions, outputs, references, draws, seed)
    result["reference_mean_length"] = float(np.mean([len(text.split()) for text in references]))
    picked = sorted(np.random.default_rng(seed).permutation(len(texts))[:examples].tolist())
    result["examples"] = [
        {
            "row": i,
            "article (start)": _shorten(texts[i], 400),
            "reference": references[i],
            **{n: outputs[n][i] for n in ("model", "lead-1")},
        }
        for i in picked
    ]
    return result


def _shorten(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[:chars].rsplit(" ", 1)[0] + " …"


def _result(
    kind: Kind, systems: dict, descriptions: dict, outputs: dict, references: Sequence[str], draws: int, seed: int
) -> dict:
    """The result layout ``training.report`` writes; ``run`` fills in where the model and data came from."""
    return {
        "kind": kind,
        "model": "(in memory)",
        "data": "(in memory)",
        "columns": {},
        "required_columns": ["text", "label" if kind == "classification" else "summary"],
        "rows": len(references),
        "skipped_rows": 0,
        "limit": None,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "khabar_version": inference.__version__,
        "bootstrap": {"draws": draws, "seed": seed, "confidence": 0.95},
        "systems": systems,
        "descriptions": descriptions,
        "warnings": [],
        "predictions": outputs,
        "references": list(references),
    }


def predict_topics(
    model_dir: str | Path, texts: Sequence[str], batch_size: int = 16, device: str | None = None
) -> list[str]:
    """Topic labels from a classifier directory, in input order, with a progress bar.

    Example:
        >>> import tempfile
        >>> from training.tiny import build_tiny_classifier
        >>> model = build_tiny_classifier(tempfile.mkdtemp())
        >>> labels = predict_topics(model, ["تیم ملی برد", "بازار ارز"], device="cpu")
        >>> len(labels), all(isinstance(label, str) for label in labels)
        (2, True)
    """
    from inference import Classifier

    classifier = Classifier.from_pretrained(model_dir, device=device or "auto")
    predict = lambda chunk: [p["label"] for p in classifier.predict(chunk, batch_size=batch_size)]  # noqa: E731
    return _in_chunks(predict, texts, batch_size, "classifying")


def generate_summaries(
    model_dir: str | Path, texts: Sequence[str], batch_size: int = 8, device: str | None = None, **decoding: int
) -> list[str]:
    """Summaries from a summarizer directory, in input order, with a progress bar.

    The model's saved decoding settings apply unless ``decoding`` overrides them
    (``num_beams``, ``max_new_tokens``).

    Example:
        >>> import tempfile
        >>> from training.tiny import build_tiny_summarizer
        >>> len(generate_summaries(build_tiny_summarizer(tempfile.mkdtemp()), ["متن خبر"], device="cpu"))
        1
    """
    from inference import Summarizer

    summarizer = Summarizer.from_pretrained(model_dir, device=device or "auto")
    summarize = lambda chunk: summarizer.summarize(chunk, batch_size=batch_size, **decoding)  # noqa: E731
    return _in_chunks(summarize, texts, batch_size, "summarizing")


def _in_chunks(model: Callable[[list[str]], list], texts: Sequence[str], batch_size: int, desc: str) -> list:
    """Run ``model`` over ``texts`` a batch at a time (longest first), advancing a progress bar."""
    from tqdm.auto import tqdm

    # Chunks of similar length pad least, and the slowest come first so the time estimate is honest.
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    outputs: list = [None] * len(texts)
    with tqdm(total=len(texts), desc=desc, unit="article") as bar:
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            for i, output in zip(chunk, model([texts[i] for i in chunk]), strict=True):
                outputs[i] = output
            bar.update(len(chunk))
    return outputs


def build_parser() -> argparse.ArgumentParser:
    """The ``khabar-train evaluate`` argument parser.

    Example:
        >>> build_parser().parse_args(["--model", "m", "--data", "d.jsonl", "-o", "out"]).label_column
        'category'
    """
    parser = argparse.ArgumentParser(
        prog="khabar-train evaluate",
        description="Score a classifier or summarizer beside simple baselines; write metrics.json, report.md, plots.",
    )
    parser.add_argument(
        "--model", required=True, type=Path, help="trained model directory (its config.json tells the kind)"
    )
    parser.add_argument("--data", required=True, help="labelled JSONL/CSV/TSV/Parquet file (or a datasets hub id)")
    parser.add_argument("-o", "--output", required=True, type=Path, help="report folder to write")
    parser.add_argument("--text-column", default="article", help="column holding the article (default: article)")
    parser.add_argument("--label-column", default="category", help="topic column, for classifiers (default: category)")
    parser.add_argument("--summary-column", default="summary", help="reference summary column (default: summary)")
    parser.add_argument("--title-column", help="headline column, prepended to the article as in training (classifiers)")
    parser.add_argument("--split", default="test", help="split to read when --data is a hub id (default: test)")
    parser.add_argument("--limit", type=_positive, help="evaluate only the first N usable rows")
    parser.add_argument("--baseline-train", help="training file for the majority and TF-IDF baselines (classifiers)")
    parser.add_argument("--batch-size", type=_positive, help="rows per model call (default: 16 classify, 8 summarize)")
    parser.add_argument("--device", help="torch device, e.g. cpu, cuda, cuda:1 (default: the best available)")
    parser.add_argument("--num-beams", type=_positive, help="summarizers: beams (default: the model's saved setting)")
    parser.add_argument(
        "--max-new-tokens", type=_positive, help="summarizers: longest summary in tokens (default: the model's setting)"
    )
    parser.add_argument("--bootstrap", type=_positive, default=1000, help="bootstrap resamples (default: 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed for resampling, examples and baselines (default: 0)")
    return parser


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {value!r}")
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
    # Before any data is read: a model that asks to run its own code, or has broken weights, is refused.
    check_model_source(str(args.model), "--model")
    if args.output.exists() and not args.output.is_dir():
        raise DataError(f"{args.output}: exists and is not a folder (-o needs a folder for the report)")
    target = {"label": args.label_column} if kind == "classification" else {"summary": args.summary_column}
    columns = Columns(text=args.text_column, title=args.title_column, **target)
    # Read every file before the slow model runs, so a wrong column fails in a second, not an hour.
    rows, skipped = load_rows(args.data, columns, args.split, args.limit, _normalization(args.model))
    # The model sees the headline and the article laid out as in training; baselines see the same rows.
    inputs = [join_title(title, text) for title, text in zip(rows["title"], rows["text"], strict=True)]
    if kind == "classification":
        train = _baseline_train(args.baseline_train, columns)
        predictions = predict_topics(args.model, inputs, args.batch_size or 16, args.device)
        result = evaluate_classification(inputs, rows["label"], predictions, train, args.bootstrap, args.seed)
        result["warnings"] += _label_warnings(args.model, rows["label"])
    else:
        if args.baseline_train:
            print("khabar-train evaluate: note: lead-k baselines need no --baseline-train; ignored", file=sys.stderr)
        decoding = {k: v for k, v in (("num_beams", args.num_beams), ("max_new_tokens", args.max_new_tokens)) if v}
        summaries = generate_summaries(args.model, inputs, args.batch_size or 8, args.device, **decoding)
        # Lead-k takes the article's own first sentences, never the headline.
        result = evaluate_summarization(rows["text"], rows["summary"], summaries, args.bootstrap, args.seed)
        result["decoding"] = decoding or "the model's saved settings"
    result.update(
        model=str(args.model),
        data=str(args.data),
        columns={role: name for role, name in vars(columns).items() if name},
        required_columns=[columns.text, columns.target],
        skipped_rows=skipped,
        limit=args.limit,
    )
    write_report(result, args.output)
    return result


def _baseline_train(source: str | None, columns: Columns) -> tuple[list[str], list[str]] | None:
    """The TF-IDF baseline's training texts (laid out like the model's inputs) and labels."""
    if not source:
        return None
    data = load_split(source, columns, split="train")
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
    args = build_parser().parse_args(argv)
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
    except (ConfigError, DataError, DeviceError, ModelNotFoundError) as error:
        print(f"khabar-train evaluate: error: {error}", file=sys.stderr)
        return 2
    model = result["systems"]["model"]
    headline = "accuracy" if result["kind"] == "classification" else "rouge1"
    print(
        f"{result['kind']}: {result['rows']} rows, {headline} {model[headline]:.3g}; report in {args.output}/report.md"
    )
    return 0

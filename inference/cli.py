"""The ``khabar`` command: topics and summaries for Persian news, one text or a whole file.

    khabar predict news.jsonl -o predictions.jsonl     # a file, batch by batch, resumable
    khabar classify "متن خبر"                           # one text's topic
    khabar summarize - < article.txt                    # one text's summary
    khabar merge preds.shard-*.jsonl -o predictions.jsonl

The work happens in the :mod:`inference.batch` package (the batch loop, reading and writing
files, splitting and merging); this module only turns flags into calls and errors into one line
and an exit code.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

from inference.backends import CLASSIFIER_BACKENDS, SUMMARIZER_BACKENDS
from inference.batch.checks import MAX_TEXT_CHARS, InputColumns
from inference.batch.formats import STDIO, UsageError, file_format
from inference.batch.input_checks import check_encoding_and_shape, check_not_same_file
from inference.batch.loop import Job, RunStats, run, stop_after_batch
from inference.batch.memory import keep_large_buffers_separate
from inference.batch.output_guard import OutputGuard, guarded_output
from inference.batch.reading import count_rows, csv_columns, open_input
from inference.batch.reading import read_rows as read_input
from inference.batch.resume import DoneRecords, load_done
from inference.batch.shards import Shard, device_for_rank, merge_parts, shard_from_env
from inference.batch.writing import RecordWriter

EXIT_OK, EXIT_USAGE, EXIT_ROWS_FAILED, EXIT_INTERRUPTED = 0, 2, 3, 130
TASKS = ("topic", "summary")
BACKENDS = {"classifier": CLASSIFIER_BACKENDS, "summarizer": SUMMARIZER_BACKENDS}

PREDICT_EPILOG = f"""\
formats:
  INPUT is .jsonl, .csv or .tsv with a header, or - for JSONL on stdin.
  OUTPUT is .jsonl, .csv or .tsv, or - for JSONL on stdout (the default).
  Each record has id (the --id-column value, else the row's line number), line (where the row
  starts in INPUT), and topic + topic_score and/or summary; or error, with the reason.

bad rows:
  A malformed JSON line, a missing, empty or non-string text, or a text over
  {MAX_TEXT_CHARS:,} characters gets an error record and the run goes on (--strict: it stops).
  Shorter long articles are handled as the inference API does (windows / truncation).

resume and shards:
  Ctrl-C (or SIGTERM) stops cleanly: a batch in the models is finished and written first
  (press Ctrl-C twice to drop it). Rerun the same command with --resume to finish: ids already
  in OUTPUT are skipped, rows that failed are retried (--no-retry-errors keeps them) and a
  half-written last record is repaired; an INPUT that changed since is refused. One run at a
  time writes OUTPUT: its lock and INPUT's fingerprint are in OUTPUT.khabar-run.
  With --num-shards N each process writes OUTPUT.shard-I-of-N.EXT; under
  `accelerate launch -m inference.cli predict ...` N and I come from WORLD_SIZE and RANK.
  Join the parts with: khabar merge OUTPUT.shard-*-of-N.EXT -o OUTPUT

exit codes:
  0  every row succeeded
  2  usage error: bad flag, unreadable input, existing or busy output, missing or broken
     model, full disk
  3  some rows failed (see their error records), or --strict stopped at a bad row
  130  interrupted; rerun with --resume
"""


class _Parser(argparse.ArgumentParser):
    """Report a bad flag in one line (plus a pointer to --help), not a usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more")
    return value


def _names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected comma-separated column names")
    return names


def _tasks(text: str) -> list[str]:
    tasks = _names(text)
    unknown = [task for task in tasks if task not in TASKS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown task {unknown[0]!r}; choose from {', '.join(TASKS)}")
    return tasks


def _add_model_flags(parser: argparse.ArgumentParser, kinds: tuple[str, ...]) -> None:
    for kind in kinds:
        env = f"KHABAR_{kind.upper()}"
        parser.add_argument(
            f"--{kind}", metavar="DIR_OR_ID", help=f"{kind} model (default: ${env}, else models/{kind})"
        )
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1, mps")
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "bfloat16", "float16"],
        help="torch precision: auto (default: bfloat16 on CPUs with AMX and on GPUs, else float32)",
    )
    parser.add_argument("--quantize", choices=["int8"], help="dynamic int8 quantization (CPU)")
    choices = list(dict.fromkeys(name for kind in kinds for name in BACKENDS[kind]))
    parser.add_argument(
        "--backend",
        default="torch",
        choices=choices,
        help="inference engine: torch (default, CPU or GPU); fast = the fastest CPU engine of each model "
        "(onnx for topics, ctranslate2 for summaries; pip install khabar[fast]), fastest with --quantize int8; "
        "auto = the fastest installed for this processor",
    )
    if "summarizer" in kinds:
        parser.add_argument("--num-beams", type=_positive, help="beam width (default: the model's)")
        parser.add_argument("--max-new-tokens", type=_positive, help="summary length cap (default: the model's)")


def build_parser() -> argparse.ArgumentParser:
    """The ``khabar`` argument parser with its predict, classify, summarize, merge and serve commands.

    Example:
        >>> build_parser().parse_args(["predict", "in.jsonl", "--tasks", "topic"]).tasks
        ['topic']
    """
    parser = _Parser(prog="khabar", description="Topics and summaries for Persian news.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_predict(commands)
    for name, kind, verb in (("classify", "classifier", "topic"), ("summarize", "summarizer", "summary")):
        single = commands.add_parser(
            name, help=f"print the {verb} of one or more texts", description=f"Print the {verb} of each TEXT."
        )
        single.add_argument("texts", nargs="+", metavar="TEXT", help="the article text; - reads one text from stdin")
        if name == "classify":
            single.add_argument("--title", help="the headline, read before the text")
        _add_model_flags(single, (kind,))
        single.set_defaults(handler=_classify if name == "classify" else _summarize)
    merge = commands.add_parser(
        "merge",
        help="join shard outputs in input order",
        description="Join the outputs of sharded `khabar predict` runs back into input order.",
    )
    merge.add_argument("parts", nargs="+", metavar="PART", help="shard outputs (.jsonl, .csv or .tsv)")
    merge.add_argument("-o", "--output", required=True, help="the merged file (.jsonl, .csv, .tsv or -)")
    merge.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")
    merge.set_defaults(handler=_merge)
    from inference.serve.cli import add_serve_command  # flags only: FastAPI is imported when serving

    add_serve_command(commands)
    return parser


def _add_predict(commands: argparse._SubParsersAction) -> None:
    predict = commands.add_parser(
        "predict",
        help="classify and summarize every row of a file",
        description="Classify and summarize every row of INPUT, streaming batch by batch into OUTPUT.",
        epilog=PREDICT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    predict.add_argument("input", metavar="INPUT", help=".jsonl, .csv, .tsv, or - (JSONL on stdin)")
    predict.add_argument(
        "--input-format", choices=["jsonl", "csv", "tsv"], help="INPUT's format when its name has no suffix"
    )
    predict.add_argument("-o", "--output", default=STDIO, help=".jsonl, .csv, .tsv, or - (stdout, the default)")
    predict.add_argument("--tasks", type=_tasks, default=list(TASKS), help="topic,summary (default: both)")
    predict.add_argument("--text-column", help="the article field (default: article, else text)")
    predict.add_argument("--title-column", help="a headline field, read before the text by the classifier")
    predict.add_argument("--id-column", help="the id field (default: id, else the row's line number)")
    predict.add_argument("--keep-columns", type=_names, default=[], metavar="A,B", help="input fields to copy")
    _add_model_flags(predict, ("classifier", "summarizer"))
    predict.add_argument("--batch-size", type=_positive, default=16, help="rows per batch and per write (16)")
    predict.add_argument("--strict", action="store_true", help="stop at the first bad row (exit 3)")
    predict.add_argument("--resume", action="store_true", help="continue OUTPUT: skip ids already in it")
    predict.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")
    predict.add_argument(
        "--no-retry-errors",
        action="store_true",
        help="with --resume: keep error records instead of retrying their rows",
    )
    predict.add_argument("--num-shards", type=_positive, metavar="N", help="split INPUT into N parts")
    predict.add_argument("--shard-index", type=_non_negative, metavar="I", help="which part (0..N-1) to run")
    predict.add_argument("--progress", action="store_true", help="show the progress bar even when not a terminal")
    predict.add_argument("--quiet", action="store_true", help="no progress bar and no summary line")
    predict.set_defaults(handler=_predict)


def main(argv: list[str] | None = None) -> int:
    """Run ``khabar`` with ``argv`` (default: the command line) and return its exit code.

    Example:
        >>> main(["predict", "missing.jsonl", "-o", "out.jsonl"])
        2
    """
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a bad flag already reported in one line
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    _show_notices(shown=not getattr(args, "quiet", False))
    try:
        return args.handler(args)
    except UsageError as exc:
        print(f"khabar {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # Ctrl-C outside the batch loop (e.g. while a model loads): nothing to save
        print(f"khabar {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of stdout went away (e.g. `| head`): stop quietly, as Unix tools do.
        sys.stdout = open(Path("/dev/null"), "w")  # noqa: SIM115 - absorbs the interpreter's final flush
        return 1


def _show_notices(shown: bool) -> None:
    """Print the fast engines' one-time conversion notices (a first run can take a minute) unless --quiet."""
    notices = logging.getLogger("inference.fast")
    if not any(isinstance(handler, _StderrHandler) for handler in notices.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("khabar: %(message)s"))
        notices.addHandler(handler)
        # Printed here only: an engine's converter may set up root logging and would print it again.
        notices.propagate = False
    notices.setLevel(logging.INFO if shown else logging.WARNING)
    precision = logging.getLogger("inference.precision")  # the one line saying what dtype="auto" chose
    precision.handlers, precision.propagate = notices.handlers, False
    precision.setLevel(notices.level)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record comes, as ``logging.lastResort`` does."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _predict(args: argparse.Namespace) -> int:
    columns = InputColumns(args.text_column, args.title_column, args.id_column or "id", tuple(args.keep_columns))
    shard = shard_from_env(args.num_shards, args.shard_index)
    output = shard.output_path(args.output)
    check_not_same_file(args.input, output)
    _check_columns(args.input, columns, explicit_id=args.id_column is not None, fmt=args.input_format)
    _check_backend(args.backend, args.tasks)
    # Held until the run ends: a second run on this output fails at once instead of interleaving.
    with guarded_output(output, args.input, args.resume) as guard:
        return _predict_locked(args, columns, shard, output, guard)


def _predict_locked(
    args: argparse.Namespace, columns: InputColumns, shard: Shard, output: str, guard: OutputGuard
) -> int:
    done = _open_output(output, args)
    keep_large_buffers_separate()  # with release_freed_memory() per batch: flat memory on long inputs
    job = Job(columns, *_load_models(args), strict=args.strict)
    progress = _progress_bar(args, shard, done)
    rows = read_input(args.input, fmt=args.input_format)
    with RecordWriter(output, job.output_fields(), append=args.resume) as writer, stop_after_batch(_notice) as stop:
        guard.record_input()
        stats = run(rows, job, writer.write, args.batch_size, shard, done.ids, progress, stop)
    if progress is not None:
        progress.close()
    return _report(stats, args, output, leftover=sum(done.ids.values()))


def _check_columns(path: str, columns: InputColumns, explicit_id: bool, fmt: str | None = None) -> None:
    """Catch an unreadable input or a misspelled CSV/TSV column before any work (JSONL rows are checked one by one)."""
    if path != STDIO:
        open_input(path).close()
    check_encoding_and_shape(path, file_format(path, "INPUT", fmt))
    header = csv_columns(path, fmt)
    if not header:
        return
    listed = f"(columns: {', '.join(header)})"
    if columns.text is None and not {"article", "text"} & set(header):
        raise UsageError(f"INPUT {path}: no 'article' or 'text' column; name it with --text-column {listed}")
    named = [("--text-column", columns.text), ("--title-column", columns.title)]
    named += [("--id-column", columns.id if explicit_id else None)] + [("--keep-columns", k) for k in columns.keep]
    for flag, name in named:
        if name is not None and name not in header:
            raise UsageError(f"{flag} {name}: no such column in {path} {listed}")


def _check_backend(backend: str, tasks: list[str]) -> None:
    """Refuse, before loading anything, an engine that only one of the requested models has."""
    kinds = {"topic": "classifier", "summary": "summarizer"}
    for task in tasks:
        if backend not in BACKENDS[kinds[task]]:
            other = next(k for k in BACKENDS if backend in BACKENDS[k])
            raise UsageError(
                f"--backend {backend}: runs the {other} only, and --tasks includes {task}; "
                f"use --backend fast (onnx for topics, ctranslate2 for summaries) or --tasks "
                f"{'topic' if other == 'classifier' else 'summary'}"
            )


def _open_output(output: str, args: argparse.Namespace) -> DoneRecords:
    """Check OUTPUT can be written; with --resume, repair it and return the ids already done."""
    exists = output != STDIO and Path(output).is_file() and Path(output).stat().st_size > 0
    if args.resume:
        done = load_done(output, retry_errors=not args.no_retry_errors)
        if done.repaired_bytes and not args.quiet:
            _notice(f"repaired {output}: removed a half-written last record ({done.repaired_bytes} bytes)")
        if done.retried and not args.quiet:
            _notice(f"retrying the {done.retried} rows that failed before (--no-retry-errors keeps their errors)")
        _check_same_tasks(output, done, args.tasks)
        return done
    if exists and not args.overwrite:
        raise UsageError(f"-o {output}: already exists; add --resume to continue it or --overwrite to replace it")
    return DoneRecords(Counter(), 0)


def _check_same_tasks(output: str, done: DoneRecords, tasks: list[str]) -> None:
    """Refuse to resume a file written for other tasks: its rows would lack a topic or a summary."""
    results = {"topic", "summary"}
    if done.fields & results and done.fields & results != set(tasks):
        had = ",".join(sorted(done.fields & results))
        raise UsageError(f"-o {output}: was written with --tasks {had}; resume with the same --tasks")


def _load_models(args: argparse.Namespace) -> tuple[Callable | None, Callable | None]:
    """Load the models the tasks need, as functions from a list of texts to results."""
    classify = summarize = None
    if "topic" in args.tasks:
        model = _load("classifier", args)
        classify = partial(model.predict, batch_size=args.batch_size)
    if "summary" in args.tasks:
        model = _load("summarizer", args)
        summarize = partial(
            model.summarize, batch_size=args.batch_size, num_beams=args.num_beams, max_new_tokens=args.max_new_tokens
        )
    return classify, summarize


def _load(kind: str, args: argparse.Namespace):
    """Load the classifier or summarizer named by its flag; any failure is a one-line usage error."""
    from inference.loading import resolve_model

    flag = getattr(args, kind)
    try:
        path = resolve_model(kind, flag, how_to_pass=f"pass --{kind} DIR")
        if kind == "classifier":
            from inference.classifier import Classifier as Model
        else:
            from inference.summarizer import Summarizer as Model
        with _loading_bars(_shows_progress(args)):
            device = device_for_rank(args.device)
            model = Model.from_pretrained(
                path, device=device, dtype=args.dtype, quantize=args.quantize, backend=args.backend
            )
            args.precisions = {**getattr(args, "precisions", {}), kind: model.precision}  # for the summary line
            return model
    except (OSError, ValueError, ImportError) as exc:  # ImportError: a fast engine is not installed
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"--{kind} {flag}: {first_line}" if flag else first_line) from None


@contextmanager
def _loading_bars(shown: bool) -> Iterator[None]:
    """Silence transformers' own "Loading weights" bars unless progress output is wanted."""
    from transformers.utils import logging

    was_enabled = logging.is_progress_bar_enabled()
    if not shown:
        logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled and not shown:
            logging.enable_progress_bar()


def _shows_progress(args: argparse.Namespace) -> bool:
    """Progress goes to stderr when it is a terminal or --progress asks for it, never with --quiet."""
    quiet, asked = getattr(args, "quiet", False), getattr(args, "progress", False)
    return not quiet and (asked or sys.stderr.isatty())


def _progress_bar(args: argparse.Namespace, shard: Shard, done: DoneRecords):
    """A tqdm bar on stderr when it is a terminal or --progress asks for one; None otherwise."""
    if not _shows_progress(args):
        return None
    from tqdm import tqdm

    total = count_rows(args.input, args.input_format)
    if total is not None:
        total = max(shard.size(total) - sum(done.ids.values()), 0)
    return tqdm(total=total, unit="article", desc="khabar predict", file=sys.stderr, dynamic_ncols=True)


def _report(stats: RunStats, args: argparse.Namespace, output: str, leftover: int) -> int:
    if not args.quiet:
        precision = "; ".join(f"{kind} {label}" for kind, label in getattr(args, "precisions", {}).items())
        _notice(f"{stats.summary()} -> {output}" + (f" ({precision})" if precision else ""))
        if leftover and not (stats.interrupted or stats.fatal):
            _notice(f"note: {leftover} records in {output} have ids that are not in {args.input}")
    if stats.fatal:
        _notice(f"error: INPUT {args.input} {stats.fatal} (--strict)")
        return EXIT_ROWS_FAILED
    if stats.interrupted:
        _notice("interrupted: rerun the same command with --resume to finish")
        return EXIT_INTERRUPTED
    return EXIT_ROWS_FAILED if stats.failed else EXIT_OK


def _notice(message: str) -> None:
    print(f"khabar predict: {message}", file=sys.stderr, flush=True)


def _read_texts(texts: list[str]) -> list[str]:
    """The texts from the command line, with ``-`` read from stdin."""
    if texts.count(STDIO) > 1:
        raise UsageError("TEXT: '-' (stdin) can be given only once")
    if STDIO in texts:
        check_not_same_file(STDIO, STDIO, source_name="TEXT -")
    try:
        return [sys.stdin.buffer.read().decode("utf-8") if text == STDIO else text for text in texts]
    except UnicodeDecodeError as exc:
        raise UsageError(f"stdin: not UTF-8 text (byte {exc.start + 1})") from None


def _classify(args: argparse.Namespace) -> int:
    from inference.normalize import join_title

    texts = [join_title(args.title, text) for text in _read_texts(args.texts)]
    model = _load("classifier", args)
    try:
        results = model.predict(texts)
    except (ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from None
    for result in results:
        print(f"{result['label']}\t{result['score']:.4f}")
    return EXIT_OK


def _summarize(args: argparse.Namespace) -> int:
    texts = _read_texts(args.texts)
    model = _load("summarizer", args)
    try:
        summaries = model.summarize(texts, num_beams=args.num_beams, max_new_tokens=args.max_new_tokens)
    except (ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from None
    for summary in summaries:
        print(summary)
    return EXIT_OK


def _merge(args: argparse.Namespace) -> int:
    count = merge_parts(args.parts, args.output, overwrite=args.overwrite)
    print(f"khabar merge: {count} records from {len(args.parts)} parts -> {args.output}", file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

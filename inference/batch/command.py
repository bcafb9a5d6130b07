"""``khabar predict``: check the flags, the input and the output, load the models, run the batch loop.

Everything here runs before or after :func:`inference.batch.loop.run`: refusing a bad input or
output before any model loads, resuming, the progress bar and the summary line.

Example:
    >>> from inference.cli import build_parser
    >>> predict_command(build_parser().parse_args(["predict", "missing.jsonl"]))
    Traceback (most recent call last):
    ...
    inference.batch.formats.UsageError: INPUT missing.jsonl: No such file or directory
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Callable
from functools import partial
from itertools import islice
from pathlib import Path

from inference.batch.checks import InputColumns
from inference.batch.formats import STDIO, UsageError, file_format
from inference.batch.input_checks import check_encoding_and_shape, check_not_same_file
from inference.batch.loop import Job, RunStats, run, stop_after_batch
from inference.batch.memory import keep_large_buffers_separate
from inference.batch.output_guard import OutputGuard, guarded_output
from inference.batch.provenance import model_record
from inference.batch.reading import count_rows, csv_columns, open_input
from inference.batch.reading import read_rows as read_input
from inference.batch.resume import DoneRecords, load_done
from inference.batch.shards import Shard, shard_from_env
from inference.batch.streams import OnceInput, is_stream
from inference.batch.writing import RecordWriter
from inference.commands import BACKENDS, EXIT_INTERRUPTED, EXIT_OK, EXIT_ROWS_FAILED, load_model, shows_progress


def predict_command(args: argparse.Namespace) -> int:
    """``khabar predict``: every row of INPUT into OUTPUT; the exit code (see the module example for a bad INPUT)."""
    columns = InputColumns(args.text_column, args.title_column, args.id_column or "id", tuple(args.keep_columns))
    shard = shard_from_env(args.num_shards, args.shard_index)
    output = shard.output_path(args.output)
    check_not_same_file(args.input, output)
    # Stdin, a pipe or a FIFO is opened once, here: each check would otherwise consume what it read.
    once = OnceInput.around(open_input(args.input)) if is_stream(args.input) else None
    _check_columns(args.input, columns, explicit_id=args.id_column is not None, fmt=args.input_format, once=once)
    _check_backend(args.backend, args.tasks)
    # Held until the run ends: a second run on this output fails at once instead of interleaving.
    with guarded_output(output, args.input, args.resume, columns.id, partial(_model_records, args)) as guard:
        return _predict_locked(args, columns, shard, output, guard, once)


def _predict_locked(
    args: argparse.Namespace,
    columns: InputColumns,
    shard: Shard,
    output: str,
    guard: OutputGuard,
    once: OnceInput | None,
) -> int:
    done = _open_output(output, args)
    if guard.unchecked and not args.quiet:
        _notice(
            f"note: {output} has no run file ({output}.khabar-run) saying which input, models and settings "
            "wrote it, so they could not be checked; its rows are kept and the rest written with these"
        )
    keep_large_buffers_separate()  # with release_freed_memory() per batch: flat memory on long inputs
    job = Job(columns, *_load_models(args), strict=args.strict)
    progress = _progress_bar(args, shard, done)
    rows = read_input(args.input, stream=once.stream if once else None, fmt=args.input_format)
    writer = RecordWriter(output, job.output_fields(), append=args.resume, resumable=output != STDIO)
    with writer, stop_after_batch(_notice) as stop:
        guard.record_input()
        stats = run(rows, job, writer.write, args.batch_size, shard, done.ids, progress, stop)
    if progress is not None:
        progress.close()
    return _report(stats, args, output, leftover=sum(done.ids.values()), shards=shard.count)


def _model_records(args: argparse.Namespace) -> dict[str, dict]:
    """What each task's model and settings are, for the output's run file (a model not found is reported later)."""
    from inference.loading import resolve_model

    columns = {"text_column": args.text_column}
    settings = {
        "classifier": {**columns, "title_column": args.title_column},
        "summarizer": {**columns, "num_beams": args.num_beams, "max_new_tokens": args.max_new_tokens},
    }
    records = {}
    for task, kind in (("topic", "classifier"), ("summary", "summarizer")):
        if task in args.tasks:
            try:
                records[kind] = model_record(resolve_model(kind, getattr(args, kind)), **settings[kind])
            except (OSError, ValueError):
                continue  # loading it reports the problem, with the same one-line error as without --resume
    return records


def _check_columns(
    path: str, columns: InputColumns, explicit_id: bool, fmt: str | None = None, once: OnceInput | None = None
) -> None:
    """Catch an unreadable input or a misspelled CSV/TSV column before any work (JSONL rows are checked one by one).

    An input read only once (``once``: stdin, a pipe) is checked on the bytes it read ahead.
    """
    if once is None and path != STDIO:
        open_input(path).close()
    check_encoding_and_shape(path, file_format(path, "INPUT", fmt), once.head if once else None)
    header = csv_columns(path, fmt, once)
    if header is None and explicit_id and once is None and path != STDIO:
        _check_jsonl_id_column(path, columns.id, fmt)
    if not header:
        return
    listed = f"(columns: {', '.join(header)})"
    if columns.text is None and not {"article", "text"} & set(header):
        raise UsageError(
            f"INPUT {path}: no 'article' or 'text' column; name it with --text-column {listed}{_delimiter_hint(header)}"
        )
    named = [("--text-column", columns.text), ("--title-column", columns.title)]
    named += [("--id-column", columns.id if explicit_id else None)] + [("--keep-columns", k) for k in columns.keep]
    for flag, name in named:
        if name is not None and name not in header:
            raise UsageError(f"{flag} {name}: no such column in {path} {listed}")


def _delimiter_hint(header: list[str]) -> str:
    """A hint when a one-column header holds another separator: the file is not separated as its suffix says."""
    if len(header) != 1:
        return ""
    found = next((name for sep, name in ((";", "semicolons"), ("\t", "tabs"), ("|", "bars")) if sep in header[0]), None)
    if found is None:
        return ""
    return f"; its header is separated by {found}: .csv is read with commas, .tsv with tabs"


def _check_jsonl_id_column(path: str, id_column: str, fmt: str | None, sample: int = 100) -> None:
    """Refuse an --id-column that none of the first readable JSONL rows has (every id would be a line number)."""
    seen: set[str] = set()
    for row in islice((row for row in read_input(path, fmt=fmt) if row.fields), sample):
        if id_column in row.fields:
            return
        seen.update(row.fields)
    if seen:
        fields = ", ".join(sorted(seen)[:12])
        raise UsageError(f"--id-column {id_column}: no such field in the first rows of {path} (fields: {fields})")


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
        model = load_model("classifier", args)
        classify = partial(model.predict, batch_size=args.batch_size)
    if "summary" in args.tasks:
        model = load_model("summarizer", args)
        # --batch-size caps the articles a generate call takes; beam search is fastest in fewer.
        size = model.batch_size_for(args.num_beams, at_most=args.batch_size)
        summarize = partial(
            model.summarize, batch_size=size, num_beams=args.num_beams, max_new_tokens=args.max_new_tokens
        )
    return classify, summarize


def _progress_bar(args: argparse.Namespace, shard: Shard, done: DoneRecords):
    """A tqdm bar on stderr when it is a terminal or --progress asks for one; None otherwise."""
    if not shows_progress(args):
        return None
    from tqdm import tqdm

    total = count_rows(args.input, args.input_format)
    if total is not None:
        total = max(shard.size(total) - sum(done.ids.values()), 0)
    return tqdm(total=total, unit="article", desc="khabar predict", file=sys.stderr, dynamic_ncols=True)


def _report(stats: RunStats, args: argparse.Namespace, output: str, leftover: int, shards: int = 1) -> int:
    if not args.quiet:
        precision = "; ".join(f"{kind} {label}" for kind, label in getattr(args, "precisions", {}).items())
        _notice(f"{stats.summary()} -> {output}" + (f" ({precision})" if precision else ""))
        if not (stats.read or stats.skipped or stats.interrupted) and shards == 1:
            _notice(f"note: INPUT {args.input} holds no rows (an empty file, or only blank lines or a header)")
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

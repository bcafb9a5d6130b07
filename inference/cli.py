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
import errno
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from inference.batch.checks import MAX_TEXT_CHARS
from inference.batch.command import predict_command
from inference.batch.formats import STDIO, UsageError
from inference.commands import (
    BACKENDS,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    classify_command,
    merge_command,
    summarize_command,
)
from inference.inputs import DECODING_LIMITS
from inference.install_check import install_clashes
from inference.interrupts import sigterm_as_interrupt

TASKS = ("topic", "summary")

PREDICT_EPILOG = f"""\
formats:
  INPUT is .jsonl, .csv or .tsv with a header, or - for JSONL on stdin.
  OUTPUT is .jsonl, .csv or .tsv, or - for JSONL on stdout (the default).
  Each record has id (the --id-column value, else the row's line number), line (where the row
  starts in INPUT), and topic + topic_score and/or summary; or error, with the reason.

bad rows:
  A malformed JSON line (a key twice, or over 32 MiB: skipped unread), a missing, empty or
  non-string text, or a text over {MAX_TEXT_CHARS:,} characters gets an error record and the
  run goes on (--strict: it stops).
  Shorter long articles are handled as the inference API does (windows / truncation).

resume and shards:
  Ctrl-C (or SIGTERM) stops cleanly: a batch in the models is finished and written first
  (press Ctrl-C twice to drop it). Rerun the same command with --resume to finish: ids already
  in OUTPUT are skipped, rows that failed are retried (--no-retry-errors keeps them) and a
  half-written last record is repaired; an INPUT that changed since, another model or other
  decoding settings are refused. One run at a time writes OUTPUT: its lock, INPUT's
  fingerprint and the models' are in OUTPUT.khabar-run.
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

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        # A flag the command lacks (`khabar summarize --title`) is named with the command, not as khabar's.
        parsed, extra = self.parse_known_args(args, namespace)
        if extra:
            prog = f"{self.prog} {parsed.command}" if getattr(parsed, "command", None) else self.prog
            self.exit(EXIT_USAGE, f"{prog}: error: unrecognized arguments: {' '.join(extra)} (see {prog} --help)\n")
        return parsed


def _whole(text: str) -> int:
    # argparse would name a ValueError after the parsing function ("invalid _positive value").
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def _positive(text: str) -> int:
    value = _whole(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def decoding_flag(name: str) -> Callable[[str], int]:
    """An argparse type: a positive whole number within the summarizer's limit for ``name`` (before any model loads).

    Shared by ``khabar`` and ``khabar-train evaluate``.

    Example:
        >>> decoding_flag("num_beams")("4")
        4
    """

    def parse(text: str) -> int:
        value = _positive(text)
        if value > DECODING_LIMITS[name]:
            raise argparse.ArgumentTypeError(f"{text!r} is over the limit of {DECODING_LIMITS[name]}")
        return value

    return parse


def _non_negative(text: str) -> int:
    value = _whole(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more")
    return value


def _names(text: str, what: str = "column names") -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated {what}")
    return names


def _tasks(text: str) -> list[str]:
    tasks = _names(text, f"tasks ({', '.join(TASKS)})")
    unknown = [task for task in tasks if task not in TASKS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown task {unknown[0]!r}; choose from {', '.join(TASKS)}")
    return tasks


def add_device_flags(parser: argparse.ArgumentParser) -> None:
    """``--device``, ``--dtype`` and ``--quantize``, as every command that loads a model reads them.

    Example:
        >>> add_device_flags(parser := argparse.ArgumentParser())
        >>> vars(parser.parse_args(["--dtype", "float32"]))
        {'device': 'auto', 'dtype': 'float32', 'quantize': None}
    """
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1, mps")
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "bfloat16", "float16"],
        help="torch precision: auto (default: bfloat16 with AMX, AMD's AVX512-BF16 or a GPU, else float32)",
    )
    parser.add_argument("--quantize", choices=["int8"], help="dynamic int8 quantization (CPU)")


def _add_model_flags(parser: argparse.ArgumentParser, kinds: tuple[str, ...]) -> None:
    for kind in kinds:
        env = f"KHABAR_{kind.upper()}"
        parser.add_argument(
            f"--{kind}", metavar="DIR_OR_ID", help=f"{kind} model (default: ${env}, else models/{kind})"
        )
    add_device_flags(parser)
    choices = list(dict.fromkeys(name for kind in kinds for name in BACKENDS[kind]))
    parser.add_argument(
        "--backend",
        default="auto",
        choices=choices,
        help="inference engine: auto (default) = the fastest installed for this processor and device, said in "
        "the log; torch = transformers (CPU or GPU); fast = each model's fast CPU engine (onnx for topics, "
        "ctranslate2 for summaries; pip install khabar[fast]), fastest with --quantize int8",
    )
    if "summarizer" in kinds:
        parser.add_argument("--num-beams", type=decoding_flag("num_beams"), help="beam width (default: the model's)")
        parser.add_argument(
            "--max-new-tokens", type=decoding_flag("max_new_tokens"), help="summary length cap (default: the model's)"
        )


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
        single.set_defaults(handler=classify_command if name == "classify" else summarize_command)
    merge = commands.add_parser(
        "merge",
        help="join shard outputs in input order",
        description="Join the outputs of sharded `khabar predict` runs back into input order.",
    )
    merge.add_argument("parts", nargs="+", metavar="PART", help="shard outputs (.jsonl, .csv or .tsv)")
    merge.add_argument("-o", "--output", required=True, help="the merged file (.jsonl, .csv, .tsv or -)")
    merge.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")
    merge.add_argument(
        "--allow-missing", action="store_true", help="merge even when some PART.shard-I-of-N files are not given"
    )
    merge.set_defaults(handler=merge_command)
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
    predict.add_argument(
        "--batch-size",
        type=_positive,
        default=16,
        help="rows per batch and per write (16); summaries run at most this many a call (8 with 4 beams)",
    )
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
    predict.set_defaults(handler=predict_command)


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
    for clash in install_clashes():
        print(f"khabar: warning: {clash}", file=sys.stderr)
    try:
        with sigterm_as_interrupt():
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
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # Printing the answers to a full disk (`> /dev/full`, a full volume): say so, not a traceback.
        sys.stdout = open(Path("/dev/null"), "w")  # noqa: SIM115 - absorbs the interpreter's final flush
        print(f"khabar {args.command}: error: stdout: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE


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


if __name__ == "__main__":
    sys.exit(main())

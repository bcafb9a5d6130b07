"""The ``khabar classify``, ``summarize`` and ``merge`` commands, and loading a model for any command.

Each command turns its parsed flags into calls; a failure is a :class:`UsageError` that
:func:`inference.cli.main` prints as one line with exit code 2.

Example:
    >>> import argparse
    >>> merge_command(argparse.Namespace(parts=["missing.jsonl"], output="-", overwrite=False, allow_missing=False))
    Traceback (most recent call last):
    ...
    inference.batch.formats.UsageError: PART missing.jsonl: No such file or directory
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from inference.backends import CLASSIFIER_BACKENDS, SUMMARIZER_BACKENDS
from inference.batch.checks import MAX_TEXT_CHARS
from inference.batch.formats import STDIO, UsageError
from inference.batch.input_checks import check_not_same_file
from inference.batch.shards import device_for_rank, merge_parts

# How the models name a text they refuse (inference.inputs.prepare_texts): its index in the list.
_AT_INDEX = re.compile(r"^text at index (\d+):")
EXIT_OK, EXIT_USAGE, EXIT_ROWS_FAILED, EXIT_INTERRUPTED = 0, 2, 3, 130
BACKENDS = {"classifier": CLASSIFIER_BACKENDS, "summarizer": SUMMARIZER_BACKENDS}


def load_model(kind: str, args: argparse.Namespace):
    """Load the classifier or summarizer named by its flag; any failure is a one-line usage error.

    Example:
        >>> from inference.cli import build_parser
        >>> try:
        ...     load_model("classifier", build_parser().parse_args(["classify", "x", "--classifier", "/"]))
        ... except UsageError as err:
        ...     print(err)
        --classifier /: model '/': / has no config.json, so it is not a saved model directory
    """
    from inference.loading import resolve_model

    flag = getattr(args, kind)
    if flag is not None and not flag.strip():  # e.g. --classifier "$MODEL" with MODEL unset: not the default model
        raise UsageError(f"--{kind}: empty; give a model directory or hub id, or leave the flag out")
    try:
        path = resolve_model(kind, flag, how_to_pass=f"pass --{kind} DIR")
        if kind == "classifier":
            from inference.classifier import Classifier as Model
        else:
            from inference.summarizer import Summarizer as Model
        with _loading_bars(shows_progress(args)):
            device = device_for_rank(args.device)
            model = Model.from_pretrained(
                path, device=device, dtype=args.dtype, quantize=args.quantize, backend=args.backend
            )
            args.precisions = {**getattr(args, "precisions", {}), kind: model.precision}  # for the summary line
            return model
    except (OSError, ValueError, ImportError) as exc:  # ImportError: a fast engine is not installed
        from inference.model_checks import first_line  # here: importing it pulls in torch

        reason = first_line(exc)
        raise UsageError(f"--{kind} {flag}: {reason}" if flag else reason) from None


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


def shows_progress(args: argparse.Namespace) -> bool:
    """Progress goes to stderr when it is a terminal or --progress asks for it, never with --quiet.

    Example:
        >>> shows_progress(argparse.Namespace(progress=True, quiet=False))
        True
        >>> shows_progress(argparse.Namespace(progress=True, quiet=True))
        False
    """
    quiet, asked = getattr(args, "quiet", False), getattr(args, "progress", False)
    return not quiet and (asked or sys.stderr.isatty())


def _read_texts(texts: list[str]) -> list[str]:
    """The texts from the command line, with ``-`` read from stdin, each checked before any model loads."""
    if texts.count(STDIO) > 1:
        raise UsageError("TEXT: '-' (stdin) can be given only once")
    if STDIO in texts:
        check_not_same_file(STDIO, STDIO, source_name="TEXT -")
    read = [_read_stdin() if text == STDIO else text for text in texts]
    for name, text in zip(text_names(texts), read, strict=True):
        check_text(name, text)
    return read


def text_names(texts: list[str]) -> list[str]:
    """How an error names each TEXT argument: by its place on the command line, or as stdin.

    Example:
        >>> text_names(["خبر", "-"])
        ['TEXT 1', 'TEXT - (stdin)']
    """
    return ["TEXT - (stdin)" if text == STDIO else f"TEXT {place}" for place, text in enumerate(texts, start=1)]


def check_text(name: str, text: str) -> None:
    """Refuse an empty text, or one over ``khabar predict``'s limit, before a model spends time loading.

    Example:
        >>> check_text("TEXT 2", " ")
        Traceback (most recent call last):
        ...
        inference.batch.formats.UsageError: TEXT 2: empty or whitespace only
    """
    if not text.strip():
        raise UsageError(f"{name}: empty or whitespace only")
    if len(text) > MAX_TEXT_CHARS:
        raise UsageError(f"{name}: {len(text):,} characters, over the {MAX_TEXT_CHARS:,} limit for one text")


def _read_stdin() -> str:
    """stdin as UTF-8 text, never holding more than a text within the limit could take."""
    if sys.stdin is None:  # started with stdin closed (`<&-`)
        raise UsageError("TEXT - (stdin): stdin is closed; give the text as an argument or pipe it in")
    if sys.stdin.isatty():  # else a bare `khabar classify -` looks hung
        print("khabar: reading TEXT from stdin; end it with Ctrl-D", file=sys.stderr)
    # UTF-8 takes at most 4 bytes a character: past this many bytes the text is surely over the limit.
    most = 4 * MAX_TEXT_CHARS
    data = sys.stdin.buffer.read(most + 1)
    if len(data) > most:
        raise UsageError(f"TEXT - (stdin): over the {MAX_TEXT_CHARS:,}-character limit for one text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"TEXT - (stdin): not UTF-8 text (byte {exc.start + 1})") from None


def classify_command(args: argparse.Namespace) -> int:
    """``khabar classify``: print each text's topic and score, tab-separated, one line per text.

    Example:
        >>> from inference.cli import build_parser
        >>> classify_command(build_parser().parse_args(["classify", "-", "-"]))
        Traceback (most recent call last):
        ...
        inference.batch.formats.UsageError: TEXT: '-' (stdin) can be given only once
    """
    from inference.normalize import join_title

    if args.title is not None and len(args.texts) > 1:  # whose headline? applied to all, it would skew the others
        raise UsageError(
            f"--title is one article's headline, but {len(args.texts)} TEXTs were given; classify them one at a time, "
            "or use khabar predict with a title column"
        )
    texts = [join_title(args.title, text) for text in _read_texts(args.texts)]
    results = _answer(load_model("classifier", args), "predict", texts, text_names(args.texts))
    for result in results:
        print(f"{result['label']}\t{result['score']:.4f}")
    return EXIT_OK


def summarize_command(args: argparse.Namespace) -> int:
    """``khabar summarize``: print each text's summary, one line per text.

    Example:
        >>> from inference.cli import build_parser
        >>> summarize_command(build_parser().parse_args(["summarize", "x", "--summarizer", "no/such/dir"]))
        Traceback (most recent call last):
        ...
        inference.batch.formats.UsageError: --summarizer no/such/dir: model 'no/such/dir': no such model directory
    """
    texts = _read_texts(args.texts)
    decoding = {"num_beams": args.num_beams, "max_new_tokens": args.max_new_tokens}
    summaries = _answer(load_model("summarizer", args), "summarize", texts, text_names(args.texts), **decoding)
    for summary in summaries:
        # One line per TEXT is the output's contract: a line break inside a summary would shift every later one.
        print(" ".join(summary.splitlines()))
    return EXIT_OK


def _answer(model, method: str, texts: list[str], names: list[str], **settings) -> list:
    """``model.<method>(texts)``; a text the model refuses is a one-line usage error naming its TEXT argument."""
    try:
        return getattr(model, method)(texts, **settings)
    except (ValueError, TypeError) as exc:
        # The models count texts from 0 ("text at index 1: ..."); the command line counts TEXT arguments.
        message = _AT_INDEX.sub(lambda found: f"{names[int(found[1])]}:", str(exc), count=1)
        raise UsageError(message) from None


def merge_command(args: argparse.Namespace) -> int:
    """``khabar merge``: join shard outputs into input order (see the module example for a bad part)."""
    count = merge_parts(args.parts, args.output, overwrite=args.overwrite, allow_missing=args.allow_missing)
    print(f"khabar merge: {count} records from {len(args.parts)} parts -> {args.output}", file=sys.stderr)
    return EXIT_OK

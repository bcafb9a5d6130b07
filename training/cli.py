"""``khabar-train``: train a model from a YAML config, or run a training-side tool.

Usage:
    khabar-train CONFIG [key=value ...]     train (the config's ``task`` picks the trainer);
                                            the same as ``khabar-train train CONFIG ...``
    khabar-train tiny-models [--out DIR]    build the tiny offline models
    khabar-train evaluate --model DIR ...   write an evaluation report
    khabar-train card DIR                   write a trained model's README.md model card
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import logging
import os
import sys
import typing
from importlib import import_module
from pathlib import Path

from transformers import TrainerCallback

from inference.install_check import install_clashes
from inference.interrupts import sigterm_as_interrupt
from inference.model_checks import DISK_FULL_ERRNOS, error_line, nearly_full
from training import model_card, tiny
from training.checkpoints import last_complete_checkpoint
from training.config import ConfigError, ExperimentConfig, load_config
from training.data import DataError
from training.distributed import is_main_process, one_of_several_warning, quiet_replicas
from training.evaluation import cli as evaluation
from training.output_dir import claim_output_dir
from training.recipe_parts import TrainingDiverged

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command stopped by Ctrl-C
TRAINERS = {"classification": "training.classifier", "summarization": "training.summarizer"}
COMMANDS = ("train", "tiny-models", "evaluate", "card")


class _Parser(argparse.ArgumentParser):
    """Report a bad flag in one line (plus a pointer to --help), not a usage dump; as ``khabar`` does."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def field_help(cls: type = ExperimentConfig, prefix: str = "") -> list[tuple[str, str]]:
    """Every config key with its one-line description (from the fields' metadata), for ``--help``.

    Example:
        >>> dict(field_help())["train.learning_rate"]
        'Peak learning rate of the linear schedule.'
    """
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            rows += field_help(hints[f.name], prefix + f.name + ".")
        else:
            rows.append((prefix + f.name, f.metadata.get("help", "")))
    return rows


def config_keys() -> str:
    """The ``Config keys`` block of ``--help``: every key and what it does.

    Example:
        >>> "train.learning_rate" in config_keys()
        True
    """
    keys = "\n".join(f"  {key:<36} {doc}" for key, doc in field_help())
    return f"config keys (override any with key=value):\n{keys}\n"


def build_parser() -> argparse.ArgumentParser:
    """The ``khabar-train`` argument parser with its train, tiny-models, evaluate and card commands.

    Example:
        >>> build_parser().parse_args(["train", "c.yaml", "train.epochs=1"]).overrides
        ['train.epochs=1']
    """
    raw = argparse.RawDescriptionHelpFormatter
    parser = _Parser(prog="khabar-train", description=__doc__, epilog=config_keys(), formatter_class=raw)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train = commands.add_parser(
        "train",
        help="train from a YAML config (implied when CONFIG comes first)",
        epilog=config_keys(),
        description="Train the model a YAML config describes; key=value overrides win.",
        formatter_class=raw,
    )
    train.add_argument("config", metavar="CONFIG", help="YAML config, e.g. configs/classifier/tiny.yaml")
    train.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.epochs=1")
    train.set_defaults(handler=train_from_args)
    tools = (
        ("tiny-models", tiny, "build the tiny offline models", tiny.__doc__.split("\n\n")[0]),
        ("evaluate", evaluation, "write an evaluation report", evaluation.DESCRIPTION),
        ("card", model_card, "write a trained model's README.md model card", model_card.CARD_DESCRIPTION),
    )
    for name, module, summary, description in tools:
        tool = commands.add_parser(name, help=summary, description=description)
        module.add_arguments(tool)
        tool.set_defaults(handler=getattr(module, "execute", None) or module.run)
    return parser


def train_from_args(args: argparse.Namespace) -> int:
    """Load the config, pick the trainer for its task, and train, holding ``output_dir`` for the run.

    Ctrl-C or SIGTERM ends the run with one line saying where it stopped and how to continue (exit code 130);
    so does a disk that fills up while a checkpoint or the model is written (exit code 1).
    """
    cfg = load_config(args.config, args.overrides)
    tiny.ensure_tiny_models(cfg)
    quiet_replicas()
    if warning := one_of_several_warning():
        logging.getLogger(__name__).warning(warning)
    trainer = import_module(TRAINERS[cfg.task])
    progress = StepReached()
    try:
        with sigterm_as_interrupt(), claim_output_dir(cfg):  # SIGTERM (a scheduler's stop) as Ctrl-C
            trainer.train(cfg, callbacks=[progress])
    except KeyboardInterrupt:
        close_progress_bars()  # else a bar closed later redraws itself below the message
        if is_main_process():  # under torchrun every process is stopped: one says how to go on
            print(f"khabar-train: {interrupted_message(cfg, progress.step)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except TrainingDiverged as error:
        close_progress_bars()
        if is_main_process():  # every process holds the same weights: one says it
            print(f"khabar-train: error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except model_card.CardError as error:  # written last: the model itself is saved
        print(
            f"khabar-train: error: {error}; the model is saved: khabar-train card {cfg.output_dir} writes it again",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    except Exception as error:
        if not disk_full(error, Path(cfg.output_dir)):
            raise
        close_progress_bars()
        where = getattr(error, "filename", None) or cfg.output_dir  # the datasets cache or /tmp fill up too
        print(f"khabar-train: error: {disk_full_message(cfg, progress.step, where)}", file=sys.stderr)
        return EXIT_FAILURE
    return 0


def disk_full(error: BaseException, folder: Path) -> bool:
    """Whether ``error`` is a write that failed because the disk holding ``folder`` is full.

    ``OSError`` says so by its errno and safetensors in its message; torch's writer only says the
    write failed, so then the free space decides.

    Example:
        >>> import errno
        >>> disk_full(OSError(errno.ENOSPC, "No space left on device"), Path("."))
        True
        >>> disk_full(ValueError("bad value"), Path("."))
        False
    """
    chain = _causes(error)
    if any(isinstance(e, OSError) and e.errno in (*DISK_FULL_ERRNOS, errno.EFBIG) for e in chain):
        return True  # EFBIG: a file-size limit (ulimit -f), which a run stops at as it does at a full disk
    text = " ".join(str(e) for e in chain)
    if any(words in text for words in ("No space left on device", "StorageFull", "File too large")):
        return True
    # torch's zip writer words a failed write several ways (2.13: "unexpected pos", "basic_ios::clear").
    if not any(words in text for words in _TORCH_WRITE_FAILED):
        return False
    return nearly_full(folder) or _file_size_limited()


def _file_size_limited() -> bool:
    """Whether this process may write files only up to a size (``ulimit -f``): torch's writer then fails alike."""
    try:
        import resource
    except ImportError:  # Windows
        return False
    return resource.getrlimit(resource.RLIMIT_FSIZE)[0] != resource.RLIM_INFINITY


_TORCH_WRITE_FAILED = ("write failed", "unexpected pos", "basic_ios::clear", "iostream error")


def _causes(error: BaseException) -> list[BaseException]:
    """``error`` and the exceptions it was raised from or during (torch wraps the OSError of a write)."""
    chain: list[BaseException] = []
    while error is not None and error not in chain and len(chain) < 20:
        chain.append(error)
        error = error.__cause__ or error.__context__
    return chain


class StepReached(TrainerCallback):
    """Remembers the last optimizer step finished, for the line printed when a run is interrupted.

    Example:
        >>> StepReached().step
        0
    """

    def __init__(self) -> None:
        self.step = 0

    def on_step_end(self, args, state, control, **kwargs):
        self.step = state.global_step


def close_progress_bars() -> None:
    """Close every open ``tqdm`` bar now, ending its line, so the next message starts on a line of its own.

    Example:
        >>> from tqdm import tqdm
        >>> bar = tqdm(total=3, disable=True)
        >>> close_progress_bars()
    """
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


def interrupted_message(cfg: ExperimentConfig, step: int) -> str:
    """What an interrupted run tells the user: the step it reached and how to go on from its last checkpoint.

    Example:
        >>> from training.config import load_config
        >>> interrupted_message(load_config("configs/classifier/tiny.yaml", ["output_dir=/nonexistent"]), 7)
        'interrupted at step 7, before the first checkpoint; run again to start over'
    """
    return f"interrupted at step {step}{_how_to_go_on(cfg)}"


def disk_full_message(cfg: ExperimentConfig, step: int, where: str | os.PathLike | None = None) -> str:
    """What a run stopped by a full disk tells the user: where (``where``, else ``output_dir``), and how to go on.

    Example:
        >>> from training.config import load_config
        >>> disk_full_message(load_config("configs/classifier/tiny.yaml", ["output_dir=/x"]), 7)
        'no space left on device writing /x (step 7), before the first checkpoint; free some space and run again'
    """
    how = _how_to_go_on(cfg, "free some space and ")
    return f"no space left on device writing {where or cfg.output_dir} (step {step}){how}"


def _how_to_go_on(cfg: ExperimentConfig, first: str = "") -> str:
    checkpoint = last_complete_checkpoint(Path(cfg.output_dir))
    if checkpoint is None:
        return f", before the first checkpoint; {first}run again" + ("" if first else " to start over")
    return f"; {first}continue with train.resume=true (from {Path(checkpoint).name})"


def os_error_line(error: OSError) -> str:
    """One line for a file the system refused: which file and why, without a traceback.

    Example:
        >>> import errno
        >>> os_error_line(PermissionError(errno.EACCES, "Permission denied", "out/report.md"))
        'out/report.md: Permission denied'
        >>> os_error_line(OSError(errno.ENOSPC, "No space left on device", "out/report.md"))
        'out/report.md: no space left on device; free some space and run again'
    """
    if disk_full(error, Path(error.filename or ".").parent):
        where = f"{error.filename}: " if error.filename else ""
        return f"{where}no space left on device; free some space and run again"
    return error_line(error)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``khabar-train``; returns the process exit code (2 for user errors).

    Example:
        >>> main(["no/such/config.yaml"])
        2
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    if not argv:
        parser.print_help()
        return EXIT_USAGE
    if argv[0] not in COMMANDS and not argv[0].startswith("-"):
        argv = ["train", *argv]  # `khabar-train CONFIG key=value ...`
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a bad flag already reported in one line
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    for clash in install_clashes():
        print(f"khabar-train: warning: {clash}", file=sys.stderr)
    try:
        return args.handler(args)
    except (ConfigError, DataError) as error:
        print(f"khabar-train: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as error:  # a file or folder the system refused (training reports a full disk with its step)
        print(f"khabar-train: error: {os_error_line(error)}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":  # python -m training.cli, as python -m training
    sys.exit(main())

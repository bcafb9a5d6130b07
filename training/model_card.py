"""Model cards: a ``README.md`` in every trained model directory, written offline from what training saved.

The card reads the directory only (``config.json``, ``config.yaml``, ``metrics.json``,
``normalization.json``, ``generation_config.json``), so ``khabar-train card DIR`` can write it again
later, and the hub shows it as is: YAML front matter in the hub's model-card format, then the task,
labels, data, test metrics beside the baselines, settings, hardware and how to load the model.

Example:
    >>> print(card_front_matter({"pipeline_tag": "summarization", "metrics": ["rouge"]}).splitlines()[4])
    pipeline_tag: summarization
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import sys
from pathlib import Path

import yaml

from inference.batch.atomic import write_text_atomically
from inference.model_checks import first_line
from training.card_baselines import baseline_scores
from training.model_kind import is_seq2seq

CARD_DESCRIPTION = "Write the README.md model card of a trained model directory."

log = logging.getLogger(__name__)

CARD_NAME = "README.md"
# A hub repository id (``org/name``); local starting points are not named as a hub base model.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class CardError(ValueError):
    """A directory a card cannot be written for, reported in one line.

    Example:
        >>> issubclass(CardError, ValueError)
        True
    """


def describe_hardware() -> str:
    """The machine a run used, in words: the accelerator if any, else the processor and its core count.

    Example:
        >>> isinstance(describe_hardware(), str)
        True
    """
    import torch

    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        return f"{count} × {torch.cuda.get_device_name(0)}"
    return f"CPU: {_processor_name()} ({os.cpu_count()} cores), torch {torch.__version__}"


def _processor_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_model_card(model_dir: str | Path, hardware: str | None = None, baselines: bool = True) -> Path:
    """Write ``model_dir/README.md`` from the files training saved there; returns its path.

    ``hardware`` describes the machine that trained the model (training passes
    :func:`describe_hardware`; a card written later says it was not recorded unless ``metrics.json``
    has it). ``baselines`` scores the majority / TF-IDF (topics) or lead-1 (summaries) baselines on
    the run's data files when they are still on disk.

    Example:
        >>> write_model_card("no/such/dir")
        Traceback (most recent call last):
        ...
        training.model_card.CardError: no/such/dir: no such directory (a card is written inside a model directory)
    """
    facts = collect_facts(Path(model_dir), hardware)
    if baselines:
        facts["baselines"] = baseline_scores(facts["task"], facts["run"].get("data", {}))
    path = Path(model_dir) / CARD_NAME
    try:  # a failed write (full disk) must not leave half a card in place of the old one
        write_text_atomically(path, render_card(facts))
    except OSError as error:
        raise CardError(f"{path}: cannot write the card ({error.strerror or error})") from None
    return path


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CardError(f"{path}: unreadable ({error})") from None
    if not isinstance(data, dict):
        raise CardError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def collect_facts(model_dir: Path, hardware: str | None = None) -> dict:
    """What the card says, gathered from the model directory into one plain dict.

    Example:
        >>> collect_facts(Path("."))
        Traceback (most recent call last):
        ...
        training.model_card.CardError: .: not a model directory (no config.json)
    """
    if not model_dir.is_dir():
        raise CardError(f"{model_dir}: no such directory (a card is written inside a model directory)")
    # An evaluation report folder has a metrics.json too, of another layout: without the model it is no model.
    if not (model_dir / "config.json").is_file():
        raise CardError(f"{model_dir}: not a model directory (no config.json)")
    if not (model_dir / "metrics.json").is_file():
        raise CardError(f"{model_dir}: not a trained khabar model directory (no metrics.json)")
    metrics = _read_json(model_dir / "metrics.json")
    model_config = _read_json(model_dir / "config.json")
    run = _run_config(model_dir / "config.yaml")
    task = run.get("task")
    if task not in ("classification", "summarization"):  # unrecorded, or a hand-edited value: the model tells
        task = "summarization" if is_seq2seq(model_config) else "classification"
    start = (run.get("model") or {}).get("name_or_path") or (run.get("model") or {}).get("config")
    return {
        "model_dir": str(model_dir),
        "task": task,
        "metrics": metrics,
        "model_config": model_config,
        "run": run,
        "normalization": _read_json(model_dir / "normalization.json"),
        "generation": _read_json(model_dir / "generation_config.json"),
        "base_model": start if start and _HUB_ID.match(str(start)) and not Path(str(start)).exists() else None,
        "start": start,
        "parameters": _parameter_count(model_dir),
        "hardware": hardware or metrics.get("train", {}).get("hardware") or "not recorded",
        "pipeline_tag": "summarization" if task == "summarization" else "text-classification",
        "metrics_names": ["rouge"] if task == "summarization" else ["accuracy", "f1"],
    }


def _run_config(path: Path) -> dict:
    """The training run's resolved config; a damaged one is said in a warning and left out of the card."""
    if not path.is_file():
        return {}
    try:
        run = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        log.warning("%s is unreadable (%s): the card leaves out the training settings", path, first_line(error))
        return {}
    if not isinstance(run, dict):
        log.warning("%s holds no settings (a %s): the card leaves them out", path, type(run).__name__)
        return {}
    return run


def _parameter_count(model_dir: Path) -> int | None:
    """Parameters in the saved safetensors weights, read from their headers (no tensor is loaded)."""
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        return None
    from safetensors import safe_open

    total = 0
    for file in files:
        with safe_open(str(file), framework="np") as weights:
            for name in weights.keys():  # noqa: SIM118 - safe_open is not a mapping
                shape = weights.get_slice(name).get_shape()
                count = 1
                for size in shape:
                    count *= size
                total += count
    return total


def card_front_matter(facts: dict) -> str:
    """The hub's YAML front matter: language, licence, pipeline tag, base model, metrics.

    Example:
        >>> print(card_front_matter({"pipeline_tag": "text-classification", "base_model": "org/bert",
        ...                          "metrics": ["accuracy", "f1"]}), end="")
        ---
        language: fa
        license: apache-2.0
        library_name: transformers
        pipeline_tag: text-classification
        base_model: org/bert
        tags:
        - khabar
        - persian
        - news
        metrics:
        - accuracy
        - f1
        ---
    """
    meta: dict = {
        "language": "fa",
        "license": "apache-2.0",
        "library_name": "transformers",
        "pipeline_tag": facts["pipeline_tag"],
    }
    if facts.get("base_model"):
        meta["base_model"] = facts["base_model"]
    meta["tags"] = ["khabar", "persian", "news"]
    meta["metrics"] = list(facts["metrics"])
    return "---\n" + yaml.safe_dump(meta, allow_unicode=True, sort_keys=False) + "---\n"


def render_card(facts: dict) -> str:
    """The whole card as Markdown.

    Example:
        >>> "## How to load" in render_card({
        ...     "model_dir": "m", "task": "classification", "metrics": {"labels": ["a", "b"]},
        ...     "model_config": {}, "run": {}, "normalization": {}, "generation": {}, "base_model": None,
        ...     "start": None, "parameters": 1000, "hardware": "CPU", "pipeline_tag": "text-classification",
        ...     "metrics_names": ["accuracy"]})
        True
    """
    from training.card_sections import SECTIONS

    front = card_front_matter({**facts, "metrics": facts["metrics_names"]})
    body = "\n".join(section(facts) for section in SECTIONS)
    return front + "\n" + body


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The ``khabar-train card`` arguments, added to ``parser``.

    Example:
        >>> add_arguments(argparse.ArgumentParser()).parse_args(["models/classifier"]).no_baselines
        False
    """
    parser.add_argument("model_dir", help="a directory written by khabar-train")
    parser.add_argument("--no-baselines", action="store_true", help="skip scoring the baselines on the data files")
    return parser


def run(args: argparse.Namespace) -> int:
    """Write the card ``args`` asks for; returns the exit code (2 with a one-line message for a bad directory)."""
    try:
        path = write_model_card(args.model_dir, baselines=not args.no_baselines)
    except CardError as error:
        print(f"khabar-train card: error: {error}", file=sys.stderr)
        return 2
    except (TypeError, ValueError, KeyError, AttributeError) as error:  # a hand-edited file of the wrong shape
        print(
            f"khabar-train card: error: {args.model_dir}: a file in it is not as khabar-train writes it "
            f"({type(error).__name__}: {error}); restore metrics.json / config.yaml or retrain",
            file=sys.stderr,
        )
        return 2
    print(f"model card written to {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``khabar-train card DIR``: write (or rewrite) a trained model directory's ``README.md`` card.

    Example:
        >>> main(["no/such/dir"])
        2
    """
    parser = argparse.ArgumentParser(prog="khabar-train card", description=CARD_DESCRIPTION)
    return run(add_arguments(parser).parse_args(argv))

"""Find a model, check it is the kind asked for, and load its config, tokenizer and weights safely.

Shared by :class:`~inference.classifier.Classifier` and :class:`~inference.summarizer.Summarizer`
so both read a model the same way, whatever the backend. Where it runs and in what precision is
:mod:`inference.devices`; the texts it reads are prepared by :mod:`inference.inputs`.

Example:
    >>> resolve_model("classifier", "org/some-model")
    'org/some-model'
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Literal

import torch
from huggingface_hub.errors import StrictDataclassError
from safetensors import SafetensorError

# Re-exported for training/, which imports these from here.
from inference.devices import T5_FAMILY, DeviceError  # noqa: F401
from inference.model_checks import (
    BrokenModelError,
    check_decoding,
    check_loaded,
    check_model_files,
    check_sizes,
    config_error,
    first_line,
    weights_error,
)
from inference.normalize import NORMALIZATION_FILE, DigitPolicy, load_normalization

ModelKind = Literal["classifier", "summarizer"]

# kind -> (environment variable, default directory in the working directory, config that trains one)
_MODEL_SOURCES = {
    "classifier": ("KHABAR_CLASSIFIER", "models/classifier", "configs/classifier/tiny.yaml"),
    "summarizer": ("KHABAR_SUMMARIZER", "models/summarizer", "configs/summarizer/tiny.yaml"),
}
# "org/name" as the Hugging Face hub spells a repository id.
_HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# A tokenizer without a configured limit reports a huge sentinel; real limits are far below this.
_NO_LIMIT = 1_000_000
DEFAULT_MAX_LENGTH = 512


class ModelNotFoundError(ValueError):
    """No model where one was asked for; the message says how to get one.

    Example:
        >>> issubclass(ModelNotFoundError, ValueError)
        True
    """


def resolve_model(kind: ModelKind, model: str | os.PathLike | None, how_to_pass: str = "pass model=...") -> str:
    """Where to load a ``kind`` model from: ``model``, else ``$KHABAR_<KIND>``, else ``models/<kind>``.

    A local directory must hold a saved model (``config.json``). A string that is not a local
    path but looks like a hub id (``org/name``) is returned as is for ``from_pretrained``.
    ``how_to_pass`` is the advice given when no model is found, in the caller's terms (a flag for the CLI).

    Example:
        >>> resolve_model("classifier", "HooshvareLab/bert-fa-base-uncased-clf-persiannews")
        'HooshvareLab/bert-fa-base-uncased-clf-persiannews'
        >>> resolve_model("summarizer", "no/such/folder")
        Traceback (most recent call last):
        ...
        inference.loading.ModelNotFoundError: model 'no/such/folder': no such model directory
    """
    if kind not in _MODEL_SOURCES:
        raise ValueError(f"unknown model kind {kind!r}; choose classifier or summarizer")
    env_var, default_dir, config = _MODEL_SOURCES[kind]
    if model is not None and str(model).strip():
        return _checked_source(str(model), f"model {str(model)!r}")
    if os.environ.get(env_var, "").strip():
        return _checked_source(os.environ[env_var].strip(), f"{env_var}={os.environ[env_var].strip()}")
    if Path(default_dir).is_dir():
        return _checked_source(default_dir, f"{default_dir} (the default)")
    raise ModelNotFoundError(
        f"no {kind} model: {how_to_pass}, set {env_var}, or train one with `khabar-train {config}`"
    )


def _checked_source(source: str, named: str) -> str:
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"{named}: {path} has no config.json, so it is not a saved model directory")
        return str(path)
    if path.exists():
        raise ModelNotFoundError(f"{named}: {path} is a file; give the model's directory")
    if _HUB_ID_RE.match(source):
        return source
    raise ModelNotFoundError(f"{named}: no such model directory")


def is_local(path_or_id: str | os.PathLike) -> bool:
    """Whether ``path_or_id`` is a local directory rather than a hub id.

    Example:
        >>> is_local("."), is_local("org/no-such-model")
        (True, False)
    """
    return Path(path_or_id).expanduser().is_dir()


def load_config_and_tokenizer(path_or_id: str, kind: ModelKind):
    """The model's ``config`` and tokenizer, after checking the model is a ``kind``.

    A hub id that cannot be fetched (offline, or no such repository) and a model of the other
    kind are one-line :class:`ModelNotFoundError`\\ s rather than long library tracebacks.

    Example:
        >>> import tempfile
        >>> from training.tiny import build_tiny_summarizer
        >>> config, tokenizer = load_config_and_tokenizer(str(build_tiny_summarizer(tempfile.mkdtemp())), "summarizer")
        >>> config.model_type
        'mt5'
    """
    from transformers import AutoConfig, AutoTokenizer

    if is_local(path_or_id) and not (Path(path_or_id).expanduser() / "config.json").is_file():
        raise ModelNotFoundError(
            f"cannot load {path_or_id}: it has no config.json, so it is not a saved model directory"
        )
    if is_local(path_or_id):
        check_model_files(path_or_id)
    where = "" if is_local(path_or_id) else " (not a local directory; is the hub id right and reachable?)"
    try:
        config = AutoConfig.from_pretrained(path_or_id, trust_remote_code=False)
    except StrictDataclassError as exc:  # a value of the wrong type: transformers' config classes are typed
        raise config_error(path_or_id, exc) from None
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(f"cannot load {path_or_id}{where}: {first_line(exc)}") from None
    except (TypeError, AttributeError, KeyError) as exc:  # a malformed value, e.g. id2label given as a list
        raise config_error(path_or_id, exc) from None
    check_sizes(config, path_or_id)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path_or_id, trust_remote_code=False)
    except (OSError, ValueError, TypeError) as exc:  # a damaged tokenizer.json fails in several ways
        raise ModelNotFoundError(
            f"cannot load {path_or_id}{where}: its tokenizer files (tokenizer.json, ...): {first_line(exc)}"
        ) from None
    seq2seq = is_seq2seq(config)
    if kind == "classifier" and seq2seq:
        raise ModelNotFoundError(f"{path_or_id} is a {config.model_type} summarizer, not a topic classifier")
    if kind == "summarizer" and not seq2seq:
        raise ModelNotFoundError(f"{path_or_id} is a {config.model_type} model, not a sequence-to-sequence summarizer")
    return config, tokenizer


def is_seq2seq(config) -> bool:
    """Whether a model ``config`` is a sequence-to-sequence (encoder-decoder) model: a summarizer here.

    Example:
        >>> from transformers import BertConfig, MT5Config
        >>> is_seq2seq(MT5Config()), is_seq2seq(BertConfig())
        (True, False)
    """
    return bool(getattr(config, "is_encoder_decoder", False))


def saved_generation_config(source: str, config):
    """The directory's ``generation_config.json``, else (none saved) the defaults its model config
    implies; a saved one that cannot be read, or whose decoding settings are of a wrong type or out
    of range (:func:`~inference.model_checks.check_decoding`), is a ``BrokenModelError`` naming it.

    Example:
        >>> import tempfile
        >>> from transformers import AutoConfig
        >>> from training.tiny import build_tiny_summarizer
        >>> path = str(build_tiny_summarizer(tempfile.mkdtemp()))
        >>> saved_generation_config(path, AutoConfig.from_pretrained(path)).num_beams
        4
    """
    from transformers import GenerationConfig

    saved = Path(source) / "generation_config.json"
    if is_local(source) and saved.is_file():
        # Checked before transformers reads it: its own checks miss most types and ranges (a string
        # max_new_tokens fails with a TypeError; zero beams or a negative n-gram size fail every text).
        check_decoding(_read_decoding(saved), saved)
    try:
        return GenerationConfig.from_pretrained(source)
    except (OSError, ValueError, TypeError) as exc:
        if is_local(source) and saved.exists():
            # Read past, it would decode greedily with transformers' 20-token default, silently.
            reason = " ".join(str(exc).split())
            raise BrokenModelError(f"{saved}: cannot be read as decoding settings ({reason})") from None
        return GenerationConfig.from_model_config(config)


def _read_decoding(saved: Path) -> dict:
    """The settings in ``generation_config.json``; a file that is not a JSON object is a ``BrokenModelError``."""
    try:
        settings = json.loads(saved.read_text(encoding="utf-8"))
    except ValueError as exc:  # UnicodeDecodeError included
        raise BrokenModelError(f"{saved}: cannot be read as decoding settings (not valid JSON: {exc})") from None
    if not isinstance(settings, dict):
        raise BrokenModelError(f"{saved}: cannot be read as decoding settings (not a JSON object)")
    return settings


def load_weights(
    auto_class: type, path_or_id: str, device: torch.device, dtype: torch.dtype, quantize: str | None, **options
):
    """Load a ``transformers`` model safely, in eval mode, on ``device`` in ``dtype`` (int8 if asked).

    ``trust_remote_code`` stays off (a checkpoint's own Python never runs here) and a directory
    with ``*.safetensors`` files is loaded only from those (never from a pickle beside them).
    Missing weights and NaN are refused (:func:`check_loaded`). ``options`` go to ``from_pretrained``.

    Example:
        >>> import tempfile
        >>> from transformers import AutoModelForSequenceClassification as Auto
        >>> from training.tiny import build_tiny_classifier
        >>> path = str(build_tiny_classifier(tempfile.mkdtemp()))
        >>> load_weights(Auto, path, torch.device("cpu"), torch.float32, "int8").training
        False
    """
    safetensors = True if is_local(path_or_id) and any(Path(path_or_id).glob("*.safetensors")) else None
    with _load_report_held() as report:
        try:
            model, info = auto_class.from_pretrained(
                path_or_id,
                dtype=dtype,
                trust_remote_code=False,
                use_safetensors=safetensors,
                output_loading_info=True,
                # Weights that do not fit config.json come back in `info`, for check_loaded's one line,
                # rather than as an error advising a flag the user never set.
                ignore_mismatched_sizes=True,
                **options,
            )
        except (OSError, ValueError, RuntimeError, pickle.UnpicklingError, SafetensorError) as exc:
            raise weights_error(path_or_id, exc) from None
    check_loaded(model, info, path_or_id)  # a random head, misfit shapes or NaN: refused, in one line, before output
    _show(report)  # nothing refused: transformers' notes (weights the model does not use, say) are shown as usual
    model.eval()
    if quantize == "int8":
        return quantize_int8(model)
    return model.to(device)


# What transformers logs its weight-loading report (missing, mismatched, unused weights) to.
_LOAD_REPORT_LOGGER = "transformers.modeling_utils"


@contextmanager
def _load_report_held() -> Iterator[list[logging.LogRecord]]:
    """Hold back what transformers logs while loading weights, for the caller to :func:`_show` or drop.

    Its load report is a table of every missing or misfit weight; khabar refuses those in one line
    (:func:`check_loaded`), so the table is shown only when no such line follows. A load that fails
    shows it at once: transformers' own errors then point at "the above report".
    """
    logger = logging.getLogger(_LOAD_REPORT_LOGGER)
    held: list[logging.LogRecord] = []

    def hold(record: logging.LogRecord) -> bool:
        held.append(record)
        return False

    logger.addFilter(hold)
    try:
        yield held
    except BaseException:
        logger.removeFilter(hold)
        _show(held)
        raise
    finally:
        logger.removeFilter(hold)


def _show(records: list[logging.LogRecord]) -> None:
    """Log ``records`` held back by :func:`_load_report_held`, as they would have been."""
    for record in records:
        logging.getLogger(record.name).handle(record)


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """Dynamic int8 quantization of ``model``'s linear layers, for faster CPU inference.

    Example:
        >>> quantize_int8(torch.nn.Sequential(torch.nn.Linear(4, 2)))[0].weight().dtype
        torch.qint8
    """
    from torch.ao.quantization import quantize_dynamic

    # torch marks its eager quantization API deprecated in favour of the separate torchao
    # package; it still works, and a user cannot act on the warning, so it is not shown.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def model_max_length(tokenizer, config) -> int:
    """The most tokens the model reads at once: the tokenizer's limit, capped by the model's positions.

    Example:
        >>> from types import SimpleNamespace as NS
        >>> model_max_length(NS(model_max_length=10**30), NS(max_position_embeddings=512))
        512
        >>> model_max_length(NS(model_max_length=10**30), NS())
        512
    """
    limits = [tokenizer.model_max_length, getattr(config, "max_position_embeddings", None)]
    known = [int(limit) for limit in limits if limit and limit < _NO_LIMIT]
    return min(known) if known else DEFAULT_MAX_LENGTH


def text_digits(path_or_id: str) -> DigitPolicy:
    """The digit policy the model was trained with (the default for a hub checkpoint).

    Example:
        >>> text_digits("org/hub-model")
        'persian'
    """
    return load_normalization(normalization_folder(path_or_id))["digits"]


def text_normalization_version(path_or_id: str) -> int:
    """The normalization version the model was trained with (the current one for a hub checkpoint).

    Example:
        >>> text_normalization_version("org/hub-model")
        4
    """
    return load_normalization(normalization_folder(path_or_id))["version"]


@lru_cache(maxsize=64)
def normalization_folder(path_or_id: str) -> str | None:
    """Where the model's ``normalization.json`` is: the directory itself, or (a hub id) the folder the
    hub's copy was fetched to; None when the hub repository has none (a model not trained by khabar
    gets the current normalization) or cannot be reached.

    A khabar model pushed to the hub is then served with the normalization it was trained with,
    not the newest one.

    Example:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> normalization_folder(folder) == folder, normalization_folder("org/unreachable-model")
        (True, None)
    """
    if is_local(path_or_id):
        return path_or_id
    try:
        from huggingface_hub import hf_hub_download

        return str(Path(hf_hub_download(path_or_id, NORMALIZATION_FILE)).parent)
    except Exception:  # noqa: BLE001 - no such file, offline, or no such repository: the default applies
        return None

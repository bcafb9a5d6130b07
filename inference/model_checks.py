"""Refuse a broken model directory at load time, in one line, before it gives wrong answers.

``transformers`` loads a directory without tokenizer files (falling back to a default
tokenizer), fills weights missing from the checkpoint (a classification head the config
promises) with random values, and happily loads NaN weights: each gives a run that succeeds
with meaningless output. Its own errors for a corrupted ``.safetensors`` file or a pickle
that is not plain weights are long and, for the pickle, advise loading it unsafely. A wrongly typed
``config.json`` value fails deep in ``huggingface_hub``'s typed dataclasses, weights that do not fit
the config end in advice about a flag nobody set, and a ``generation_config.json`` with a string
for a number or zero beams loads and then fails every text. The checks here turn each into a
:class:`BrokenModelError` naming the directory, the file or key, and the fix.

Example:
    >>> import tempfile
    >>> check_model_files(tempfile.mkdtemp())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    inference.model_checks.BrokenModelError: cannot load ...: no tokenizer files (...)
"""

from __future__ import annotations

import dataclasses
import errno
import json
import math
import pickle
import re
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from huggingface_hub.errors import StrictDataclassFieldValidationError

from inference.inputs import DECODING_LIMITS

# What save_pretrained writes for the tokenizers khabar's models use (fast or slow, BERT or mT5).
# What save_pretrained writes for a tokenizer (vocab.json: byte-level BPE ones such as RoBERTa's).
TOKENIZER_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
    "vocab.json",
)
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "*.safetensors.index.json", "pytorch_model.bin.index.json")


class BrokenModelError(ValueError):
    """A model directory that is incomplete or damaged; the message names what is wrong.

    Example:
        >>> issubclass(BrokenModelError, ValueError)
        True
    """


def has_tokenizer_files(folder: str | Path) -> bool:
    """Whether ``folder`` holds a saved tokenizer (without one, transformers builds an empty tokenizer).

    Example:
        >>> import tempfile
        >>> has_tokenizer_files(tempfile.mkdtemp())
        False
    """
    return any((Path(folder).expanduser() / name).is_file() for name in TOKENIZER_FILES)


def check_model_files(path: str | Path) -> None:
    """Refuse a local model directory without tokenizer files or without weights.

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / "tokenizer.json").write_text("{}")
        >>> check_model_files(folder)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        inference.model_checks.BrokenModelError: cannot load ...: no weights (model.safetensors ...)
    """
    folder = Path(path).expanduser()
    if not has_tokenizer_files(folder):
        raise BrokenModelError(
            f"cannot load {path}: no tokenizer files ({', '.join(TOKENIZER_FILES[:3])}, ...); "
            "save the tokenizer into the model directory (tokenizer.save_pretrained)"
        )
    if not any(next(folder.glob(pattern), None) for pattern in WEIGHT_PATTERNS):
        raise BrokenModelError(f"cannot load {path}: no weights (model.safetensors or pytorch_model.bin)")


def check_loaded(model: torch.nn.Module, loading_info: dict, path: str) -> None:
    """Refuse weights the checkpoint lacked (so they are random), layers the config leaves out
    (a ``config.json`` with fewer layers than the checkpoint: transformers drops the rest), or weights
    that are NaN or infinite.

    Example:
        >>> layer = torch.nn.Linear(2, 2)
        >>> with torch.no_grad():
        ...     _ = layer.weight.fill_(float("nan"))
        >>> check_loaded(layer, {}, "m")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        inference.model_checks.BrokenModelError: cannot load m: weight 'weight' holds NaN or infinite values; ...
    """
    _check_shapes(loading_info.get("mismatched_keys") or [], path)
    missing = sorted(loading_info.get("missing_keys") or [])
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise BrokenModelError(
            f"cannot load {path}: its weights lack {missing[0]!r}{more}, which the config needs "
            "(they would be random); is this the right checkpoint for the model?"
        )
    _check_unused(model, sorted(loading_info.get("unexpected_keys") or []), path)
    if (name := first_non_finite(model)) is not None:
        raise BrokenModelError(
            f"cannot load {path}: weight {name!r} holds NaN or infinite values; the checkpoint is damaged"
        )


def first_non_finite(model: torch.nn.Module) -> str | None:
    """The name of the first weight or buffer holding NaN or an infinity; None when all are finite.

    Example:
        >>> first_non_finite(torch.nn.Linear(2, 2)) is None
        True
    """
    for name, tensor in (*model.named_parameters(), *model.named_buffers()):
        if tensor.is_floating_point() and not _finite(tensor.detach()):
            return name
    return None


def _check_shapes(mismatched: list, path: str) -> None:
    """Refuse checkpoint tensors whose shapes differ from what config.json builds (transformers re-drew them).

    ``mismatched`` holds ``(name, checkpoint shape, model shape)``, as ``from_pretrained`` reports them
    when loaded with ``ignore_mismatched_sizes=True``.
    """
    if not mismatched:
        return
    name, saved, built = sorted(mismatched, key=lambda entry: entry[0])[0]
    more = f" (and {len(mismatched) - 1} more)" if len(mismatched) > 1 else ""
    # Without id2label transformers assumes two labels: right for a binary model saved with the
    # default names (save_pretrained then leaves it out), the likely cause for any other head.
    config = read_config(path)
    cause = (
        "its config.json has no id2label (the topic names), so it describes 2 labels: restore id2label "
        "from the trained model's config.json"
        if not config.get("id2label") and "classifier" in name
        else "is config.json from this checkpoint?"
    )
    raise BrokenModelError(
        f"cannot load {path}: its weights do not fit its config.json: {name!r} is {list(saved)} in the weights "
        f"but config.json makes it {list(built)}{more}; {cause}"
    )


def _check_unused(model: torch.nn.Module, unused: list[str], path: str) -> None:
    """Refuse checkpoint weights of the model's own kind of layer that the model built has no place for.

    ``config.json`` with fewer layers than the checkpoint (``num_hidden_layers`` lowered by hand, or
    a config from another checkpoint) builds a shallower network, and transformers drops the extra
    layers' weights with a note: every answer would then come from part of the model. A weight named
    like one of the model's own with another layer number (``encoder.layer.3.*`` beside
    ``encoder.layer.0.*``) is such a layer; other unused weights (a pretraining head) stay a note.
    """
    names = [name for name, _ in model.named_parameters()]
    own = {_LAYER_NUMBER_RE.sub(".#.", name) for name in names}
    built = {_layer_prefix(name) for name in names} - {None}
    # Named like the model's own weights, under a layer number the model does not have (a weight a
    # model keeps in one layer only, such as T5's relative attention bias, may sit in another: a note).
    layers = [name for name in unused if _LAYER_NUMBER_RE.sub(".#.", name) in own and _layer_prefix(name) not in built]
    if not layers:
        return
    config = read_config(path)
    key = next((key for key in ("num_hidden_layers", "num_layers", "num_decoder_layers") if key in config), None)
    sets = f" (it sets {key} to {config[key]})" if key else ""
    more = f" (and {len(layers) - 1} more)" if len(layers) > 1 else ""
    raise BrokenModelError(
        f"cannot load {path}: its weights hold {layers[0]!r}{more}, a layer the model its config.json describes"
        f"{sets} does not have; is config.json from this checkpoint?"
    )


_LAYER_NUMBER_RE = re.compile(r"\.\d+\.")


def _layer_prefix(name: str) -> str | None:
    """A weight's name up to its first layer number (``encoder.layer.3.``), or None when it has none."""
    found = _LAYER_NUMBER_RE.search(name)
    return name[: found.end()] if found else None


# Sizes a config must give as whole numbers of at least 1: zero or a negative layer count builds a
# model with no layers (every weight unused) and fails, if at all, deep inside an engine.
_SIZE_KEYS = (
    "num_hidden_layers",
    "num_attention_heads",
    "hidden_size",
    "intermediate_size",
    "vocab_size",
    "max_position_embeddings",
    "num_layers",
    "num_decoder_layers",
    "num_heads",
    "d_model",
    "d_ff",
    "d_kv",
)


def check_sizes(config, path: str) -> None:
    """Refuse a model config whose layer counts or sizes are not whole numbers of at least 1.

    Example:
        >>> from transformers import BertConfig
        >>> check_sizes(BertConfig(num_hidden_layers=-1), "m")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        inference.model_checks.BrokenModelError: cannot load m: its config.json sets 'num_hidden_layers' to -1, ...
    """
    for key in _SIZE_KEYS:
        value = getattr(config, key, None)
        if value is not None and not _whole(1)(value):
            raise BrokenModelError(
                f"cannot load {path}: its config.json sets {key!r} to {json.dumps(value)}, "
                "which must be a whole number of at least 1"
            )


def _finite(tensor: torch.Tensor) -> bool:
    """Whether every value is finite: NaN spreads to the min or max and inf is one of them.

    About ten times faster than ``isfinite(t).all()`` on a CPU (no boolean copy of the weights),
    so checking a base-size model at load costs a fraction of a second.
    """
    if tensor.numel() == 0:
        return True
    try:
        low, high = torch.aminmax(tensor)
    except RuntimeError:  # a dtype or device without aminmax
        return bool(torch.isfinite(tensor).all())
    return bool(torch.isfinite(low)) and bool(torch.isfinite(high))


def weights_error(path: str, exc: BaseException) -> BrokenModelError:
    """A one-line error for a failure to read the weights in ``path``, without torch's unsafe advice.

    Example:
        >>> str(weights_error("m", pickle.UnpicklingError("Weights only load failed ... weights_only=False")))
        'cannot load m: its pytorch_model.bin holds Python objects besides weights, which could run code; ...'
    """
    if isinstance(exc, pickle.UnpicklingError) or "weights_only" in str(exc):
        return BrokenModelError(
            f"cannot load {path}: its pytorch_model.bin holds Python objects besides weights, which could run code; "
            "khabar loads plain weights only (re-save the model with save_pretrained to get model.safetensors)"
        )
    if type(exc).__name__ == "SafetensorError" or "safetensors" in type(exc).__module__.lower():
        return BrokenModelError(f"cannot load {path}: its .safetensors weights are damaged ({first_line(exc)})")
    return BrokenModelError(f"cannot load {path}: {first_line(exc)}")


# huggingface_hub names the field only in its message ("Validation error for field 'x':"), not as an attribute.
_FIELD_RE = re.compile(r"field '([^']+)'")


def config_error(path: str, exc: Exception) -> BrokenModelError:
    """A one-line error for a ``config.json`` that transformers' typed config class refuses, naming the field.

    ``exc`` is what ``AutoConfig.from_pretrained`` raised: ``huggingface_hub``'s
    ``StrictDataclassError`` for a wrongly typed value, or a plain error for a malformed one.

    Example:
        >>> from huggingface_hub.errors import StrictDataclassFieldValidationError as Invalid
        >>> str(config_error("m", Invalid("hidden_size", TypeError("expected int, got str"))))  # doctest: +ELLIPSIS
        "cannot load m: its config.json has a wrong value for 'hidden_size' (...expected int, got str)"
    """
    raw = read_config(path)
    kind = raw.get("model_type") or "model"
    field = _FIELD_RE.search(first_line(exc)) if isinstance(exc, StrictDataclassFieldValidationError) else None
    if field is None:
        return BrokenModelError(f"cannot load {path}: its config.json does not fit a {kind} config ({error_line(exc)})")
    name = field.group(1)
    if name not in raw:
        return BrokenModelError(
            f"cannot load {path}: its config.json has a wrong value for {name!r} ({error_line(exc.__cause__ or exc)})"
        )
    wanted = _field_type(kind, name)
    return BrokenModelError(
        f"cannot load {path}: its config.json sets {name!r} to {json.dumps(raw[name], ensure_ascii=False)}, "
        f"which a {kind} config does not take{f' (it takes {wanted})' if wanted else ''}"
    )


def read_config(path: str | Path) -> dict:
    """A local model's ``config.json`` as a dict; empty for a hub id or a file that is not a JSON object.

    Example:
        >>> read_config("org/hub-model")
        {}
    """
    try:
        config = json.loads((Path(path).expanduser() / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def _field_type(model_type: str, name: str) -> str | None:
    """The type transformers' config class for ``model_type`` declares for ``name`` (``"float | int"``), if known."""
    from transformers import CONFIG_MAPPING

    try:
        fields = {field.name: field.type for field in dataclasses.fields(CONFIG_MAPPING[model_type])}
    except (KeyError, TypeError):  # an unknown model type, or a config class that is not a dataclass
        return None
    declared = fields.get(name)
    if isinstance(declared, type):  # a plain class prints as "<class 'int'>"
        return declared.__name__
    return None if declared is None else str(declared).replace("typing.", "")


def _whole(low: int, high: int | None = None) -> Callable[[object], bool]:
    """A test that a JSON value is a whole number from ``low`` to ``high`` (``true`` is not a number here)."""
    return lambda value: (
        isinstance(value, int) and not isinstance(value, bool) and value >= low and (high is None or value <= high)
    )


def _number(above: float | None = None, at_most: float | None = None) -> Callable[[object], bool]:
    """A test that a JSON value is a finite number, over ``above`` and up to ``at_most`` when given."""
    return lambda value: (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (above is None or value > above)
        and (at_most is None or value <= at_most)
    )


def _between(low: int, high: int | None = None) -> str:
    return f"a whole number from {low} to {high}" if high is not None else f"a whole number of at least {low}"


# The saved decoding settings the summarizer reads (the fast engines take ENGINE_SETTINGS; torch's generate
# all of them): name -> (test, what it must be). A wrong type or range would load and then fail every text.
_DECODING_RULES: dict[str, tuple[Callable[[object], bool], str]] = {
    "num_beams": (_whole(1, DECODING_LIMITS["num_beams"]), _between(1, DECODING_LIMITS["num_beams"])),
    "num_return_sequences": (_whole(1, 1), "1 (one summary per text)"),
    "max_new_tokens": (_whole(1, DECODING_LIMITS["max_new_tokens"]), _between(1, DECODING_LIMITS["max_new_tokens"])),
    "min_new_tokens": (_whole(0, DECODING_LIMITS["min_new_tokens"]), _between(0, DECODING_LIMITS["min_new_tokens"])),
    "max_length": (_whole(1), _between(1)),
    "min_length": (_whole(0), _between(0)),
    "no_repeat_ngram_size": (_whole(0), _between(0)),
    "length_penalty": (_number(), "a number"),
    "repetition_penalty": (_number(above=0), "a number above 0"),
    "early_stopping": (lambda value: isinstance(value, bool) or value == "never", 'true, false or "never"'),
    "do_sample": (lambda value: isinstance(value, bool), "true or false"),
}
# Read only when sampling (do_sample: true), as generate does: a greedy model may keep any leftovers.
_SAMPLING_RULES: dict[str, tuple[Callable[[object], bool], str]] = {
    "temperature": (_number(above=0), "a number above 0 when do_sample is true"),
    "top_k": (_whole(0), _between(0)),
    "top_p": (_number(above=0, at_most=1), "a number above 0 and at most 1"),
}


def check_decoding(settings: Mapping, where: str | Path) -> None:
    """Refuse saved decoding ``settings`` (``generation_config.json``'s) of a wrong type or out of range.

    ``None`` (JSON ``null``) leaves a setting to its default. ``where`` names the file in the message.

    Example:
        >>> check_decoding({"num_beams": 4, "max_new_tokens": "64"}, "m/generation_config.json")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        inference.model_checks.BrokenModelError: ... (max_new_tokens must be a whole number from 1 to 2048, got "64")
    """
    problem = decoding_problem(settings)
    if problem:
        raise BrokenModelError(f"{where}: cannot be read as decoding settings ({problem})")


def decoding_problem(settings: Mapping, sampling: bool | None = None) -> str | None:
    """What is wrong with decoding ``settings`` (a type or range), as ``"name must be ..., got ..."``; None if nothing.

    Sampling settings are checked when ``sampling`` (default: ``settings["do_sample"]``) is true.

    Example:
        >>> decoding_problem({"no_repeat_ngram_size": -1})
        'no_repeat_ngram_size must be a whole number of at least 0, got -1'
        >>> decoding_problem({"top_p": 2.0}) is None, decoding_problem({"top_p": 2.0}, sampling=True) is None
        (True, False)
    """
    sampling = settings.get("do_sample") is True if sampling is None else sampling
    rules = {**_DECODING_RULES, **(_SAMPLING_RULES if sampling else {})}
    for name, (valid, wanted) in rules.items():
        value = settings.get(name)
        if value is not None and not valid(value):
            return f"{name} must be {wanted}, got {_shown_value(value)}"
    return None


def _shown_value(value: object) -> str:
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):  # a value from Python, not JSON: an object, NaN
        return repr(value)


DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# Free space under which a failed write is taken for a full disk, when the writer does not say why
# (torch.save: "file write failed"; ONNX's native shape inference: a truncated file, then a parse error).
NEARLY_FULL_BYTES = 16 << 20


def nearly_full(folder: Path) -> bool:
    """Whether the disk holding ``folder`` (or its nearest existing parent) has under 16 MiB free.

    Example:
        >>> nearly_full(Path("/nonexistent/folder")) in (True, False)
        True
    """
    existing = next((p for p in (folder, *folder.parents) if p.exists()), Path("."))
    try:
        return shutil.disk_usage(existing).free < NEARLY_FULL_BYTES
    except OSError:
        return False


"""The errors of a write that found no room: the disk, or the account's quota, is full."""


def error_line(exc: BaseException) -> str:
    """An exception as one line: ``file: reason`` for a file the system refused, else its message with
    line breaks joined (some libraries' messages span lines).

    Example:
        >>> error_line(PermissionError(13, "Permission denied", "out/report.md"))
        'out/report.md: Permission denied'
        >>> error_line(RuntimeError("cannot open:  model.bin")), error_line(KeyError())
        ('cannot open: model.bin', 'KeyError')
    """
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {' '.join(str(exc.strerror or exc).split())}"
    return " ".join(str(exc).split()) or type(exc).__name__


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when empty): one-line errors quote it.

    Example:
        >>> first_line(OSError("no such file\\nmore detail")), first_line(KeyError())
        ('no such file', 'KeyError')
    """
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

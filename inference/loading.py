"""Find a model, pick its device and precision, load it safely, and prepare the texts it reads.

Shared by :class:`~inference.classifier.Classifier` and :class:`~inference.summarizer.Summarizer`
so both read a model, place it and check their input the same way, whatever the backend.

Example:
    >>> resolve_device("cpu")
    device(type='cpu')
    >>> prepare_texts(["كتاب"], digits="persian")
    (['کتاب'], False)
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Literal

import torch
from safetensors import SafetensorError

from inference.model_checks import check_loaded, check_model_files, weights_error
from inference.normalize import NORMALIZER_VERSION, DigitPolicy, load_normalization, normalize

ModelKind = Literal["classifier", "summarizer"]

# kind -> (environment variable, default directory in the working directory, config that trains one)
_MODEL_SOURCES = {
    "classifier": ("KHABAR_CLASSIFIER", "models/classifier", "configs/classifier/tiny.yaml"),
    "summarizer": ("KHABAR_SUMMARIZER", "models/summarizer", "configs/summarizer/tiny.yaml"),
}
# "org/name" as the Hugging Face hub spells a repository id.
_HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# Models whose activations overflow float16 and produce empty or garbage output.
T5_FAMILY = ("t5", "mt5", "umt5", "longt5", "switch_transformers")
_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
}
# A tokenizer without a configured limit reports a huge sentinel; real limits are far below this.
_NO_LIMIT = 1_000_000
DEFAULT_MAX_LENGTH = 512


class ModelNotFoundError(ValueError):
    """No model where one was asked for; the message says how to get one.

    Example:
        >>> issubclass(ModelNotFoundError, ValueError)
        True
    """


class DeviceError(ValueError):
    """A device that does not exist here, or a setting it cannot run.

    Example:
        >>> issubclass(DeviceError, ValueError)
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


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """The torch device for ``device``: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
        >>> resolve_device("gpu")
        Traceback (most recent call last):
        ...
        inference.loading.DeviceError: unknown device 'gpu': use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        target = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise DeviceError(f"unknown device {device!r}: use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'") from None
    if target.type == "cpu":
        return target
    if target.type == "cuda":
        return _checked_cuda(target)
    if target.type == "mps":
        if not torch.backends.mps.is_available():
            raise DeviceError("device 'mps': Apple MPS is not available here; use device='cpu'")
        return target
    raise DeviceError(f"unknown device {device!r}: use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")


def _checked_cuda(target: torch.device) -> torch.device:
    if not torch.cuda.is_available():
        raise DeviceError(f"device '{target}': CUDA is not available here (no GPU, or a CPU build of torch); use 'cpu'")
    count = torch.cuda.device_count()
    if target.index is not None and target.index >= count:
        raise DeviceError(f"device '{target}': this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    return target


def engine_device(
    device: str | torch.device | None, dtype: str | torch.dtype | None, backend: str, path_or_id: str
) -> torch.device:
    """The device of a fast engine (``backend`` other than ``"torch"``): always the CPU.

    Such engines read a local directory and pick their precision from ``quantize``, so an
    explicit GPU, a ``dtype`` or a hub id is refused with the fix.

    Example:
        >>> engine_device("auto", None, "onnx", ".")
        device(type='cpu')
        >>> engine_device("cpu", "bf16", "onnx", ".")
        Traceback (most recent call last):
        ...
        ValueError: dtype is for backend='torch'; backend 'onnx' takes quantize='int8' or None
    """
    if device not in (None, "auto") and resolve_device(device).type != "cpu":
        raise DeviceError(f"backend {backend!r} runs on the CPU; use device='cpu' or backend='torch'")
    if dtype is not None:
        raise ValueError(f"dtype is for backend='torch'; backend {backend!r} takes quantize='int8' or None")
    if not is_local(path_or_id):
        raise ValueError(f"backend {backend!r} needs a local model directory; download {path_or_id} first")
    return torch.device("cpu")


def resolve_dtype(
    dtype: str | torch.dtype | None, device: torch.device, model_type: str, quantize: str | None = None
) -> torch.dtype:
    """The weights' precision: ``dtype`` if given, else half precision on a GPU and float32 elsewhere.

    On a GPU the default is bfloat16 where the GPU supports it; otherwise float16, except for
    T5-family models (mT5), whose activations overflow float16: they stay in float32 and an
    explicit float16 is refused. ``quantize="int8"`` needs float32 weights on the CPU.

    Example:
        >>> resolve_dtype(None, torch.device("cpu"), "bert")
        torch.float32
        >>> resolve_dtype("fp16", torch.device("cpu"), "mt5")
        Traceback (most recent call last):
        ...
        ValueError: dtype float16 breaks mt5 models (activations overflow, ...); use 'bfloat16' or 'float32'
    """
    t5_family = model_type in T5_FAMILY
    if quantize is not None:
        return _int8_dtype(dtype, device, quantize)
    if dtype is None or dtype == "auto":
        if device.type != "cuda":
            return torch.float32
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32 if t5_family else torch.float16
    chosen = dtype if isinstance(dtype, torch.dtype) else _DTYPES.get(str(dtype).lower())
    if chosen not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"unknown dtype {dtype!r}; choose float32, bfloat16 or float16")
    if chosen == torch.float16 and t5_family:
        raise ValueError(
            f"dtype float16 breaks {model_type} models (activations overflow, output is empty or garbage); "
            "use 'bfloat16' or 'float32'"
        )
    return chosen


def _int8_dtype(dtype: str | torch.dtype | None, device: torch.device, quantize: str) -> torch.dtype:
    if quantize != "int8":
        raise ValueError(f"unknown quantize {quantize!r}; choose 'int8' or None")
    if device.type != "cpu":
        raise DeviceError(
            f"quantize='int8' is dynamic quantization for the CPU: add device='cpu', or leave it out on {device} "
            "(half precision is the GPU default)"
        )
    if dtype not in (None, "auto", torch.float32, "float32", "fp32"):
        raise ValueError(f"quantize='int8' starts from float32 weights; leave dtype out (got {dtype!r})")
    return torch.float32


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
    try:
        config = AutoConfig.from_pretrained(path_or_id, trust_remote_code=False)
        tokenizer = AutoTokenizer.from_pretrained(path_or_id, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        where = "" if is_local(path_or_id) else " (not a local directory; is the hub id right and reachable?)"
        raise ModelNotFoundError(f"cannot load {path_or_id}{where}: {_first_line(exc)}") from None
    seq2seq = bool(getattr(config, "is_encoder_decoder", False))
    if kind == "classifier" and seq2seq:
        raise ModelNotFoundError(f"{path_or_id} is a {config.model_type} summarizer, not a topic classifier")
    if kind == "summarizer" and not seq2seq:
        raise ModelNotFoundError(f"{path_or_id} is a {config.model_type} model, not a sequence-to-sequence summarizer")
    return config, tokenizer


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_weights(auto_class: type, path_or_id: str, device: torch.device, dtype: torch.dtype, quantize: str | None):
    """Load a ``transformers`` model safely, in eval mode, on ``device`` in ``dtype`` (int8 if asked).

    ``trust_remote_code`` stays off (a checkpoint's own Python never runs here) and a directory
    with ``*.safetensors`` files is loaded only from those (never from a pickle beside them).

    Example:
        >>> import tempfile
        >>> from transformers import AutoModelForSequenceClassification as Auto
        >>> from training.tiny import build_tiny_classifier
        >>> path = str(build_tiny_classifier(tempfile.mkdtemp()))
        >>> load_weights(Auto, path, torch.device("cpu"), torch.float32, "int8").training
        False
    """
    safetensors = True if is_local(path_or_id) and any(Path(path_or_id).glob("*.safetensors")) else None
    try:
        model, info = auto_class.from_pretrained(
            path_or_id, dtype=dtype, trust_remote_code=False, use_safetensors=safetensors, output_loading_info=True
        )
    except (OSError, ValueError, RuntimeError, pickle.UnpicklingError, SafetensorError) as exc:
        raise weights_error(path_or_id, exc) from None
    check_loaded(model, info, path_or_id)  # a random head or NaN weights: refused before any output
    model.eval()
    if quantize == "int8":
        return quantize_int8(model)
    return model.to(device)


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
    return load_normalization(path_or_id if is_local(path_or_id) else None)["digits"]


def text_normalization_version(path_or_id: str) -> int:
    """The normalization version the model was trained with (the current one for a hub checkpoint).

    Example:
        >>> text_normalization_version("org/hub-model")
        2
    """
    return load_normalization(path_or_id if is_local(path_or_id) else None)["version"]


def prepare_texts(
    texts: str | Iterable[str], digits: DigitPolicy, version: int = NORMALIZER_VERSION
) -> tuple[list[str], bool]:
    """Check and normalize ``texts``; return them as a list and whether a single string was given.

    Every text is checked before any model work; a bad one raises ``TypeError``/``ValueError``
    whose message starts with ``text at index I:``.

    Example:
        >>> prepare_texts("خبر ١", digits="persian")
        (['خبر ۱'], True)
        >>> prepare_texts(["خبر", "  "], digits="persian")
        Traceback (most recent call last):
        ...
        ValueError: text at index 1: empty or whitespace only
    """
    if isinstance(texts, str):
        items, single = [texts], True
    elif texts is None or isinstance(texts, (bytes, Mapping, set, frozenset)) or not isinstance(texts, Iterable):
        raise TypeError(f"text at index 0: expected a string or a list of strings, got {type(texts).__name__}")
    else:
        items, single = list(texts), False
    prepared = []
    for index, text in enumerate(items):
        if not isinstance(text, str):
            raise TypeError(f"text at index {index}: expected a string, got {type(text).__name__}")
        if not text.strip():
            raise ValueError(f"text at index {index}: empty or whitespace only")
        clean = normalize(text, digits=digits, version=version)
        if not clean:
            raise ValueError(f"text at index {index}: nothing left after normalization (only invisible marks)")
        prepared.append(clean)
    return prepared, single


def check_positive(**values: int) -> None:
    """Refuse a batch size, ``top_k`` or token count that is not a positive whole number.

    Example:
        >>> check_positive(batch_size=0)
        Traceback (most recent call last):
        ...
        ValueError: batch_size must be a positive integer, got 0
    """
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def length_sorted_batches(lengths: list[int], batch_size: int, max_tokens: int | None = None) -> Iterator[list[int]]:
    """Indices of ``lengths`` in batches of similar length, longest first, to waste little padding.

    Longest first so a batch too large for memory fails at once, not at the end of a long run.
    ``max_tokens`` also caps a batch's padded size (rows x its longest): on a CPU, big batches of
    long inputs are slower per text than small ones (their activations outgrow the caches).

    Example:
        >>> list(length_sorted_batches([3, 9, 1, 7], batch_size=2))
        [[1, 3], [0, 2]]
        >>> list(length_sorted_batches([3, 9, 1, 7], batch_size=4, max_tokens=16))
        [[1], [3, 0], [2]]
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batch: list[int] = []
    for i in order:
        # Sorted longest first, so the batch's first row sets its padded length.
        too_many_tokens = max_tokens is not None and batch and (len(batch) + 1) * lengths[batch[0]] > max_tokens
        if len(batch) == batch_size or too_many_tokens:
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch

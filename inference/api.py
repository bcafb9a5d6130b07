"""One-call inference: ``classify(texts)`` and ``summarize(texts)``.

The model comes from ``model=`` (a local directory or a hub id), else the ``KHABAR_CLASSIFIER``
/ ``KHABAR_SUMMARIZER`` environment variable, else ``models/classifier`` / ``models/summarizer``
in the working directory. A loaded model is kept for the next call with the same model, device
and load options, so calling in a loop does not reload it.

Example:
    >>> import tempfile
    >>> from training.tiny import build_tiny_classifier
    >>> model = str(build_tiny_classifier(tempfile.mkdtemp()))
    >>> sorted(classify("تیم ملی فوتبال ایران برد", model=model, device="cpu"))
    ['label', 'score']
"""

from __future__ import annotations

import os
import threading
from collections.abc import Hashable, Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from inference.classifier import Classifier, Prediction
from inference.devices import resolve_device
from inference.loading import ModelKind, is_local, resolve_model
from inference.summarizer import Summarizer

# Options that change the loaded model (and so the cache key); every other option is per call.
LOAD_OPTIONS = {
    "classifier": ("dtype", "quantize", "long_text", "backend"),
    "summarizer": ("dtype", "quantize", "backend"),
}
# A few models stay loaded; each may hold hundreds of MB, so the least recently used goes first.
CACHE_SIZE = 4


def classify(
    texts: str | Iterable[str],
    model: str | os.PathLike | Classifier | None = None,
    device: str = "auto",
    **options: Any,
) -> Prediction | list:
    """The topic of a text (``{"label": ..., "score": ...}``) or of each text in a list, in order.

    ``model``: a model directory or hub id (default: see :func:`~inference.loading.resolve_model`)
    or a loaded :class:`Classifier`. ``options``: load options of :meth:`Classifier.from_pretrained`
    (``dtype``, ``quantize``, ``long_text``, ``backend``) and call options of
    :meth:`Classifier.predict` (``batch_size``, ``top_k``).

    Example:
        >>> import tempfile
        >>> from training.tiny import build_tiny_classifier
        >>> model = str(build_tiny_classifier(tempfile.mkdtemp()))
        >>> len(classify(["خبر اول", "خبر دوم"], model=model, device="cpu", top_k=2))
        2
    """
    load, call = _split(options, "classifier")
    return _model("classifier", model, device, load).predict(texts, **call)


def summarize(
    texts: str | Iterable[str],
    model: str | os.PathLike | Summarizer | None = None,
    device: str = "auto",
    **options: Any,
) -> str | list[str]:
    """A short summary of a text (a ``str``) or of each text in a list, in order.

    ``model``: a model directory or hub id (default: see :func:`~inference.loading.resolve_model`)
    or a loaded :class:`Summarizer`. ``options``: load options of :meth:`Summarizer.from_pretrained`
    (``dtype``, ``quantize``, ``backend``) and call options of :meth:`Summarizer.summarize` (``batch_size``,
    ``num_beams``, ``max_new_tokens`` and other decoding settings).

    Example:
        >>> import tempfile
        >>> from training.tiny import build_tiny_summarizer
        >>> model = str(build_tiny_summarizer(tempfile.mkdtemp()))
        >>> isinstance(summarize("متن خبر", model=model, device="cpu", max_new_tokens=4), str)
        True
    """
    load, call = _split(options, "summarizer")
    return _model("summarizer", model, device, load).summarize(texts, **call)


def _model(kind: ModelKind, model: Any, device: str, load: dict[str, Any]) -> Classifier | Summarizer:
    """The model a call names: a loaded one passed as is, else :func:`load_model`'s."""
    loaded = Classifier if kind == "classifier" else Summarizer
    if isinstance(model, (Classifier, Summarizer)):
        if not isinstance(model, loaded):
            raise TypeError(f"model is a loaded {type(model).__name__}; a {kind} is needed here")
        given = [*load, *(["device"] if device != "auto" else [])]
        if given:
            raise TypeError(f"{', '.join(given)}: load options apply when model is a path; this model is loaded")
        return model
    return load_model(kind, model, device, **load)


def load_model(
    kind: ModelKind, model: str | os.PathLike | None = None, device: str = "auto", **load_options: Any
) -> Classifier | Summarizer:
    """The loaded ``kind`` model for ``model`` on ``device``, from the cache when already loaded.

    ``"auto"`` and the device it stands for share one cache entry, and so do a relative and an
    absolute path to the same directory.

    Example:
        >>> import tempfile
        >>> from training.tiny import build_tiny_classifier
        >>> model = str(build_tiny_classifier(tempfile.mkdtemp()))
        >>> first = load_model("classifier", model, "cpu")
        >>> load_model("classifier", model, "cpu") is first
        True
    """
    source = resolve_model(kind, model)
    key = str(Path(source).expanduser().resolve()) if is_local(source) else source
    target = "cpu" if load_options.get("backend", "auto") not in ("torch", "auto") and device == "auto" else device
    # lru_cache does not stop two threads missing at once and both loading: the first call from
    # several threads (a web server's workers) would load the model once per thread.
    for name, value in load_options.items():
        if not isinstance(value, Hashable):  # the cache key needs it; every option takes a name or a number
            raise TypeError(f"{name} must be a string, number or None, got {type(value).__name__} {value!r}")
    with _LOADING:
        return _cached(kind, key, str(resolve_device(target)), tuple(sorted(load_options.items())))


_LOADING = threading.Lock()


def clear_cache() -> None:
    """Forget every loaded model (for example after retraining a model directory in place).

    Example:
        >>> clear_cache()
    """
    _cached.cache_clear()


@lru_cache(maxsize=CACHE_SIZE)
def _cached(kind: ModelKind, source: str, device: str, load_options: tuple) -> Classifier | Summarizer:
    model_class = Classifier if kind == "classifier" else Summarizer
    return model_class.from_pretrained(source, device=torch.device(device), **dict(load_options))


def _split(options: dict[str, Any], kind: ModelKind) -> tuple[dict[str, Any], dict[str, Any]]:
    """Options that load the model, and options for each call."""
    load = {name: value for name, value in options.items() if name in LOAD_OPTIONS[kind]}
    return load, {name: value for name, value in options.items() if name not in load}

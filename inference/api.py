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
from collections import OrderedDict
from collections.abc import Hashable, Iterable
from functools import cache
from inspect import signature
from pathlib import Path
from typing import Any

import torch

from inference.classifier import Classifier, Prediction
from inference.devices import resolve_device
from inference.loading import ModelKind, is_local, resolve_model
from inference.summarizer import Summarizer
from inference.text_model import TextModel

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
    for name, value in load_options.items():
        if not isinstance(value, Hashable):  # the cache key needs it; every option takes a name or a number
            raise TypeError(f"{name} must be a string, number or None, got {type(value).__name__} {value!r}")
    # A default spelled out (backend="auto", quantize=None) is the same model as one left out.
    options = {**_load_defaults(kind), **load_options}
    return _cache.get((kind, key, str(resolve_device(target)), tuple(sorted(options.items()))))


def clear_cache() -> None:
    """Forget every loaded model (for example after retraining a model directory in place).

    Example:
        >>> clear_cache()
    """
    _cache.clear()


class _ModelCache:
    """The last :data:`CACHE_SIZE` models loaded, by (kind, source, device, load options).

    A hit never waits: only threads loading the same model wait for each other (the first call
    from a web server's workers loads it once, not once per thread), and loading one model does
    not hold up calls on the others.
    """

    def __init__(self) -> None:
        self._models: OrderedDict[tuple, Classifier | Summarizer] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[tuple, threading.Lock] = {}

    def get(self, key: tuple) -> Classifier | Summarizer:
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:
            with self._lock:
                if key in self._models:  # loaded by the thread this one waited for
                    return self._models[key]
            try:
                model = _load(*key)
            finally:
                with self._lock:
                    self._loading.pop(key, None)
            with self._lock:
                self._models[key] = model
                while len(self._models) > CACHE_SIZE:
                    self._models.popitem(last=False)
            return model

    def clear(self) -> None:
        with self._lock:
            self._models.clear()

    def after_fork(self) -> None:
        """In a forked child: locks held by other threads of the parent (mid-load) would never be released."""
        self._lock = threading.Lock()
        self._loading = {}


_cache = _ModelCache()
if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_cache.after_fork)


def _load(kind: ModelKind, source: str, device: str, load_options: tuple) -> Classifier | Summarizer:
    model_class = Classifier if kind == "classifier" else Summarizer
    return model_class.from_pretrained(source, device=torch.device(device), **dict(load_options))


@cache
def _load_defaults(kind: ModelKind) -> dict[str, Any]:
    """The defaults of ``kind``'s load options, read from the signatures that apply them."""
    model_class = Classifier if kind == "classifier" else Summarizer
    # TextModel's own from_pretrained: the class attribute may be wrapped (a test, a user's instrumentation).
    params = {**signature(TextModel.from_pretrained).parameters, **signature(model_class._from_plan).parameters}
    return {name: params[name].default for name in LOAD_OPTIONS[kind]}


def _split(options: dict[str, Any], kind: ModelKind) -> tuple[dict[str, Any], dict[str, Any]]:
    """Options that load the model, and options for each call."""
    load = {name: value for name, value in options.items() if name in LOAD_OPTIONS[kind]}
    return load, {name: value for name, value in options.items() if name not in load}

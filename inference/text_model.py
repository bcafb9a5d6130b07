"""What ``Classifier`` and ``Summarizer`` share: how they load, the tokenizer and how text is read.

``from_pretrained`` is one method for both: it plans the load (engine, device, precision:
:func:`inference.load_plan.plan_load`) and each class builds itself from the plan. Both take the
text settings as keyword arguments (:meth:`inference.load_plan.LoadPlan.model_settings`), so the
text a model sees is prepared the same way for both tasks.

Example:
    >>> model = TextModel(None, max_length=512, name="models/classifier")
    >>> model.prepare(["كتاب ۱"])
    (['کتاب ۱'], False)
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Iterable
from functools import cache
from typing import ClassVar, Literal, TypeVar

import torch

from inference.fast.cache import NoCacheForConversion
from inference.inputs import prepare_texts
from inference.load_plan import LoadPlan, plan_load
from inference.normalize import NORMALIZER_VERSION, DigitPolicy

Model = TypeVar("Model", bound="TextModel")
logger = logging.getLogger(__name__)


@cache
def _warn_at_fork() -> None:
    """Once a model is loaded, warn (in the parent, before it forks) at the first ``os.fork()`` whose child
    returns to Python. Registered once: ``cache`` makes later calls return at once.

    The thread pools of torch (OpenMP), CTranslate2 and ONNX Runtime do not survive a fork: a child
    of a process that has run a model hangs in its first model call, or when it exits
    (``multiprocessing`` forks by default on Linux before Python 3.14; ``gunicorn --preload`` too).
    ``subprocess`` does not run these hooks: its children never return to Python.
    """
    if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
        os.register_at_fork(before=_fork_warning)


@cache  # once per process, not per fork
def _fork_warning() -> None:
    logger.warning(
        "khabar: forking a process that has loaded a model; the child may hang in its first model call "
        "or at exit (torch's, CTranslate2's and ONNX Runtime's threads do not survive a fork): load models "
        "after the fork, or use multiprocessing.get_context('spawn') or 'forkserver'"
    )


class TextModel:
    """A loaded model's tokenizer, the length it reads, its text normalization, device and names.

    ``digits`` and ``normalization_version`` are the normalization the model was trained with;
    ``name`` is its directory or hub id, ``precision`` its engine and number format (e.g.
    ``"torch bfloat16 (auto)"``), for summary lines and benchmark records.

    Example:
        >>> model = TextModel(None, max_length=128, digits="latin")
        >>> model.max_length, model.device, model.prepare("خبر ۱")
        (128, device(type='cpu'), (['خبر 1'], True))
    """

    kind: ClassVar[str] = ""  # "classifier" or "summarizer": which models the subclass loads

    def __init__(
        self,
        tokenizer,
        *,
        max_length: int,
        digits: DigitPolicy = "persian",
        normalization_version: int = NORMALIZER_VERSION,
        device: torch.device | None = None,
        name: str = "",
        precision: str = "",
    ) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.digits = digits
        self.normalization_version = normalization_version
        self.device = device or torch.device("cpu")
        self.name = name
        self.precision = precision

    @classmethod
    def from_pretrained(
        cls: type[Model],
        path_or_id: str | os.PathLike,
        device: str | torch.device | None = "auto",
        dtype: str | torch.dtype | None = "auto",
        quantize: Literal["int8"] | None = None,
        backend: str = "auto",
        **options,
    ) -> Model:
        """Load a model from a ``save_pretrained`` directory or a hub id.

        ``device``: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        ``dtype``: ``"auto"`` is bfloat16 on a CPU with AMX or AMD's AVX512-BF16, float32 on others (see
        :mod:`inference.precision`), bfloat16 on a GPU that has it (a classifier takes float16
        where bf16 is missing; mT5 stays float32: float16 breaks it and is refused).
        ``quantize="int8"``: int8 linear layers, CPU only. ``backend``: ``"auto"`` (default) picks
        the fastest engine installed for this processor and logs why
        (:func:`inference.precision.auto_backend`: torch bf16 for topics on AMX, else ONNX Runtime
        int8; CTranslate2 int8 for summaries; torch on a GPU, for a hub id or an explicit
        ``dtype``); ``"torch"``; or a fast CPU engine (``"onnx"`` for topics, ``"ctranslate2"``
        for summaries, ``"fast"`` for either), which needs a local directory. ``options`` are the
        class's own (``Classifier``: ``long_text``).

        Example:
            >>> import tempfile
            >>> from training.tiny import build_tiny_classifier
            >>> from inference import Classifier
            >>> path = build_tiny_classifier(tempfile.mkdtemp())
            >>> Classifier.from_pretrained(path, device="cpu", quantize="int8").labels[:2]
            ['culture-art', 'economy']
        """
        try:  # an unknown option is refused before anything is read from disk
            inspect.signature(cls._from_plan).bind(None, **options)
        except TypeError as exc:
            raise TypeError(f"{cls.__name__}.from_pretrained: {exc}") from None
        plan = plan_load(cls.kind, path_or_id, device, dtype, quantize, backend)
        _warn_at_fork()
        try:
            return cls._from_plan(plan, **options)
        except NoCacheForConversion as exc:
            # Nowhere to keep a conversion (a read-only model, no home, full disks): the engine auto
            # chose is out of reach, torch is not. An explicit fast backend fails instead.
            if backend != "auto":
                raise
            logger.warning("%s: %s; running on torch instead (backend=auto)", plan.source, exc)
        return cls._from_plan(plan_load(cls.kind, path_or_id, device, dtype, quantize, "torch"), **options)

    @classmethod
    def _from_plan(cls: type[Model], plan: LoadPlan, **options) -> Model:
        raise NotImplementedError(f"{cls.__name__} does not say how to build itself from a load plan")

    def prepare(self, texts: str | Iterable[str]) -> tuple[list[str], bool]:
        """The texts normalized as in training and checked (see :func:`inference.inputs.prepare_texts`);
        ``True`` when one string was given.

        Example:
            >>> TextModel(None, max_length=8).prepare(["خبر", "دیگر"])
            (['خبر', 'دیگر'], False)
        """
        return prepare_texts(texts, self.digits, self.normalization_version)

"""khabar inference: Persian news topics and summaries from trained model directories.

Example:
    >>> from inference import normalize
    >>> normalize("كتاب عربي")
    'کتاب عربی'

``Classifier``, ``Summarizer``, ``classify`` and ``summarize`` load lazily, so importing
``inference`` for its normalizer does not pull in torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from inference.normalize import normalize, split_sentences

__all__ = ["Classifier", "Summarizer", "classify", "normalize", "split_sentences", "summarize"]
__version__ = "0.1.0"

_LAZY = {
    "Classifier": "inference.classifier",
    "Summarizer": "inference.summarizer",
    "classify": "inference.api",
    "summarize": "inference.api",
}

if TYPE_CHECKING:
    from inference.api import classify, summarize
    from inference.classifier import Classifier
    from inference.summarizer import Summarizer


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'inference' has no attribute {name!r}")

"""The engines each model can run on, named in one place for the API, the engines and the CLI.

``"torch"`` is transformers itself (CPU or GPU). ``"onnx"`` (classifier) and ``"ctranslate2"``
(summarizer) are the fast CPU engines of :mod:`inference.fast`; ``"fast"`` names each model's
fast engine, so one ``khabar predict --backend fast`` serves both models; ``"auto"`` the fastest
installed for this processor (:func:`inference.precision.auto_backend`). Kept free of torch so
``khabar --help`` stays quick.

Example:
    >>> [name for name in SUMMARIZER_BACKENDS if name not in CLASSIFIER_BACKENDS]
    ['ctranslate2']
"""

from __future__ import annotations

CLASSIFIER_BACKENDS = ("torch", "onnx", "fast", "auto")
SUMMARIZER_BACKENDS = ("torch", "ctranslate2", "fast", "auto")

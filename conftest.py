"""Settings for every test run: the suite in tests/ and the docstring examples in inference/ and training/."""

from __future__ import annotations

import importlib.util
import os

# Nothing in the tests may wait on the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tiny models run many times faster on one thread than with intra-op threads fighting over 2 cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")

# The fast engines' examples run them; without `pip install khabar[fast]` they are skipped, as the
# engines' tests are.
_ENGINES = {
    "inference/fast/__init__.py": "onnxruntime",
    "inference/fast/onnx_classifier.py": "onnxruntime",
    "inference/fast/ct2_summarizer.py": "ctranslate2",
}
# The server's examples need the serve extra (FastAPI), as its tests do.
_ENGINES["inference/serve"] = "fastapi"
collect_ignore = [path for path, module in _ENGINES.items() if importlib.util.find_spec(module) is None]

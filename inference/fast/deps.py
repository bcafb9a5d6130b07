"""Import the optional engines lazily, with an error that says how to install them.

ONNX Runtime and CTranslate2 are the ``khabar[fast]`` extra: the default install must import and
run without them, so every module of this package imports them through :func:`require`.
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

INSTALL_HINT = "pip install khabar[fast]"


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise an ``ImportError`` naming the extra that provides it.

    Example:
        >>> require("json", "reading configs").__name__
        'json'
        >>> try:
        ...     require("no_such_engine", "the fast path")
        ... except ImportError as err:
        ...     print(err)
        the fast path needs no_such_engine: pip install khabar[fast]
    """
    try:
        return import_module(module)
    except ImportError as err:
        raise ImportError(f"{purpose} needs {module.split('.')[0]}: {INSTALL_HINT}") from err

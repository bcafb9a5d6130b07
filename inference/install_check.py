"""Warn when another installed distribution also owns khabar's top-level packages.

khabar installs the import names ``inference`` and ``training`` (the layout the project is built
around, and ``from inference import summarize`` is its documented API). PyPI has unrelated
distributions with those names; pip does not check for overlapping files, so installing one
into the same environment silently overwrites khabar's modules or leaves a mixture of both. The
commands check once at start-up and name the other distribution, so the user sees the cause
instead of a puzzling ImportError deep inside a run.

Example:
    >>> clashes({"inference": ["khabar"], "training": ["khabar"]})
    []
    >>> clashes({"inference": ["khabar", "inference"]})
    ["'inference' is also installed by inference"]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib import metadata

DISTRIBUTION = "khabar"
PACKAGES = ("inference", "training")


def clashes(owners: Mapping[str, Sequence[str]]) -> list[str]:
    """One message per khabar package that another distribution also provides.

    Example:
        >>> clashes({"training": ["khabar", "other-lib", "khabar"]})
        ["'training' is also installed by other-lib"]
    """
    found = []
    for package in PACKAGES:
        others = sorted({name for name in owners.get(package, ()) if name.lower() != DISTRIBUTION})
        if others:
            found.append(f"'{package}' is also installed by {', '.join(others)}")
    return found


def install_clashes() -> list[str]:
    """One warning line per clash in this environment (empty when khabar alone owns its packages).

    Example:
        >>> install_clashes()  # khabar alone owns its packages here
        []
    """
    try:
        owners = metadata.packages_distributions()
    except Exception:  # a broken metadata folder must never stop a run: the check is advice
        return []
    advice = "the two overwrite each other's files; install khabar in its own virtual environment"
    return [f"{clash}: {advice}" for clash in clashes(owners)]

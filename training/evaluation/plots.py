"""PNG plots written beside trained models and evaluation reports.

Figures are drawn on matplotlib's Agg canvas directly (no ``pyplot``), so plotting works on a
headless server and never touches a global figure state or a display.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def plot_confusion_matrix(confusion: dict, path: str | Path, title: str = "Confusion matrix") -> Path:
    """Write a confusion matrix as a PNG: counts in the cells, colour by share of the true label (row).

    ``confusion`` is ``{"labels": [...], "matrix": [[...]]}`` with true labels as rows, as
    :func:`training.metrics.classification_metrics` returns it.

    Example:
        >>> import tempfile, os
        >>> confusion = {"labels": ["sports", "economy"], "matrix": [[9, 1], [2, 3]]}
        >>> plot_confusion_matrix(confusion, os.path.join(tempfile.mkdtemp(), "cm.png")).suffix
        '.png'
    """
    labels, matrix = confusion["labels"], confusion["matrix"]
    if len(matrix) != len(labels) or any(len(row) != len(labels) for row in matrix):
        raise ValueError(f"confusion matrix must be {len(labels)}x{len(labels)} to match its labels")
    size = max(4.0, 0.6 * len(labels) + 2)
    fig = Figure(figsize=(size, size), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    # Colour by row share: on imbalanced news (half sports) raw counts would hide a rare topic's errors.
    shares = [[count / max(sum(row), 1) for count in row] for row in matrix]
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            ax.text(j, i, str(count), ha="center", va="center", color="white" if shares[i][j] > 0.5 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title}\n(colour: share of the true label)")
    path = Path(path)
    fig.savefig(path, dpi=120)
    return path

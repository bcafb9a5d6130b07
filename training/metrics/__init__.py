"""Offline metrics: computed locally, never fetched from the hub (``evaluate.load`` needs the network).

``rouge`` scores Persian summaries; ``classification_metrics`` scores topic predictions.
"""

from training.metrics.classification import classification_metrics
from training.metrics.rouge import rouge, rouge_per_example

__all__ = ["classification_metrics", "rouge", "rouge_per_example"]

"""``train.class_weights: balanced``: per-topic loss weights and the weighted cross-entropy that uses them."""

from __future__ import annotations

from collections import Counter

import torch


def class_weights(train_labels: list[str], labels: list[str]) -> torch.Tensor:
    """``balanced`` loss weights: ``rows / (labels * rows_of_label)``, so each topic weighs the same in total.

    Example:
        >>> weights = class_weights(["sports", "sports", "sports", "economy"], ["economy", "sports"])
        >>> [round(w, 3) for w in weights.tolist()]
        [2.0, 0.667]
    """
    counts = Counter(train_labels)
    # A topic seen only in held-out rows has no training rows to weigh; any finite weight will do.
    weights = [len(train_labels) / (len(labels) * counts[label]) if counts[label] else 1.0 for label in labels]
    return torch.tensor(weights, dtype=torch.float32)


def weighted_loss(weights: torch.Tensor):
    """A ``compute_loss_func`` for ``Trainer``: class-weighted cross-entropy.

    The sum is divided by the number of examples in the whole accumulated batch, which keeps
    gradient accumulation equivalent to one large batch.

    Example:
        >>> from types import SimpleNamespace
        >>> loss = weighted_loss(torch.tensor([1.0, 3.0]))
        >>> outputs = SimpleNamespace(logits=torch.zeros(2, 2))
        >>> round(loss(outputs, torch.tensor([0, 1])).item(), 4)  # (1 + 3) * ln 2 / 2
        1.3863
    """

    def compute(outputs, labels: torch.Tensor, num_items_in_batch: int | torch.Tensor | None = None) -> torch.Tensor:
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs.logits
        total = torch.nn.functional.cross_entropy(
            logits.float(), labels, weight=weights.to(logits.device), reduction="sum"
        )
        return total / (num_items_in_batch if num_items_in_batch is not None else labels.numel())

    return compute

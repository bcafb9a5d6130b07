"""Helpers shared by the test modules: the repository root, a JSONL reader and a step recorder."""

from __future__ import annotations

import json
from pathlib import Path

from transformers import TrainerCallback

ROOT = Path(__file__).resolve().parent.parent


def read_jsonl(path: Path) -> list[dict]:
    """The rows of a JSONL file (blank lines skipped)."""
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


class RecordSteps(TrainerCallback):
    """Records the global step at the end of every optimizer step a run takes."""

    def __init__(self) -> None:
        self.steps: list[int] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)

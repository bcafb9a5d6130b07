"""Helpers shared by the test modules: the repository root, a JSONL reader, a step recorder, tiny-run overrides,
the one-line error check."""

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


def tiny_summarizer_run(model_dir: Path, out: Path, *extra: str, splits=("train", "validation", "test")) -> list[str]:
    """Overrides that point ``configs/summarizer/tiny.yaml`` at ``model_dir``, the bundled sample and ``out``.

    Inputs are cut to 64 tokens and every step is logged; ``extra`` overrides come last and win.
    """
    sample = ROOT / "data" / "sample"
    files = [f"data.{split}_file={sample / f'{split}.jsonl'}" for split in splits]
    toy = ["train.max_length=64", "train.logging_steps=1"]
    return [f"model.name_or_path={model_dir}", *files, f"output_dir={out}", *toy, *extra]


def one_line_error(err: str, *names: str) -> str:
    """The single error line of ``err``, after checking it names each of ``names`` and is no traceback."""
    lines = [line for line in err.splitlines() if "error" in line]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


ARTICLE = "تیم ملی فوتبال ایران دیشب در ورزشگاه آزادی برابر حریف خود به پیروزی رسید."


def write_articles(path: Path, n: int, tag: str = "") -> Path:
    """A JSONL input of ``n`` articles with ids ``r0``, ``r1``, ... (``tag`` makes another input's)."""
    rows = [{"id": f"r{i}", "article": f"{ARTICLE} {tag}{i}"} for i in range(n)]
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def khabar_err(capsys, *args: object) -> tuple[int, str]:
    """Run ``khabar`` in this process; its exit code and stderr."""
    from inference.cli import main

    code = main([str(arg) for arg in args])
    return code, capsys.readouterr().err

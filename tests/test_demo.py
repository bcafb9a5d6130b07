"""``make demo`` end to end: tiny models trained from the shipped configs, then khabar predict."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT


def run_demo(models: Path, out: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, str(ROOT / "scripts" / "demo.py"), "--models", str(models), "--out", str(out)]
    return subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)


@pytest.mark.slow
def test_demo_trains_once_then_reads_every_demo_article(tmp_path) -> None:
    first = run_demo(tmp_path / "models", tmp_path / "out")
    assert first.returncode == 0, first.stderr[-2000:]
    assert "Training the tiny demo models" in first.stdout
    rows = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").open(encoding="utf-8")]
    demo_ids = [json.loads(line)["id"] for line in (ROOT / "data/sample/demo.jsonl").open(encoding="utf-8")]
    assert [row["id"] for row in rows] == demo_ids
    assert all(row["topic"] and row["summary"].strip() and "error" not in row for row in rows)
    for row in rows:
        assert row["id"] in first.stdout  # every article has a line in the printed table
    assert "TF-IDF" in first.stdout and "lead-1" in first.stdout

    second = run_demo(tmp_path / "models", tmp_path / "out")
    assert second.returncode == 0, second.stderr[-2000:]
    assert "Using the trained models" in second.stdout and "Training the tiny" not in second.stdout

"""Inputs read only once (stdin, a pipe or FIFO given by name): every row read once, checked like a file.

Each check made before any work used to open the input again: on a pipe it consumed the bytes it
read (rows lost, or all of them with the progress bar's count, exit 0), and a FIFO waited forever
for a second writer. Stdin skipped the checks a file gets (a misspelled column was an error record
on every row).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from helpers import one_line_error

from inference.cli import main

ARTICLE = "تیم ملی فوتبال ایران دیشب در ورزشگاه آزادی برابر حریف خود به پیروزی رسید."
ROWS = [{"id": f"r{i}", "article": f"{ARTICLE} {i}"} for i in range(25)]
JSONL = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in ROWS).encode()
CSV = ("id,article\n" + "".join(f"{row['id']},{row['article']}\n" for row in ROWS)).encode()


@pytest.fixture
def topic(fitted_classifier_dir: Path) -> list[str]:
    return ["--tasks", "topic", "--classifier", str(fitted_classifier_dir), "--device", "cpu", "--backend", "torch"]


def ids(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text(encoding="utf-8").splitlines()]


def on_stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BufferedReader(io.BytesIO(data))))


def khabar(capsys: pytest.CaptureFixture, *args: object) -> tuple[int, str]:
    code = main([str(arg) for arg in args])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("data, fmt", [(JSONL, "jsonl"), (CSV, "csv")])
def test_stdin_with_a_progress_bar_reads_every_row_once(tmp_path, monkeypatch, capsys, topic, data, fmt) -> None:
    # The bar of unknown length used to end the run in a TypeError before the first row.
    on_stdin(monkeypatch, data)
    output = tmp_path / "out.jsonl"
    code, err = khabar(capsys, "predict", "-", "--input-format", fmt, "-o", output, *topic, "--progress")
    assert code == 0, err
    assert ids(output) == [row["id"] for row in ROWS]


@pytest.mark.parametrize(
    "data, fmt, flags, named",
    [
        (CSV, "csv", ["--text-column", "articel"], "--text-column articel: no such column in - (columns: id, article)"),
        ("\ufeff".encode("utf-16-le") + JSONL.decode().encode("utf-16-le"), "jsonl", [], "is UTF-16 text"),
        (b"[" + JSONL.replace(b"\n", b",")[:-1] + b"]", "jsonl", [], "is a JSON array, not JSON Lines"),
    ],
    ids=["misspelled-column", "utf-16", "json-array"],
)
def test_stdin_gets_the_one_line_errors_a_file_gets(tmp_path, monkeypatch, capsys, topic, data, fmt, flags, named):
    on_stdin(monkeypatch, data)
    output = tmp_path / "out.jsonl"
    code, err = khabar(capsys, "predict", "-", "--input-format", fmt, "-o", output, *topic, *flags)
    assert code == 2
    one_line_error(err, named)
    assert not output.exists()  # refused before any work


def _run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "inference.cli", "predict", *args]
    return subprocess.run(command, capture_output=True, env=env, timeout=120, **kwargs)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_given_by_name_is_read_once_and_never_waits(tmp_path, topic) -> None:
    fifo, output = tmp_path / "articles", tmp_path / "out.jsonl"
    os.mkfifo(fifo)

    def write() -> None:
        with open(fifo, "wb") as writer:  # opening blocks until the run opens the FIFO to read
            writer.write(JSONL)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    done = _run([str(fifo), "--input-format", "jsonl", "-o", str(output), *topic, "--progress"])
    assert done.returncode == 0, done.stderr.decode()
    assert ids(output) == [row["id"] for row in ROWS]


@pytest.mark.skipif(not Path("/dev/stdin").exists(), reason="needs /dev/stdin")
@pytest.mark.parametrize("data, fmt", [(JSONL, "jsonl"), (CSV, "csv")])
def test_a_pipe_named_dev_stdin_loses_no_rows(tmp_path, topic, data, fmt) -> None:
    output = tmp_path / "out.jsonl"
    done = _run(["/dev/stdin", "--input-format", fmt, "-o", str(output), *topic, "--progress"], input=data)
    assert done.returncode == 0, done.stderr.decode()
    assert ids(output) == [row["id"] for row in ROWS]


def test_a_slow_producer_is_read_from_its_first_line(tmp_path) -> None:
    # The read-ahead waited for 4 KiB: a producer sending a few rows and pausing got nothing done.
    from inference.batch.streams import OnceInput

    read_end, write_end = os.pipe()
    os.write(write_end, JSONL.splitlines(keepends=True)[0])  # one row, and the pipe stays open
    once: list[OnceInput] = []
    reader = threading.Thread(target=lambda: once.append(OnceInput.around(open(read_end, "rb"))), daemon=True)
    reader.start()
    reader.join(10)
    os.close(write_end)
    assert once and once[0].head == JSONL.splitlines(keepends=True)[0]


def test_a_utf8_file_holding_replacement_characters_is_read(tmp_path, topic, capsys) -> None:
    # Scraped text often holds U+FFFD from an earlier lossy decoding: characters, not unreadable bytes.
    source, output = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    rows = [{"id": "a", "article": ARTICLE + " \ufffd" * 40}, *ROWS[:2]]
    source.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    code, err = khabar(capsys, "predict", source, "-o", output, *topic)
    assert code == 0, err
    assert ids(output) == ["a", "r0", "r1"]

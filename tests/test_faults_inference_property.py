"""A property of `khabar predict`: killed anywhere and resumed, every input line gets exactly one record.

Hypothesis mixes good rows with every kind of bad row (JSONL and CSV), a run is killed with
SIGKILL after a random number of records (often in the middle of a write), and `--resume`
finishes it. Whatever the mixture and the moment: the output is valid UTF-8 JSON Lines, each
id appears exactly once, and every input line that holds a record is accounted for.

Starting Python with torch takes seconds, so the killed runs are forked from one process that
imported everything once (the ``zygote`` fixture); each example then costs about a second.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_faults_inference import ask, shared_zygote

from inference.cli import main

SAMPLE_TEST = Path(__file__).resolve().parent.parent / "data" / "sample" / "test.jsonl"
TEXTS = [" ".join(json.loads(line)["article"].split())[:200] for line in SAMPLE_TEST.read_text("utf-8").splitlines()]

# Each bad JSONL line, written raw: (kind, line text). Their ids cannot be read or are not strings.
JSONL_BAD = {
    "malformed": '{"id": "x", "article": ',
    "not an object": '["a list"]',
    "no text": '{"id": "%s"}',
    "empty text": '{"id": "%s", "article": "  "}',
    "text not a string": '{"id": "%s", "article": 42}',
    "surrogate id": '{"id": "%s\\ud800", "article": "خبر"}',
    "surrogate text": '{"id": "%s", "article": "خبر\\udfff"}',
    "deep nesting": "[" * 5000 + "]" * 5000,
    "not UTF-8": b'{"id": "%s", "article": "\xff\xfe"}',
    "number id": '{"id": %s.5, "article": "خبر"}',  # not bad: the id is kept as its JSON text
}
CSV_BAD = {
    "unclosed quote": '%s,"no closing quote',
    "text after quote": '%s,"quoted" then more',
    "too many fields": "%s,a,b,c",
    "empty text": "%s,",
    "not UTF-8": b"%s,\xff\xfe",
}
# Kinds that still give a topic.
GOOD = {None, "number id"}


@pytest.fixture
def zygote() -> subprocess.Popen:
    return shared_zygote()


def build_input(folder: Path, fmt: str, kinds: list[str | None]) -> tuple[Path, list[int]]:
    """An input of good rows (None) and bad rows of ``kinds``; returns it and the lines that hold records."""
    lines: list[bytes] = []
    for i, kind in enumerate(kinds):
        key = f"r{i}"
        if kind is None:
            if fmt == "jsonl":
                lines.append(json.dumps({"id": key, "article": TEXTS[i % len(TEXTS)]}, ensure_ascii=False).encode())
            else:
                buffer = io.StringIO()
                csv.writer(buffer, lineterminator="").writerow([key, TEXTS[i % len(TEXTS)]])
                lines.append(buffer.getvalue().encode())
            continue
        template = (JSONL_BAD if fmt == "jsonl" else CSV_BAD)[kind]
        raw = template if isinstance(template, bytes) else template.encode()
        lines.append(raw.replace(b"%s", str(i).encode()) if b"%s" in raw else raw)
    header = [b"id,article"] if fmt == "csv" else []
    path = folder / f"in.{fmt}"
    path.write_bytes(b"\n".join(header + lines) + b"\n")
    return path, list(range(len(header) + 1, len(header) + len(lines) + 1))


def complete_records(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def running(pid: int) -> bool:
    """Whether the child still runs (an exited one stays a zombie until the zygote reaps it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def kill_after(zygote: subprocess.Popen, argv: list[str], output: Path, records: int, timeout: float = 60) -> None:
    """Start a run, SIGKILL it once ``records`` records are written (or it ends by itself)."""
    pid = ask(zygote, {"argv": argv})
    end = time.monotonic() + timeout
    while complete_records(output) < records and time.monotonic() < end and running(pid):
        time.sleep(0.002)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    ask(zygote, {"wait": pid})


def check_killed_and_resumed(zygote, tmp_path_factory, fitted_classifier_dir, fmt, kinds, kill_at) -> None:
    folder = tmp_path_factory.mktemp("killed")
    source, record_lines = build_input(folder, fmt, kinds)
    before = source.read_bytes()
    output = folder / "out.jsonl"
    flags = ["--tasks", "topic", "--classifier", str(fitted_classifier_dir), "--device", "cpu", "--quiet"]
    argv = ["predict", str(source), "-o", str(output), "--batch-size", "2", *flags]
    kill_after(zygote, argv, output, kill_at)
    if output.exists():  # killed: every complete line is already a valid record; only the last may be cut
        complete = output.read_bytes().rpartition(b"\n")[0].decode("utf-8")
        assert all("id" in json.loads(line, parse_constant=_refuse) for line in complete.splitlines() if line)
    code = main([*argv, "--resume"])
    text = output.read_bytes().decode("utf-8")  # strict UTF-8
    records = [json.loads(line, parse_constant=_refuse) for line in text.splitlines()]
    ids = [record["id"] for record in records]
    assert code in (0, 3), code
    assert len(ids) == len(set(ids)), "an id was written twice"
    assert sorted(record["line"] for record in records) == record_lines, "a line was dropped or repeated"
    assert all(("error" in record) != ("topic" in record) for record in records)
    failed = {record["line"] for record in records if "error" in record}
    assert failed == {line for line, kind in zip(record_lines, kinds, strict=True) if kind not in GOOD}
    assert code == (3 if failed else 0)
    assert source.read_bytes() == before


def _refuse(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def mixtures(fmt: str):
    kinds = st.one_of(st.none(), st.sampled_from(sorted(JSONL_BAD if fmt == "jsonl" else CSV_BAD)))
    return st.lists(kinds, min_size=1, max_size=12)


@st.composite
def cases(draw):
    fmt = draw(st.sampled_from(["jsonl", "csv"]))
    kinds = draw(mixtures(fmt))
    return fmt, kinds, draw(st.integers(0, len(kinds)))


HEALTH = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]


@settings(max_examples=10, deadline=None, suppress_health_check=HEALTH)
@given(case=cases())
def test_killed_anywhere_and_resumed_every_line_once(zygote, tmp_path_factory, fitted_classifier_dir, case) -> None:
    check_killed_and_resumed(zygote, tmp_path_factory, fitted_classifier_dir, *case)


@pytest.mark.slow
@settings(max_examples=80, deadline=None, suppress_health_check=HEALTH)
@given(case=cases())
def test_killed_anywhere_and_resumed_every_line_once_many(
    zygote, tmp_path_factory, fitted_classifier_dir, case
) -> None:
    check_killed_and_resumed(zygote, tmp_path_factory, fitted_classifier_dir, *case)

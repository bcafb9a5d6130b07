"""The run file beside a ``khabar predict`` output survives a full disk, and a resume without one says so.

The run file notes which input, models and settings wrote the output; ``--resume`` refuses others.
A full disk used to empty it (truncated, then written), after which any model resumed silently; a
resume that could not drop the old error records ended in a traceback.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from helpers import khabar_err as khabar
from helpers import one_line_error, write_articles

from inference.batch.locking import OutputLock, run_file


@pytest.fixture
def topic(fitted_classifier_dir: Path) -> list[str]:
    flags = ["--tasks", "topic", "--classifier", str(fitted_classifier_dir), "--device", "cpu"]
    return [*flags, "--backend", "torch", "--quiet"]


def ids(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text(encoding="utf-8").splitlines()]


def _no_room(fd: int, data: bytes) -> int:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_failed_save_leaves_what_the_run_file_held(tmp_path, monkeypatch) -> None:
    output = tmp_path / "out.jsonl"
    output.write_text("")
    with OutputLock(str(output)) as lock:
        lock.save({"models": {"classifier": {"model": "m"}}})
        held = run_file(str(output)).read_bytes()
        monkeypatch.setattr(os, "write", _no_room)
        with pytest.raises(OSError):
            lock.save({"models": {"classifier": {"model": "other"}}})
        monkeypatch.undo()
        assert run_file(str(output)).read_bytes() == held  # not emptied: a later --resume still checks


def test_a_full_disk_at_resume_is_one_line_and_the_models_are_still_checked(
    tmp_path, capsys, monkeypatch, topic, tiny_classifier_dir
) -> None:
    source, output = write_articles(tmp_path / "in.jsonl", 4), tmp_path / "out.jsonl"
    assert khabar(capsys, "predict", source, "-o", output, *topic)[0] == 0
    output.write_text(output.read_text(encoding="utf-8").splitlines(keepends=True)[0], encoding="utf-8")
    monkeypatch.setattr(os, "write", _no_room)
    code, err = khabar(capsys, "predict", source, "-o", output, "--resume", *topic)
    monkeypatch.undo()
    assert code == 2
    one_line_error(err, "out.jsonl.khabar-run", "No space left on device", "make room")
    other = [*topic, "--classifier", str(tiny_classifier_dir)]
    code, err = khabar(capsys, "predict", source, "-o", output, "--resume", *other)
    assert code == 2 and "would mix answers of two models" in err
    assert ids(output) == ["r0"]


def test_a_resume_without_a_run_file_says_nothing_could_be_checked(tmp_path, capsys, topic) -> None:
    source, output = write_articles(tmp_path / "in.jsonl", 4), tmp_path / "out.jsonl"
    assert khabar(capsys, "predict", source, "-o", output, *topic)[0] == 0
    output.write_text(output.read_text(encoding="utf-8").splitlines(keepends=True)[0], encoding="utf-8")
    run_file(str(output)).unlink()  # the output was copied elsewhere without it
    flags = [flag for flag in topic if flag != "--quiet"]
    code, err = khabar(capsys, "predict", source, "-o", output, "--resume", *flags)
    assert code == 0
    assert "has no run file" in err and "could not be checked" in err
    assert ids(output) == ["r0", "r1", "r2", "r3"]


def test_a_resume_that_cannot_drop_old_error_records_is_one_line(tmp_path, capsys, monkeypatch, topic) -> None:
    source, output = write_articles(tmp_path / "in.jsonl", 3), tmp_path / "out.jsonl"
    assert khabar(capsys, "predict", source, "-o", output, *topic)[0] == 0
    lines = output.read_text(encoding="utf-8").splitlines(keepends=True)
    error = json.dumps({"id": "r1", "line": 2, "error": "model failed"}) + "\n"
    output.write_text(lines[0] + error, encoding="utf-8")
    before = output.read_bytes()

    def no_room(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("inference.batch.resume.drop_spans", no_room)
    code, err = khabar(capsys, "predict", source, "-o", output, "--resume", *topic)
    assert code == 2
    one_line_error(err, "out.jsonl", "remove its error records", "No space left on device", "make room")
    assert output.read_bytes() == before


@pytest.mark.skipif(not hasattr(os, "link") or os.name == "nt", reason="needs hard links and flock")
def test_two_names_of_one_output_cannot_be_written_at_once(tmp_path) -> None:
    # Each name had its own run file, so two runs wrote one file at once.
    from inference.batch.locking import OutputLocked

    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text("")
    os.link(first, second)
    with OutputLock(str(first)), pytest.raises(OutputLocked, match="under another name"):
        OutputLock(str(second)).__enter__()
    with OutputLock(str(second)):  # released with the first run
        pass

"""`khabar` off the happy path: hostile inputs, broken models, concurrent runs, full disks.

Each test builds a small input, runs the real CLI on the tiny fitted classifier and checks
what a user relies on: the exit code, a one-line error naming the file, line or key, an
output that is valid JSON Lines with every input line accounted for exactly once, and an
input left exactly as it was.
"""

from __future__ import annotations

import atexit
import errno
import gzip
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import one_line_error

from inference.batch.writing import RecordWriter
from inference.cli import main

SAMPLE_TEST = Path(__file__).resolve().parent.parent / "data" / "sample" / "test.jsonl"


# --- helpers ---------------------------------------------------------------------------------------


def articles(n: int) -> list[str]:
    """``n`` short real articles from the bundled sample (cut, to keep the tiny model fast)."""
    rows = [json.loads(line) for line in SAMPLE_TEST.read_text(encoding="utf-8").splitlines()]
    return [rows[i % len(rows)]["article"][:300] for i in range(n)]


def good_rows(n: int, prefix: str = "g") -> list[dict]:
    return [{"id": f"{prefix}{i}", "article": text} for i, text in enumerate(articles(n))]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def strict_records(path: Path) -> list[dict]:
    """The records of a JSONL output, failing on anything that is not strict UTF-8 JSON (NaN included)."""
    text = path.read_bytes().decode("utf-8")  # strict: a lone surrogate or bad byte fails here
    assert text == "" or text.endswith("\n"), "the last record is cut short"
    return [json.loads(line, parse_constant=_no_constants) for line in text.splitlines()]


def khabar(capsys: pytest.CaptureFixture, *args: object) -> tuple[int, str, str]:
    """Run the CLI in this process; return its exit code, stdout and stderr."""
    code = main([str(arg) for arg in args])
    out, err = capsys.readouterr()
    return code, out, err


def env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def command(*args: object) -> list[str]:
    return [sys.executable, "-m", "inference.cli", *map(str, args)]


# The parent of every killed run: imports torch and khabar once, then forks one child per command.
ZYGOTE = r"""
import json, os, sys
import torch, transformers.models.bert.modeling_bert, inference.cli, inference.classifier
torch.set_num_threads(1)
for line in sys.stdin:
    message = json.loads(line)
    if "wait" in message:
        _, status = os.waitpid(message["wait"], 0)
        print(os.waitstatus_to_exitcode(status), flush=True)
        continue
    pid = os.fork()
    if pid == 0:
        quiet = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(quiet, fd)
        os._exit(inference.cli.main(message["argv"]))
    print(pid, flush=True)
"""


_zygotes: list[subprocess.Popen] = []


def shared_zygote() -> subprocess.Popen:
    """The forking parent (starting Python with torch takes seconds), started once for all fault tests."""
    if not _zygotes:
        _zygotes.append(
            subprocess.Popen(
                [sys.executable, "-c", ZYGOTE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env()
            )
        )
        atexit.register(_stop_zygote)
    return _zygotes[0]


def _stop_zygote() -> None:
    _zygotes[0].stdin.close()
    _zygotes[0].wait(timeout=30)


def ask(zygote: subprocess.Popen, message: dict) -> int:
    zygote.stdin.write(json.dumps(message) + "\n")
    zygote.stdin.flush()
    return int(zygote.stdout.readline())


@pytest.fixture(scope="module")
def topic(fitted_classifier_dir: Path) -> list[str]:
    """Flags for a topics-only run on the tiny fitted classifier."""
    return ["--tasks", "topic", "--classifier", str(fitted_classifier_dir), "--device", "cpu", "--quiet"]


def model_copy(source: Path, tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(source, target)
    return target


def edit_weights(model_dir: Path, change) -> None:
    """Rewrite the model's safetensors after ``change(tensors)`` edits the dict of tensors in place."""
    from safetensors.torch import load_file, save_file

    path = model_dir / "model.safetensors"
    tensors = load_file(path)
    change(tensors)
    save_file(tensors, path, metadata={"format": "pt"})


# --- 2. the same file as input and output ------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["same", "dot-slash", "symlink", "hardlink"])
def test_predict_refuses_to_write_over_its_input(tmp_path, topic, capsys, monkeypatch, spelling) -> None:
    source = write_jsonl(tmp_path / "x.jsonl", good_rows(3))
    before = digest(source)
    monkeypatch.chdir(tmp_path)
    target = {"same": "x.jsonl", "dot-slash": "./sub/../x.jsonl", "symlink": "link.jsonl", "hardlink": "hard.jsonl"}
    (tmp_path / "sub").mkdir()
    if spelling == "symlink":
        (tmp_path / "link.jsonl").symlink_to(source)
    if spelling == "hardlink":
        os.link(source, tmp_path / "hard.jsonl")
    code, _, err = khabar(capsys, "predict", "x.jsonl", "-o", target[spelling], "--overwrite", *topic)
    assert code == 2
    one_line_error(err, target[spelling], "same file as INPUT x.jsonl")
    assert digest(source) == before


def test_predict_refuses_stdout_redirected_into_its_input(tmp_path, topic) -> None:
    source = write_jsonl(tmp_path / "x.jsonl", good_rows(3))
    before = digest(source)
    with open(source, "ab") as stdout:
        done = subprocess.run(command("predict", source, *topic), stdout=stdout, stderr=subprocess.PIPE, env=env())
    assert done.returncode == 2
    one_line_error(done.stderr.decode(), "stdout", "same file as INPUT")
    assert digest(source) == before


@pytest.mark.parametrize("verb", ["classify", "summarize"])
def test_classify_and_summarize_refuse_stdin_and_stdout_being_one_file(tmp_path, verb, topic) -> None:
    text = tmp_path / "article.txt"
    text.write_text(articles(1)[0], encoding="utf-8")
    before = digest(text)
    with open(text, "rb") as stdin, open(text, "ab") as stdout:
        done = subprocess.run(command(verb, "-"), stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, env=env())
    assert done.returncode == 2
    one_line_error(done.stderr.decode(), "stdout", "same file as TEXT -")
    assert digest(text) == before


def test_merge_refuses_a_part_linked_as_its_output(tmp_path, capsys) -> None:
    part = write_jsonl(tmp_path / "p.jsonl", [{"id": "a", "line": 1, "topic": "x", "topic_score": 0.5}])
    os.link(part, tmp_path / "all.jsonl")
    before = digest(part)
    code, _, err = khabar(capsys, "merge", part, "-o", tmp_path / "all.jsonl", "--overwrite")
    assert code == 2
    one_line_error(err, "all.jsonl", "is also one of the parts")
    assert digest(part) == before


# --- 3. an unclosed CSV quote ---------------------------------------------------------------------------


def test_unclosed_csv_quote_accounts_for_every_line(tmp_path, topic, capsys) -> None:
    source = tmp_path / "q.csv"
    source.write_text('id,article\nc1,"no close\nc2,دوم\nc3,"سوم" x\nc4,چهارم\n', encoding="utf-8")
    before = digest(source)
    code, _, _ = khabar(capsys, "predict", source, "-o", tmp_path / "q.jsonl", *topic)
    records = strict_records(tmp_path / "q.jsonl")
    assert code == 3
    assert sorted(record["line"] for record in records) == [2, 3, 4, 5]  # every line once
    by_line = {record["line"]: record for record in records}
    assert "error" in by_line[2] and "quoted field" in by_line[2]["error"]
    assert by_line[3]["id"] == "c2" and "topic" in by_line[3]
    assert "error" in by_line[4] and by_line[5]["id"] == "c4" and "topic" in by_line[5]
    assert digest(source) == before


# --- 5. two runs on one output ------------------------------------------------------------------------


def test_second_run_on_a_busy_output_fails_at_once(tmp_path, topic, capsys) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", good_rows(4000))  # still running when the others try
    output = tmp_path / "out.jsonl"
    zygote = shared_zygote()
    first = ask(zygote, {"argv": ["predict", str(source), "-o", str(output), *topic, "--batch-size", "1"]})
    try:
        end = time.monotonic() + 60
        while not (output.exists() and output.stat().st_size > 0) and time.monotonic() < end:
            time.sleep(0.02)
        for flag in ("--overwrite", "--resume"):  # replacing the output, or continuing it
            started = time.monotonic()
            code, _, err = khabar(capsys, "predict", source, "-o", output, *topic, flag)
            assert time.monotonic() - started < 5  # refused before loading any model
            assert code == 2
            one_line_error(err, str(output), "in use by another khabar run", f"process {first}")
    finally:
        os.kill(first, signal.SIGTERM)  # stops after the batch it is in
        ask(zygote, {"wait": first})
    records = strict_records(output)
    ids = [record["id"] for record in records]
    assert len(ids) == len(set(ids)) and all("topic" in record for record in records)


# --- 6. --resume validates before it repairs ------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        b'{"name": "one record of mine", "without": "a newline"}',  # JSONL, but not khabar's
        b"plain notes without a newline",
        b'{"id": "a", "line": 1, "topic": "x", "topic_score": 0.5}\n{"name": "half',  # ours, then not ours
    ],
)
def test_resume_leaves_a_file_that_is_not_ours_untouched(tmp_path, topic, capsys, content) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", good_rows(2))
    output = tmp_path / "notes.jsonl"
    output.write_bytes(content)
    code, _, err = khabar(capsys, "predict", source, "-o", output, "--resume", *topic)
    assert code == 2
    one_line_error(err, "notes.jsonl", "not a khabar record")
    assert output.read_bytes() == content


# --- 7. lone surrogates ---------------------------------------------------------------------------------


def test_lone_surrogate_in_id_or_kept_column_is_an_error_record(tmp_path, topic, capsys) -> None:
    text = articles(1)[0]
    quoted = json.dumps(text, ensure_ascii=False)[1:-1]
    lines = [
        json.dumps({"id": "a", "article": text, "note": "ok"}, ensure_ascii=False),
        '{"id": "b\\ud800", "article": "TEXT", "note": "ok"}'.replace("TEXT", quoted),
        '{"id": "c", "article": "TEXT", "note": "x\\udc80"}'.replace("TEXT", quoted),
        '{"id": "d", "article": "TEXT\\ud83d", "note": "ok"}'.replace("TEXT", quoted),
        json.dumps({"id": "e", "article": text, "note": "ok"}, ensure_ascii=False),
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    output = tmp_path / "out.jsonl"
    code, _, _ = khabar(capsys, "predict", source, "-o", output, "--keep-columns", "note", *topic)
    assert code == 3
    records = strict_records(output)
    assert [record["line"] for record in records] == [1, 2, 3, 4, 5]
    assert [("error" in record) for record in records] == [False, True, True, True, False]
    assert "surrogate" in records[1]["error"] and "'id'" in records[1]["error"]
    assert "'note'" in records[2]["error"] and "'article'" in records[3]["error"]
    # A resumed run (retrying the errors) finds the same ids and writes each row exactly once.
    code, _, _ = khabar(capsys, "predict", source, "-o", output, "--keep-columns", "note", "--resume", *topic)
    again = strict_records(output)
    assert code == 3 and sorted(record["line"] for record in again) == [1, 2, 3, 4, 5]


# --- 8. deeply nested JSON ---------------------------------------------------------------------------------


def test_deeply_nested_json_is_a_bad_row(tmp_path, topic, capsys) -> None:
    source = tmp_path / "in.jsonl"
    rows = [json.dumps(row, ensure_ascii=False) for row in good_rows(2)]
    source.write_text(rows[0] + "\n" + "[" * 100_000 + "]" * 100_000 + "\n" + rows[1] + "\n", encoding="utf-8")
    code, _, _ = khabar(capsys, "predict", source, "-o", tmp_path / "out.jsonl", *topic)
    records = strict_records(tmp_path / "out.jsonl")
    assert code == 3 and [record["line"] for record in records] == [1, 2, 3]
    assert "nested too deeply" in records[1]["error"] and "topic" in records[2]


# --- 9 and 10. broken model directories ----------------------------------------------------------------


def _drop_tokenizer(model: Path) -> None:
    for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        (model / name).unlink(missing_ok=True)


def _drop_weights(model: Path) -> None:
    (model / "model.safetensors").unlink()


def _drop_head(model: Path) -> None:
    edit_weights(model, lambda tensors: [tensors.pop(k) for k in list(tensors) if k.startswith("classifier.")])


def _nan_weight(model: Path) -> None:
    edit_weights(model, lambda tensors: tensors["classifier.bias"].fill_(float("nan")))


def _corrupt_safetensors(model: Path) -> None:
    path = model / "model.safetensors"
    path.write_bytes(path.read_bytes()[:200] + b"\x00garbage")


@pytest.mark.parametrize(
    "damage, message",
    [
        (_drop_tokenizer, "no tokenizer files"),
        (_drop_weights, "no weights"),
        (_drop_head, "weights lack 'classifier."),
        (_nan_weight, "holds NaN or infinite values"),
        (_corrupt_safetensors, "weights are damaged"),
    ],
)
def test_broken_model_directory_is_refused_at_load(tmp_path, fitted_classifier_dir, capsys, damage, message) -> None:
    model = model_copy(fitted_classifier_dir, tmp_path)
    damage(model)
    source = write_jsonl(tmp_path / "in.jsonl", good_rows(2))
    output = tmp_path / "out.jsonl"
    code, _, err = khabar(capsys, "predict", source, "-o", output, "--tasks", "topic", "--classifier", model, "--quiet")
    assert code == 2
    one_line_error(err, str(model), message)
    assert not output.exists() or output.read_bytes() == b""


@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_a_damaged_generation_config_is_refused_not_read_past(tmp_path, tiny_summarizer_dir, capsys, backend) -> None:
    model = model_copy(tiny_summarizer_dir, tmp_path)
    (model / "generation_config.json").write_text("xx")  # read past, decoding fell back to greedy, 20 tokens
    code, _, err = khabar(capsys, "summarize", "خبر", "--summarizer", model, "--device", "cpu", "--backend", backend)
    assert code == 2
    one_line_error(err, "generation_config.json", "cannot be read as decoding settings")


def test_a_pickle_that_is_not_plain_weights_is_refused_and_never_run(tmp_path, fitted_classifier_dir, capsys) -> None:
    import pickle

    model = model_copy(fitted_classifier_dir, tmp_path)
    (model / "model.safetensors").unlink()
    marker = tmp_path / "PWNED"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (model / "pytorch_model.bin").write_bytes(pickle.dumps({"weight": Payload()}, protocol=2))
    code, _, err = khabar(capsys, "classify", "خبر", "--classifier", model, "--device", "cpu")
    assert code == 2
    line = one_line_error(err, str(model), "Python objects besides weights")
    assert "weights_only" not in line and not marker.exists()


def test_non_finite_logits_become_error_records_never_nan(tmp_path, fitted_classifier_dir, capsys) -> None:
    # Finite weights whose logits overflow: every pooled feature is 1, every logit 32 x 3e38 = inf.
    def overflow(tensors: dict) -> None:
        tensors["bert.pooler.dense.weight"].zero_()
        tensors["bert.pooler.dense.bias"].fill_(3e38)
        tensors["classifier.weight"].fill_(3e38)

    model = model_copy(fitted_classifier_dir, tmp_path)
    edit_weights(model, overflow)
    source = write_jsonl(tmp_path / "in.jsonl", good_rows(3))
    output = tmp_path / "out.jsonl"
    code, _, _ = khabar(capsys, "predict", source, "-o", output, "--tasks", "topic", "--classifier", model, "--quiet")
    records = strict_records(output)
    assert code == 3 and len(records) == 3
    assert all("NaN or infinite" in record["error"] and "topic_score" not in record for record in records)


# --- 11. --resume onto a changed input -------------------------------------------------------------------


def test_resume_refuses_an_input_that_changed(tmp_path, topic, capsys) -> None:
    rows = [{"article": text} for text in articles(4)]  # no ids: ids are line numbers
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    output = tmp_path / "out.jsonl"
    assert khabar(capsys, "predict", source, "-o", output, *topic)[0] == 0
    write_jsonl(source, [{"article": "خبر تازه اول"}, {"article": "خبر تازه دوم"}, *rows])
    before = digest(output)
    code, _, err = khabar(capsys, "predict", source, "-o", output, "--resume", *topic)
    assert code == 2
    one_line_error(err, "in.jsonl", "is not the input", "--overwrite")
    assert digest(output) == before
    output.unlink()  # nothing left to mix up: --resume starts afresh
    assert khabar(capsys, "predict", source, "-o", output, "--resume", *topic)[0] == 0
    assert [record["id"] for record in strict_records(output)] == [1, 2, 3, 4, 5, 6]


def test_resume_with_a_repeated_id_writes_every_line_exactly_once(tmp_path, topic, capsys) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [{"id": "x", "article": None}, {"id": "x", "article": "تیم فوتبال"}])
    output = tmp_path / "out.jsonl"
    assert khabar(capsys, "predict", source, "-o", output, *topic)[0] == 3
    code, _, _ = khabar(capsys, "predict", source, "-o", output, "--resume", *topic)
    records = strict_records(output)
    assert code == 3 and sorted(record["line"] for record in records) == [1, 2]
    assert "error" in next(record for record in records if record["line"] == 1)


def test_resume_where_an_unreadable_rows_line_is_another_rows_id(tmp_path, topic, capsys) -> None:
    source = tmp_path / "in.csv"  # ids 1..N: the unreadable row's id (its line number) is the next row's id
    source.write_text('id,article\n1,تیم فوتبال\n2,"never closed\n3,خبر اقتصادی\n', encoding="utf-8")
    output = tmp_path / "out.jsonl"
    first, _, _ = khabar(capsys, "predict", source, "-o", output, *topic)
    lines_first = sorted(record["line"] for record in strict_records(output))
    code, _, _ = khabar(capsys, "predict", source, "-o", output, "--resume", *topic)
    assert (first, code) == (3, 3)
    assert sorted(record["line"] for record in strict_records(output)) == lines_first  # each once, none lost


def test_an_id_column_no_jsonl_row_has_is_a_usage_error(tmp_path, topic, capsys) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "article": text} for text in articles(2)])
    code, _, err = khabar(capsys, "predict", source, "-o", tmp_path / "out.jsonl", "--id-column", "url", *topic)
    assert code == 2 and not (tmp_path / "out.jsonl").exists()
    one_line_error(err, "--id-column url: no such field", "(fields: article, id)")


def test_resume_refuses_another_id_column(tmp_path, topic, capsys) -> None:
    rows = [{"id": f"a{i}", "url": f"u{i}", "article": text} for i, text in enumerate(articles(3))]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    output = tmp_path / "out.jsonl"
    assert khabar(capsys, "predict", source, "-o", output, *topic)[0] == 0
    before = digest(output)
    code, _, err = khabar(capsys, "predict", source, "-o", output, "--resume", "--id-column", "url", *topic)
    assert code == 2 and digest(output) == before
    one_line_error(err, "out.jsonl", "--id-column id", "not url", "--overwrite")
    assert khabar(capsys, "predict", source, "-o", output, "--resume", "--id-column", "id", *topic)[0] == 0
    assert digest(output) == before  # every row was already done


def _half_done(tmp_path: Path, topic: list[str], capsys) -> tuple[Path, Path, list[str]]:
    """An input of 6 rows and an output holding the first 3 of them, as a run stopped half-way leaves it."""
    source = write_jsonl(tmp_path / "in.jsonl", good_rows(6))
    output = tmp_path / "out.jsonl"
    assert khabar(capsys, "predict", source, "-o", output, *topic)[0] == 0
    output.write_text("".join(output.read_text(encoding="utf-8").splitlines(keepends=True)[:3]), encoding="utf-8")
    return source, output, topic


def _with_classifier(topic: list[str], model: Path) -> list[str]:
    flags = list(topic)
    flags[flags.index("--classifier") + 1] = str(model)
    return flags


def test_resume_with_another_classifier_is_refused_before_mixing_two_models(
    tmp_path, topic, capsys, tiny_classifier_dir
) -> None:
    source, output, _ = _half_done(tmp_path, topic, capsys)
    before = digest(output)
    code, _, err = khabar(
        capsys, "predict", source, "-o", output, "--resume", *_with_classifier(topic, tiny_classifier_dir)
    )
    assert code == 2 and digest(output) == before
    one_line_error(err, "out.jsonl", "written with the classifier", str(tiny_classifier_dir), "--overwrite")


def test_resume_refuses_a_classifier_retrained_in_place_but_not_one_moved(
    tmp_path, topic, capsys, fitted_classifier_dir
) -> None:
    moved = model_copy(fitted_classifier_dir, tmp_path)  # same files, another folder
    (moved / "metrics.json").write_text("{}")  # training's reports are not the model
    source, output, _ = _half_done(tmp_path, topic, capsys)
    assert khabar(capsys, "predict", source, "-o", output, "--resume", *_with_classifier(topic, moved))[0] == 0
    assert len(strict_records(output)) == 6

    retrained = _with_classifier(topic, moved)
    output.write_text("".join(output.read_text(encoding="utf-8").splitlines(keepends=True)[:3]), encoding="utf-8")
    edit_weights(moved, lambda tensors: tensors.update({k: v + 0.01 for k, v in tensors.items()}))
    code, _, err = khabar(capsys, "predict", source, "-o", output, "--resume", *retrained)
    assert code == 2 and len(strict_records(output)) == 3
    one_line_error(err, "out.jsonl", f"the classifier {moved} changed since", "--overwrite")


@pytest.mark.parametrize(
    "first, then, named",
    [
        (["--num-beams", "2", "--max-new-tokens", "4"], ["--num-beams", "1", "--max-new-tokens", "4"], "2, not 1"),
        ([], ["--max-new-tokens", "4"], "--max-new-tokens (the model's default), not 4"),
    ],
)
def test_resume_with_other_decoding_settings_is_refused(tmp_path, capsys, tiny_summarizer_dir, first, then, named):
    summary = ["--tasks", "summary", "--summarizer", str(tiny_summarizer_dir), "--device", "cpu", "--quiet"]
    source = write_jsonl(tmp_path / "in.jsonl", good_rows(2))
    output = tmp_path / "out.jsonl"
    assert khabar(capsys, "predict", source, "-o", output, *summary, *first)[0] == 0
    output.write_text(output.read_text(encoding="utf-8").splitlines(keepends=True)[0], encoding="utf-8")
    code, _, err = khabar(capsys, "predict", source, "-o", output, "--resume", *summary, *then)
    assert code == 2 and len(strict_records(output)) == 1
    one_line_error(err, "out.jsonl", named, "--overwrite")
    assert khabar(capsys, "predict", source, "-o", output, "--resume", *summary, *first)[0] == 0
    assert len(strict_records(output)) == 2


@pytest.mark.parametrize(
    "first, then",
    [([], ["--num-beams", "4", "--max-new-tokens", "64"]), (["--num-beams", "4"], [])],
)
def test_resume_spelling_out_the_models_default_decoding_is_the_same_run(
    tmp_path, capsys, tiny_summarizer_dir, first, then
) -> None:
    # The tiny summarizer saves num_beams 4 and max_new_tokens 64: leaving them to it decodes the same way.
    summary = ["--tasks", "summary", "--summarizer", str(tiny_summarizer_dir), "--device", "cpu", "--quiet"]
    source = write_jsonl(tmp_path / "in.jsonl", good_rows(2))
    output = tmp_path / "out.jsonl"
    assert khabar(capsys, "predict", source, "-o", output, *summary, *first)[0] == 0
    output.write_text(output.read_text(encoding="utf-8").splitlines(keepends=True)[0], encoding="utf-8")
    assert khabar(capsys, "predict", source, "-o", output, "--resume", *summary, *then)[0] == 0
    assert len(strict_records(output)) == 2


def test_a_run_refused_before_writing_leaves_no_run_file(tmp_path, topic, capsys) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", good_rows(2))
    code, _, err = khabar(capsys, "predict", source, "-o", tmp_path / "out.jsonl", *_with_classifier(topic, tmp_path))
    assert code == 2 and "config.json" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


def test_sigterm_while_a_model_loads_stops_as_ctrl_c_does(tmp_path, topic, capsys, monkeypatch) -> None:
    before = signal.getsignal(signal.SIGTERM)

    def loading(kind, args):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)  # the signal lands here, as it would inside from_pretrained
        pytest.fail("SIGTERM did not stop the load")

    monkeypatch.setattr("inference.batch.command.load_model", loading)
    source = write_jsonl(tmp_path / "in.jsonl", good_rows(2))
    code, _, err = khabar(capsys, "predict", source, "-o", tmp_path / "out.jsonl", *topic)
    assert code == 130 and "interrupted" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]  # no output, no run file
    assert signal.getsignal(signal.SIGTERM) is before


# --- 12. khabar merge -------------------------------------------------------------------------------------


def _part(path: Path, lines: list[int]) -> Path:
    return write_jsonl(path, [{"id": f"r{n}", "line": n, "topic": "x", "topic_score": 0.5} for n in lines])


def test_merge_refuses_an_existing_output_without_overwrite(tmp_path, capsys) -> None:
    parts = [_part(tmp_path / "a.jsonl", [1, 3]), _part(tmp_path / "b.jsonl", [2])]
    output = tmp_path / "all.jsonl"
    output.write_text("precious\n")
    code, _, err = khabar(capsys, "merge", *parts, "-o", output)
    assert code == 2
    one_line_error(err, "all.jsonl", "already exists", "--overwrite")
    assert output.read_text() == "precious\n"
    assert khabar(capsys, "merge", *parts, "-o", output, "--overwrite")[0] == 0
    assert [record["line"] for record in strict_records(output)] == [1, 2, 3]


def test_merge_failing_part_way_leaves_the_old_output_whole(tmp_path, capsys) -> None:
    good = _part(tmp_path / "a.jsonl", list(range(1, 40, 2)))
    broken = _part(tmp_path / "b.jsonl", list(range(2, 30, 2)))
    with broken.open("a") as f:
        f.write("not json\n")
    output = tmp_path / "all.jsonl"
    output.write_text("old result\n")
    code, _, err = khabar(capsys, "merge", good, broken, "-o", output, "--overwrite")
    assert code == 2
    one_line_error(err, "b.jsonl", "line 15")
    assert output.read_text() == "old result\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl", "all.jsonl", "b.jsonl"]


def test_merge_refuses_a_missing_shard_unless_allowed(tmp_path, capsys) -> None:
    first = _part(tmp_path / "preds.shard-0-of-3.jsonl", [1, 4])
    third = _part(tmp_path / "preds.shard-2-of-3.jsonl", [3, 6])
    output = tmp_path / "all.jsonl"
    code, _, err = khabar(capsys, "merge", first, third, "-o", output)
    assert code == 2 and not output.exists()
    one_line_error(err, "preds.shard-1-of-3.jsonl", "left out", "--allow-missing")
    assert khabar(capsys, "merge", first, third, "-o", output, "--allow-missing")[0] == 0
    assert [record["line"] for record in strict_records(output)] == [1, 3, 4, 6]


@pytest.mark.parametrize(
    "name, problem",
    [("no/such/dir/all.jsonl", "no such directory"), ("folder", "is a directory")],
)
@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_merge_into_a_path_it_cannot_write_is_one_line(tmp_path, capsys, name, problem, overwrite) -> None:
    (tmp_path / "folder").mkdir()
    parts = [_part(tmp_path / "a.jsonl", [1]), _part(tmp_path / "b.jsonl", [2])]
    code, _, err = khabar(capsys, "merge", *parts, "-o", tmp_path / name, *overwrite)
    assert code == 2
    one_line_error(err, name, problem)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl", "b.jsonl", "folder"]
    assert not any((tmp_path / "folder").iterdir())


# --- also: full disk, bad encodings, formats, ids, retries, threads, messages ---------------------------


class _FullDisk:
    """A text file that takes ``room`` characters, then writes part of the next write and fails like ENOSPC."""

    def __init__(self, file, room: int) -> None:
        self._file, self._room = file, room

    def write(self, text: str) -> int:
        if len(text) > self._room:
            self._file.write(text[: self._room])
            self._file.flush()
            self._room = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        self._room -= len(text)
        return self._file.write(text)

    def __getattr__(self, name: str):
        return getattr(self._file, name)


def test_full_disk_is_one_line_and_resume_repairs_the_cut_record(tmp_path, topic, capsys, monkeypatch) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", good_rows(6))
    output = tmp_path / "out.jsonl"
    real_open = RecordWriter._open
    monkeypatch.setattr(RecordWriter, "_open", lambda self, append: _FullDisk(real_open(self, append), 250))
    code, _, err = khabar(capsys, "predict", source, "-o", output, "--batch-size", "2", *topic)
    assert code == 2
    one_line_error(err, "out.jsonl", "No space left on device", "--resume")
    assert not output.read_bytes().endswith(b"\n")  # a record was cut short
    monkeypatch.undo()
    code, _, _ = khabar(capsys, "predict", source, "-o", output, "--resume", *topic)
    records = strict_records(output)
    assert code == 0 and sorted(record["id"] for record in records) == [f"g{i}" for i in range(6)]


def test_full_stdout_says_to_run_again_not_to_resume(tmp_path, topic, capsys, monkeypatch) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", good_rows(6))
    monkeypatch.setattr(sys, "stdout", _FullDisk(sys.stdout, 250))
    code, _, err = khabar(capsys, "predict", source, "--batch-size", "2", *topic)  # stdout: --resume is refused
    assert code == 2
    line = one_line_error(err, "No space left on device", "run it again")
    assert "--resume" not in line


@pytest.mark.parametrize(
    "encoding, content",
    [
        ("UTF-16", '{"id": "a", "article": "خبر"}\n'.encode("utf-16")),
        ("UTF-16", '{"id": "a", "article": "news"}\n'.encode("utf-16-le")),
        ("JSON array", json.dumps([{"id": "a", "article": "خبر"}]).encode()),
        ("gzip-compressed; decompress it first (e.g. zcat", gzip.compress(b'{"id": "a", "article": "x"}\n', mtime=0)),
        ("mostly NUL bytes, so it is not UTF-8 text", bytes(5000)),  # what `head -c 5000 /dev/zero` gives
    ],
)
def test_utf16_compressed_input_or_json_array_is_one_clear_error(tmp_path, topic, capsys, encoding, content) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(content)
    code, _, err = khabar(capsys, "predict", source, "-o", tmp_path / "out.jsonl", *topic)
    assert code == 2
    one_line_error(err, "in.jsonl", encoding)
    assert not (tmp_path / "out.jsonl").exists()


def test_an_overlong_line_and_a_key_given_twice_are_error_records_not_a_crash(
    tmp_path, topic, capsys, monkeypatch
) -> None:
    monkeypatch.setattr("inference.batch.reading.MAX_LINE_BYTES", 4096)  # 32 MiB in use; the same code path
    text = articles(1)[0]
    lines = [
        json.dumps({"id": "a", "article": text}, ensure_ascii=False),
        json.dumps({"id": "huge", "article": "خ" * 5000}, ensure_ascii=False),  # 10 kB: over the cap
        '{"id": "twice", "article": ' + json.dumps(text, ensure_ascii=False) + ', "article": "other"}',
        json.dumps({"id": "b", "article": text}, ensure_ascii=False),
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, _, _ = khabar(capsys, "predict", source, "-o", tmp_path / "out.jsonl", *topic)
    records = strict_records(tmp_path / "out.jsonl")
    assert code == 3 and [record.get("topic") is not None for record in records] == [True, False, False, True]
    assert "over 4,096 bytes" in records[1]["error"] and records[1]["line"] == 2
    assert "'article' appears twice" in records[2]["error"]


def test_suffixless_inputs_take_an_explicit_input_format(tmp_path, topic, capsys) -> None:
    source = tmp_path / "news"
    source.write_text("id\tarticle\nt1\t" + " ".join(articles(1)[0].split()) + "\n", encoding="utf-8")
    code, _, _ = khabar(capsys, "predict", source, "--input-format", "tsv", "-o", tmp_path / "out.jsonl", *topic)
    assert code == 0 and [record["id"] for record in strict_records(tmp_path / "out.jsonl")] == ["t1"]
    code, _, _ = khabar(capsys, "predict", "/dev/null", "--input-format", "jsonl", "-o", tmp_path / "e.jsonl", *topic)
    assert code == 0 and strict_records(tmp_path / "e.jsonl") == []


def test_non_string_ids_keep_their_json_text(tmp_path, topic, capsys) -> None:
    text = articles(1)[0]
    ids = [1.5, True, 1234.0, 3]  # `true` sits on line 2; a line-number id "2" would collide with nothing here
    source = write_jsonl(tmp_path / "in.jsonl", [{"id": value, "article": text} for value in ids])
    code, _, _ = khabar(capsys, "predict", source, "-o", tmp_path / "out.jsonl", *topic)
    assert code == 0
    assert [record["id"] for record in strict_records(tmp_path / "out.jsonl")] == ["1.5", "true", "1234.0", 3]


def test_resume_retries_error_records_unless_told_not_to(tmp_path, topic, capsys) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", good_rows(3))
    output = tmp_path / "out.jsonl"
    assert khabar(capsys, "predict", source, "-o", output, *topic)[0] == 0
    records = strict_records(output)
    records[1] = {"id": "g1", "line": 2, "error": "topic: out of memory"}  # a failure that may not recur
    write_jsonl(output, records)
    code, _, _ = khabar(capsys, "predict", source, "-o", output, "--resume", "--no-retry-errors", *topic)
    assert code == 0 and strict_records(output) == records
    code, _, _ = khabar(capsys, "predict", source, "-o", output, "--resume", *topic)
    again = strict_records(output)
    assert code == 0 and sorted(record["id"] for record in again) == ["g0", "g1", "g2"]
    assert all("topic" in record for record in again)


def test_first_classify_from_several_threads_loads_the_model_once(fitted_classifier_dir, monkeypatch) -> None:
    from inference import api

    api.clear_cache()
    loads = []
    real = api.Classifier.from_pretrained

    def slow_load(*args, **kwargs):
        loads.append(1)
        time.sleep(0.3)  # a real model takes seconds: the window in which other threads miss the cache
        return real(*args, **kwargs)

    monkeypatch.setattr(api.Classifier, "from_pretrained", slow_load)
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(api.classify("خبر", model=fitted_classifier_dir, device="cpu")))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    api.clear_cache()
    assert len(results) == 4 and len(loads) == 1


def test_json_error_message_reads_once(tmp_path, topic, capsys) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"id": "a", "article": "unterminated', encoding="utf-8")  # the file ends inside the string
    khabar(capsys, "predict", source, "-o", tmp_path / "out.jsonl", *topic)
    (record,) = strict_records(tmp_path / "out.jsonl")
    assert record["error"] == "malformed JSON: Unterminated string starting at column 24"


def test_resume_retries_error_records_of_a_csv_output(tmp_path, topic, capsys) -> None:
    import csv

    source = write_jsonl(tmp_path / "in.jsonl", good_rows(3))
    output = tmp_path / "out.csv"
    assert khabar(capsys, "predict", source, "-o", output, *topic)[0] == 0
    lines = output.read_text(encoding="utf-8").splitlines()
    lines[2] = "g1,2,,,topic: out of memory"  # header, g0, then g1 as an error record
    output.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, _, _ = khabar(capsys, "predict", source, "-o", output, "--resume", *topic)
    with output.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert code == 0 and sorted(row["id"] for row in rows) == ["g0", "g1", "g2"]
    assert all(row["topic"] and not row["error"] for row in rows)

"""`khabar predict / classify / summarize / merge` end to end on the tiny offline models.

The tiny models have random weights: tests check structure, ids, counts, errors and exit
codes, never the quality of a topic or a summary.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import read_jsonl

from inference.cli import main

# These run the real Classifier and Summarizer on the tiny models.
pytest.importorskip("inference.classifier")
pytest.importorskip("inference.summarizer")

SAMPLE_TEST = Path(__file__).resolve().parent.parent / "data" / "sample" / "test.jsonl"
LABELS = {"politics", "international", "economy", "society", "sports", "culture-art", "science-tech", "health"}


def sample_rows(n: int) -> list[dict]:
    """``n`` sample articles, repeating the bundled test split with fresh ids when n is larger."""
    rows = [json.loads(line) for line in SAMPLE_TEST.read_text(encoding="utf-8").splitlines()]
    return [{**rows[i % len(rows)], "id": f"n{i:05d}"} for i in range(n)]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def write_csv(path: Path, rows: list[dict], delimiter: str = ",") -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def classifier_flags(tiny_classifier_dir: Path) -> list[str]:
    return ["--classifier", str(tiny_classifier_dir), "--device", "cpu"]


@pytest.fixture(scope="module")
def summarizer_flags(tiny_summarizer_dir: Path) -> list[str]:
    """The tiny summarizer, with short greedy summaries to keep tests fast."""
    return ["--summarizer", str(tiny_summarizer_dir), "--device", "cpu", "--num-beams", "1", "--max-new-tokens", "4"]


@pytest.fixture(scope="module")
def models(classifier_flags: list[str], summarizer_flags: list[str]) -> list[str]:
    """Flags naming both tiny models, for `khabar predict`."""
    return classifier_flags + summarizer_flags


def khabar(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """Run the CLI in this process; return its exit code, stdout and stderr."""
    code = main([str(arg) for arg in args])
    out, err = capsys.readouterr()
    return code, out, err


def spawn(*args: str, **kwargs) -> subprocess.Popen:
    """Start the CLI as its own process, as a user's shell would."""
    command = [sys.executable, "-m", "inference.cli", *map(str, args)]
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    return subprocess.Popen(command, text=True, encoding="utf-8", **pipes, **kwargs)


# --- formats -----------------------------------------------------------------------------------


def test_predict_jsonl_writes_one_record_per_row(tmp_path, models, capsys) -> None:
    rows = sample_rows(5)
    out = tmp_path / "preds.jsonl"
    code, stdout, err = khabar(capsys, "predict", write_jsonl(tmp_path / "in.jsonl", rows), "-o", out, *models)
    assert code == 0 and stdout == ""
    records = read_jsonl(out)
    assert [r["id"] for r in records] == [r["id"] for r in rows]
    assert [r["line"] for r in records] == [1, 2, 3, 4, 5]
    assert all(r["topic"] in LABELS and 0 <= r["topic_score"] <= 1 and isinstance(r["summary"], str) for r in records)
    assert err.splitlines()[-1].startswith("khabar predict: 5 rows read, 5 written, 0 failed in ")
    assert "article/s" not in err  # no progress bar: stderr is not a terminal and --progress was not given


@pytest.mark.parametrize(("flags", "per_call"), [([], 8), (["--batch-size", "4"], 4)])
def test_predict_summarizes_in_the_batch_the_beams_run_fastest_within_batch_size(
    tmp_path, tiny_summarizer_dir, monkeypatch, capsys, flags, per_call
) -> None:
    # 16 rows a batch (the default --batch-size), but 4 beams run fastest on 8 articles a call.
    from inference.summarizer import Summarizer

    sizes, summarize = [], Summarizer.summarize
    monkeypatch.setattr(
        Summarizer,
        "summarize",
        lambda self, texts, **kw: sizes.append(kw["batch_size"]) or summarize(self, texts, **kw),
    )
    source = write_jsonl(tmp_path / "in.jsonl", sample_rows(3))
    model = ["--summarizer", tiny_summarizer_dir, "--device", "cpu", "--num-beams", "4", "--max-new-tokens", "2"]
    code, _, err = khabar(capsys, "predict", source, "-o", tmp_path / "out.jsonl", "--tasks", "summary", *model, *flags)
    assert code == 0, err
    assert set(sizes) == {per_call}


def test_predict_csv_to_csv_with_title_and_kept_columns(tmp_path, models, capsys) -> None:
    rows = [
        {k: row[k].replace("\n", " ") for k in ("id", "title", "article", "summary", "source")}
        for row in sample_rows(3)
    ]
    rows[1]["article"] = "خط اول\nخط دوم، با «نقل‌قول» و ویرگول"  # a quoted cell over two lines
    out = tmp_path / "preds.csv"
    args = ("--title-column", "title", "--keep-columns", "source,summary", "--tasks", "topic")
    code, _, _ = khabar(capsys, "predict", write_csv(tmp_path / "in.csv", rows), "-o", out, *args, *models)
    assert code == 0
    with out.open(encoding="utf-8", newline="") as f:
        records = list(csv.DictReader(f))
    assert list(records[0]) == ["id", "line", "topic", "topic_score", "error", "source", "input_summary"]
    assert [(r["id"], r["line"]) for r in records] == [(rows[0]["id"], "2"), (rows[1]["id"], "3"), (rows[2]["id"], "5")]
    assert [r["input_summary"] for r in records] == [row["summary"] for row in rows]
    assert all(r["topic"] in LABELS and r["error"] == "" for r in records)


def test_predict_tsv_without_ids_numbers_rows_by_line(tmp_path, models, capsys) -> None:
    rows = [{"text": row["article"].replace("\n", " ")} for row in sample_rows(2)]
    out = tmp_path / "preds.jsonl"
    code, _, _ = khabar(capsys, "predict", write_csv(tmp_path / "in.tsv", rows, "\t"), "-o", out, *models)
    assert code == 0
    assert [r["id"] for r in read_jsonl(out)] == [2, 3]  # the header is line 1


def test_predict_reads_stdin_and_writes_stdout(models) -> None:
    lines = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in sample_rows(3))
    proc = spawn("predict", "-", "-o", "-", *models)
    stdout, stderr = proc.communicate(lines, timeout=120)
    assert proc.returncode == 0, stderr
    records = [json.loads(line) for line in stdout.splitlines()]
    assert [r["id"] for r in records] == ["n00000", "n00001", "n00002"] and all("summary" in r for r in records)
    assert "3 rows read, 3 written" in stderr


def test_classify_texts_and_stdin(classifier_flags, capsys, monkeypatch) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO("بازار ارز امروز آرام بود".encode())))
    code, stdout, _ = khabar(capsys, "classify", "-", "تیم ملی فوتبال برد", *classifier_flags)
    assert code == 0
    labels = [line.split("\t") for line in stdout.splitlines()]
    assert len(labels) == 2 and all(label in LABELS and 0 <= float(score) <= 1 for label, score in labels)


def test_summarize_prints_one_summary_per_text(summarizer_flags, capsys) -> None:
    code, stdout, _ = khabar(capsys, "summarize", "خبر اول درباره فوتبال", "خبر دوم درباره اقتصاد", *summarizer_flags)
    assert code == 0 and len(stdout.splitlines()) == 2


# --- bad rows and exit codes -------------------------------------------------------------------


def test_every_bad_row_kind_gets_an_error_record_and_exit_3(tmp_path, models, capsys) -> None:
    good = sample_rows(2)
    lines = [
        json.dumps(good[0], ensure_ascii=False),
        "{not json",
        json.dumps({"id": "no-text", "title": "x"}),
        json.dumps({"id": "empty", "article": "   "}),
        json.dumps({"id": "number", "article": 12}),
        json.dumps({"id": "huge", "article": "خبر " * 60_000}),
        json.dumps({"id": "invisible", "article": "\u200b\u200d"}),  # passes our checks, the model rejects it
        json.dumps({"id": "long", "article": good[1]["article"] * 20}, ensure_ascii=False),  # under the limit
    ]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    code, _, err = khabar(capsys, "predict", path, "-o", out, "--tasks", "topic", *models)
    assert code == 3
    records = read_jsonl(out)
    assert [r["id"] for r in records] == ["n00000", 2, "no-text", "empty", "number", "huge", "invisible", "long"]
    errors = {r["line"]: r["error"] for r in records if "error" in r}
    assert list(errors) == [2, 3, 4, 5, 6, 7]
    assert errors[2].startswith("malformed JSON") and "missing" in errors[3] and "empty" in errors[4]
    assert "not a string" in errors[5] and "over the 200,000 limit" in errors[6]
    assert errors[7].startswith("topic: ") and "index" not in errors[7]
    assert records[-1]["topic"] in LABELS  # its batch-mates survive the rejected row
    assert "8 rows read, 2 written, 6 failed" in err


def test_strict_stops_at_the_first_bad_row(tmp_path, models, capsys) -> None:
    rows = sample_rows(4)
    rows[2]["article"] = ""
    out = tmp_path / "out.jsonl"
    code, _, err = khabar(capsys, "predict", write_jsonl(tmp_path / "in.jsonl", rows), "-o", out, "--strict", *models)
    assert code == 3
    assert [r["id"] for r in read_jsonl(out)] == ["n00000", "n00001"]
    assert "line 3: text field 'article' is empty (--strict)" in err
    assert "2 written, stopped at a failed row" in err and "0 failed" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch-size", "0"], "argument --batch-size: '0' must be at least 1"),
        (["--tasks", "topic,sentiment"], "unknown task 'sentiment'"),
        (["--quantize", "int4"], "argument --quantize: invalid choice"),
        (
            ["--backend", "onnx"],
            "--backend onnx: runs the classifier only, and --tasks includes summary; use --backend fast",
        ),
        (["--backend", "ctranslate2", "--tasks", "topic"], "--backend ctranslate2: runs the summarizer only"),
        (["--classifier", "no/such/model"], "--classifier no/such/model:"),
        (["--text-column", "body"], "--text-column body: no such column in"),
        (["--num-shards", "2", "--shard-index", "5"], "--shard-index 5: must be in 0..1"),
        (["--max-new-tokens", "100000000"], "argument --max-new-tokens: '100000000' is over the limit of 2048"),
        (["--num-beams", "1000"], "argument --num-beams: '1000' is over the limit of 64"),
    ],
)
def test_usage_errors_exit_2_with_one_line(tmp_path, models, capsys, args, message) -> None:
    source = write_csv(tmp_path / "in.csv", [{"id": "a", "article": "متن"}])
    code, _, err = khabar(capsys, "predict", source, "-o", tmp_path / "out.jsonl", *models, *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out.jsonl").exists()


def test_backend_fast_runs_each_model_on_its_fast_engine(
    tmp_path, tiny_classifier_dir, tiny_summarizer_dir, capsys
) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("ctranslate2")
    # Private copies without earlier conversions: the engines cache theirs beside the model.
    fresh = shutil.ignore_patterns(".khabar-cache")
    classifier = shutil.copytree(tiny_classifier_dir, tmp_path / "classifier", ignore=fresh)
    summarizer = shutil.copytree(tiny_summarizer_dir, tmp_path / "summarizer", ignore=fresh)
    source = write_jsonl(tmp_path / "in.jsonl", sample_rows(3))
    out = tmp_path / "out.jsonl"
    flags = ["--classifier", classifier, "--summarizer", summarizer, "--max-new-tokens", "4"]
    code, _, err = khabar(capsys, "predict", source, "-o", out, *flags, "--backend", "fast", "--quantize", "int8")
    assert code == 0, err
    records = read_jsonl(out)
    assert [r["id"] for r in records] == ["n00000", "n00001", "n00002"]
    assert all(r["topic"] in LABELS and isinstance(r["summary"], str) for r in records)
    converted = {
        p.name.split("-")[0] for model in (classifier, summarizer) for p in (model / ".khabar-cache").iterdir()
    }
    assert converted == {"onnx", "ctranslate2"}
    assert err.count("(first use only;") == 2  # the wait is explained, once per model
    for model in (classifier, summarizer):
        shutil.rmtree(model / ".khabar-cache")
    again = ["--overwrite", "--quiet", "--backend", "fast", "--quantize", "int8"]
    code, _, err = khabar(capsys, "predict", source, "-o", out, *flags, *again)
    assert code == 0 and err == ""


def test_a_fast_engine_that_is_not_installed_is_a_one_line_error(classifier_flags, capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    code, _, err = khabar(capsys, "classify", "خبر", *classifier_flags, "--backend", "fast")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "needs onnxruntime: pip install khabar[fast]" in err


def test_missing_input_and_existing_output_are_usage_errors(tmp_path, models, capsys) -> None:
    out = tmp_path / "out.jsonl"
    code, _, err = khabar(capsys, "predict", tmp_path / "missing.jsonl", "-o", out, *models)
    assert code == 2 and "missing.jsonl: No such file" in err
    out.write_text('{"id": "old"}\n')
    source = write_jsonl(tmp_path / "in.jsonl", sample_rows(1))
    code, _, err = khabar(capsys, "predict", source, "-o", out, *models)
    assert code == 2 and "--resume" in err and out.read_text() == '{"id": "old"}\n'
    assert khabar(capsys, "predict", source, "-o", out, "--overwrite", *models)[0] == 0
    assert [r["id"] for r in read_jsonl(out)] == ["n00000"]


def test_resume_refuses_an_output_of_other_tasks(tmp_path, models, capsys) -> None:
    out = write_jsonl(tmp_path / "out.jsonl", [{"id": "n00000", "line": 1, "topic": "sports", "topic_score": 0.9}])
    source = write_jsonl(tmp_path / "in.jsonl", sample_rows(2))
    code, _, err = khabar(capsys, "predict", source, "-o", out, "--resume", "--tasks", "summary", *models)
    assert code == 2 and "was written with --tasks topic" in err
    assert len(read_jsonl(out)) == 1


def test_help_documents_the_exit_codes(capsys) -> None:
    code, help_text, _ = khabar(capsys, "predict", "--help")
    assert code == 0
    assert "exit codes:" in help_text and "3  some rows failed" in help_text and "200,000" in help_text


# --- progress ----------------------------------------------------------------------------------


def test_progress_only_when_asked_and_quiet_silences_everything(tmp_path, models, capsys) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", sample_rows(3))
    _, _, err = khabar(capsys, "predict", source, "-o", tmp_path / "a.jsonl", "--progress", "--tasks", "topic", *models)
    assert "3/3" in err and "article/s" in err
    _, _, err = khabar(capsys, "predict", source, "-o", tmp_path / "b.jsonl", "--quiet", "--tasks", "topic", *models)
    assert err == ""


# --- interruption and resume -------------------------------------------------------------------


def wait_for_records(path: Path, proc: subprocess.Popen, count: int) -> None:
    """Wait until ``path`` holds ``count`` records, so a signal lands in the middle of the run."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if path.exists() and path.read_bytes().count(b"\n") >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"the run ended or stalled before writing {count} records: {proc.communicate()[1]}")


@pytest.mark.parametrize("sig", [signal.SIGINT, pytest.param(signal.SIGKILL, marks=pytest.mark.slow)])
def test_interrupted_run_resumes_with_every_id_once(tmp_path, classifier_flags, capsys, sig) -> None:
    rows = sample_rows(30)
    out = tmp_path / "out.jsonl"
    args = ("--tasks", "topic", "--batch-size", "2", *classifier_flags)
    proc = spawn("predict", "-", "-o", out, *args)
    # Feed a third of the input and keep stdin open: the run is mid-input when the signal lands.
    proc.stdin.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows[:10]))
    proc.stdin.flush()
    wait_for_records(out, proc, 10)
    proc.send_signal(sig)
    proc.wait(timeout=60)  # stdin stays open: only the signal can end this run
    proc.stdin.close()
    stderr = proc.stderr.read()
    if sig == signal.SIGINT:
        assert proc.returncode == 130, stderr
        assert "10 written" in stderr and "--resume" in stderr
    else:
        assert proc.returncode == -signal.SIGKILL
        with out.open("a", encoding="utf-8") as f:
            f.write('{"id": "n0')  # what a kill in the middle of a write leaves behind

    source = write_jsonl(tmp_path / "in.jsonl", rows)
    code, _, err = khabar(capsys, "predict", source, "-o", out, "--resume", *args)
    assert code == 0, err
    ids = [json.loads(line)["id"] for line in out.read_text(encoding="utf-8").splitlines()]
    assert ids == [row["id"] for row in rows]  # each once, in input order
    assert "30 rows read, 20 written, 0 failed, 10 already done" in err


# --- sharding ----------------------------------------------------------------------------------


def test_shards_cover_every_row_once_and_merge_in_input_order(tmp_path, models, capsys) -> None:
    rows = sample_rows(10)
    rows[4] = {"id": "bad", "article": None}
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "preds.jsonl"
    for index in range(3):
        shard_args = ("--num-shards", "3", "--shard-index", index, "--tasks", "topic")
        code, _, _ = khabar(capsys, "predict", source, "-o", out, *shard_args, *models)
        assert code == (3 if index == 1 else 0)  # row 4 (0-based) is shard 1's
    parts = sorted(tmp_path.glob("preds.shard-*-of-3.jsonl"))
    assert [len(read_jsonl(p)) for p in parts] == [4, 3, 3]
    code, _, err = khabar(capsys, "merge", *parts, "-o", tmp_path / "all.csv")
    assert code == 0 and "10 records from 3 parts" in err
    with (tmp_path / "all.csv").open(encoding="utf-8", newline="") as f:
        merged = list(csv.DictReader(f))
    assert [r["id"] for r in merged] == [r["id"] for r in rows]
    assert merged[4]["error"] and merged[0]["topic"] in LABELS


def test_shards_default_to_the_launcher_rank(tmp_path, models, capsys, monkeypatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    source = write_jsonl(tmp_path / "in.jsonl", sample_rows(5))
    assert khabar(capsys, "predict", source, "-o", tmp_path / "p.jsonl", "--tasks", "topic", *models)[0] == 0
    assert [r["line"] for r in read_jsonl(tmp_path / "p.shard-1-of-2.jsonl")] == [2, 4]


def test_a_flag_the_command_lacks_is_named_with_the_command(capsys) -> None:
    code, _, err = khabar(capsys, "summarize", "--title", "عنوان", "متن خبر")
    assert code == 2
    assert err.strip() == "khabar summarize: error: unrecognized arguments: --title (see khabar summarize --help)"

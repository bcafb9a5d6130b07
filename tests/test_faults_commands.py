"""Careless and hostile use of `khabar classify / summarize`, `khabar-train evaluate` and `khabar-train card`.

Each test is a user mistake or an environment failure: it must end in one line naming the flag,
file or text, with exit code 2 (130 for Ctrl-C), never a traceback, lost work or a wrong answer.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest

from inference.batch.checks import MAX_TEXT_CHARS
from inference.cli import main as khabar
from training.cli import main as train_main

SAMPLE_TEST = Path(__file__).resolve().parent.parent / "data" / "sample" / "test.jsonl"


def one_error_line(err: str, command: str) -> str:
    """The single stderr line of a failed command, checked to be one line and no traceback."""
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(command)]
    # Log lines may come before it; nothing may follow it (a message spanning lines would).
    assert len(errors) == 1 and lines[-1] == errors[0], err
    assert "Traceback" not in err, err
    return errors[0]


@pytest.fixture
def small_eval_file(tmp_path: Path) -> Path:
    """Four sample rows: enough for a report, quick for the tiny models."""
    lines = SAMPLE_TEST.read_text(encoding="utf-8").splitlines()[:4]
    path = tmp_path / "eval.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def evaluate(model: Path, data: Path, out: Path, *extra: str) -> int:
    """``khabar-train evaluate`` in this process, with few resamples; its exit code."""
    argv = ["evaluate", "--model", str(model), "--data", str(data), "-o", str(out), "--bootstrap", "5", *extra]
    try:
        return train_main(argv)
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped khabar-train evaluate as a traceback")


# khabar classify / summarize


@pytest.fixture
def no_model_load(monkeypatch) -> None:
    """Fail the test if a command loads a model: its input should have been refused first."""

    def never(*args, **kwargs):
        raise AssertionError("a model was loaded for input that is refused anyway")

    monkeypatch.setattr("inference.commands.load_model", never)


def stdin_bytes(monkeypatch, data: bytes) -> io.BytesIO:
    raw = io.BytesIO(data)
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(raw))
    return raw


@pytest.mark.parametrize("command", ["classify", "summarize"])
def test_an_empty_text_is_named_by_its_place_before_the_model_loads(command, no_model_load, capsys) -> None:
    assert khabar([command, "خبر", " \n "]) == 2
    assert "TEXT 2: empty" in one_error_line(capsys.readouterr().err, f"khabar {command}")


def test_empty_stdin_is_named_as_stdin_before_the_model_loads(no_model_load, monkeypatch, capsys) -> None:
    stdin_bytes(monkeypatch, b"")
    assert khabar(["classify", "-"]) == 2
    assert "TEXT - (stdin): empty" in one_error_line(capsys.readouterr().err, "khabar classify")


def test_a_text_over_the_predict_limit_is_refused_before_the_model_loads(no_model_load, capsys) -> None:
    assert khabar(["summarize", "خبر " * (MAX_TEXT_CHARS // 4 + 1)]) == 2
    assert f"TEXT 1: {MAX_TEXT_CHARS + 4:,} characters" in one_error_line(capsys.readouterr().err, "khabar summarize")


def test_huge_stdin_is_refused_without_reading_all_of_it(no_model_load, monkeypatch, capsys) -> None:
    raw = stdin_bytes(monkeypatch, b"x" * (20 * MAX_TEXT_CHARS))
    assert khabar(["classify", "-"]) == 2
    assert "TEXT - (stdin): over the" in one_error_line(capsys.readouterr().err, "khabar classify")
    assert raw.tell() < 5 * MAX_TEXT_CHARS  # stopped past the most a text within the limit can take


def test_a_text_the_model_refuses_is_named_by_its_place(tiny_classifier_dir, capsys) -> None:
    flags = ["--classifier", str(tiny_classifier_dir), "--device", "cpu", "--backend", "torch"]
    assert khabar(["classify", "خبر", "\u200c\u064b", *flags]) == 2  # only invisible marks: nothing to classify
    assert "TEXT 2: nothing left" in one_error_line(capsys.readouterr().err, "khabar classify")


# khabar-train evaluate


def test_evaluate_ctrl_c_in_the_model_pass_is_one_line_and_130(
    tiny_classifier_dir, small_eval_file, tmp_path, monkeypatch, capsys
) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("training.evaluation.cli.predict_topics", interrupted)
    assert evaluate(tiny_classifier_dir, small_eval_file, tmp_path / "report") == 130
    line = one_error_line(capsys.readouterr().err, "khabar-train evaluate")
    assert "interrupted" in line and str(tmp_path / "report") in line
    assert not (tmp_path / "report" / "report.md").exists()


def test_evaluate_interrupted_rewrite_leaves_no_report_that_looks_finished(
    tiny_classifier_dir, small_eval_file, tmp_path, monkeypatch, capsys
) -> None:
    out = tmp_path / "report"
    assert evaluate(tiny_classifier_dir, small_eval_file, out) == 0
    assert (out / "report.md").is_file()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    # Stopped after the new metrics.json, before the new report.md: the old report.md must not stay beside it.
    monkeypatch.setattr("training.evaluation.report._write_predictions", interrupted)
    assert evaluate(tiny_classifier_dir, small_eval_file, out, "--limit", "2") == 130
    assert json.loads((out / "metrics.json").read_text(encoding="utf-8"))["rows"] == 2
    assert not (out / "report.md").exists()
    assert not list(out.glob(".*.partial"))


def test_evaluate_refuses_to_write_the_report_into_a_model_directory(
    tiny_classifier_dir, small_eval_file, tmp_path, monkeypatch, capsys
) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_classifier_dir, model)
    (model / "metrics.json").write_text('{"test": {"accuracy": 0.9}}', encoding="utf-8")

    def never(*args, **kwargs):
        raise AssertionError("the model ran before the report folder was checked")

    monkeypatch.setattr("training.evaluation.cli.predict_topics", never)
    assert evaluate(model, small_eval_file, model) == 2
    assert "-o" in one_error_line(capsys.readouterr().err, "khabar-train")
    assert json.loads((model / "metrics.json").read_text(encoding="utf-8")) == {"test": {"accuracy": 0.9}}
    assert not (model / "report.md").exists()


@pytest.mark.parametrize("seed", ["-1", str(2**32), "x"])
def test_evaluate_refuses_a_seed_the_resampling_cannot_take_before_the_model_runs(
    tiny_classifier_dir, small_eval_file, tmp_path, monkeypatch, capsys, seed
) -> None:
    def never(*args, **kwargs):
        raise AssertionError("the model ran before --seed was checked")

    monkeypatch.setattr("training.evaluation.cli.predict_topics", never)
    train = str(SAMPLE_TEST.with_name("train.jsonl"))
    flags = ("--seed", seed, "--baseline-train", train)
    assert evaluate(tiny_classifier_dir, small_eval_file, tmp_path / "r", *flags) == 2
    assert "--seed" in one_error_line(capsys.readouterr().err, "khabar-train")


@pytest.mark.parametrize("flag", ["--num-beams", "--max-new-tokens"])
def test_evaluate_refuses_decoding_flags_for_a_classifier(
    tiny_classifier_dir, small_eval_file, tmp_path, capsys, flag
) -> None:
    assert evaluate(tiny_classifier_dir, small_eval_file, tmp_path / "r", flag, "4") == 2
    line = one_error_line(capsys.readouterr().err, "khabar-train")
    assert flag in line and "classifier" in line
    assert not (tmp_path / "r").exists()


# khabar-train card


def test_card_refuses_an_evaluation_report_folder(tiny_classifier_dir, small_eval_file, tmp_path, capsys) -> None:
    report = tmp_path / "report"
    assert evaluate(tiny_classifier_dir, small_eval_file, report) == 0
    capsys.readouterr()
    assert train_main(["card", str(report), "--no-baselines"]) == 2
    assert "no config.json" in one_error_line(capsys.readouterr().err, "khabar-train card")
    assert not (report / "README.md").exists()


def test_card_on_a_missing_directory_or_hub_id_says_so(capsys) -> None:
    assert train_main(["card", "org/some-model"]) == 2
    assert "no such directory" in one_error_line(capsys.readouterr().err, "khabar-train card")


def test_card_that_cannot_be_written_is_one_line_and_keeps_no_partial_file(
    trained_classifier_dir, tmp_path, capsys
) -> None:
    model = tmp_path / "model"
    shutil.copytree(trained_classifier_dir, model)
    (model / "README.md").unlink()
    (model / "README.md").mkdir()  # the card's path is taken by a folder: the write fails
    assert train_main(["card", str(model), "--no-baselines"]) == 2
    assert "README.md" in one_error_line(capsys.readouterr().err, "khabar-train card")
    assert not list(model.glob(".*.partial"))


@pytest.mark.parametrize(
    "argv",
    [
        ["summarize", "خبر", "--max-new-tokens", "abc"],
        ["summarize", "خبر", "--num-beams", "2.5"],
        ["predict", "in.jsonl", "--batch-size", "many"],
        ["predict", "in.jsonl", "--shard-index", "x"],
    ],
)
def test_a_flag_that_is_not_a_number_says_so(argv, capsys) -> None:
    assert khabar(argv) == 2
    line = one_error_line(capsys.readouterr().err, "khabar")
    assert "expected a whole number" in line and "_positive" not in line and "parse" not in line


@pytest.mark.parametrize(("command", "flag"), [("classify", "--classifier"), ("summarize", "--summarizer")])
def test_an_empty_model_flag_is_refused_not_replaced_by_the_default_model(command, flag, capsys) -> None:
    assert khabar([command, "خبر", flag, ""]) == 2  # e.g. --classifier "$MODEL" with MODEL unset
    assert f"{flag}: empty" in one_error_line(capsys.readouterr().err, f"khabar {command}")


def test_summaries_stay_one_line_per_text_even_with_a_line_break(monkeypatch, capsys) -> None:
    class TwoLineSummaries:
        def summarize(self, texts, **settings):
            return [f"سطر اول {i}\nسطر دوم" for i, _ in enumerate(texts)]

    monkeypatch.setattr("inference.commands.load_model", lambda kind, args: TwoLineSummaries())
    assert khabar(["summarize", "خبر یک", "خبر دو"]) == 0
    assert capsys.readouterr().out.splitlines() == ["سطر اول 0 سطر دوم", "سطر اول 1 سطر دوم"]


def test_one_title_for_several_texts_is_refused_before_the_model_loads(no_model_load, capsys) -> None:
    # Whose headline? Applied to every text it would change the topics of the others.
    assert khabar(["classify", "--title", "تیم ملی برد", "خبر اول", "خبر دوم"]) == 2
    error = one_error_line(capsys.readouterr().err, "khabar classify")
    assert "--title is one article's headline, but 2 TEXTs were given" in error


@pytest.mark.parametrize(
    "flags, message",
    [
        (
            ["--keep-columns", "summary,input_summary"],
            "summary and input_summary would both be written as input_summary",
        ),
        (["--keep-columns", "url,url"], "--keep-columns: url is given twice"),
        (["--text-column", ""], "--text-column: expected a column name, got ''"),
        (["--tasks", ""], "expected comma-separated tasks (topic, summary)"),
    ],
)
def test_predict_column_flags_that_would_lose_or_mix_fields_are_refused(flags, message, tmp_path, capsys) -> None:
    # The kept input_summary overwrote summary's value (CSV: a header with a column twice); an empty
    # --text-column read article instead without a word.
    source = tmp_path / "in.jsonl"
    source.write_text('{"id": "a", "article": "خبر", "summary": "s", "input_summary": "i", "url": "u"}\n')
    assert khabar(["predict", str(source), "-o", str(tmp_path / "out.jsonl"), *flags]) == 2
    assert message in one_error_line(capsys.readouterr().err, "khabar predict")
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize(
    "name, content, output, message",
    [
        ("in.jsonl.gz", b"\x1f\x8b\x08", "out.jsonl", "is gzip-compressed; decompress it first (e.g. zcat"),
        ("in.csv", b"id;article\n1;x\n", "out.jsonl", "its header is separated by semicolons"),
        ("in.csv", ("id,article\n" + "1,خبر ورزشي امروز در تهران\n" * 3).encode("cp1256"), "out.jsonl", "iconv"),
        ("in.jsonl", b'{"id": "a", "article": "x"}\n', "no/such/out.jsonl", "-o {tmp}/no/such/out.jsonl: no such dir"),
    ],
    ids=["gzip-suffix", "semicolons", "windows-1256", "missing-folder"],
)
def test_predict_input_and_output_mistakes_say_what_to_do(name, content, output, message, tmp_path, capsys) -> None:
    # Each was an error record per row, a suffix complaint, a bare column list or a lock-file error.
    source = tmp_path / name
    source.write_bytes(content)
    assert khabar(["predict", str(source), "-o", str(tmp_path / output), "--tasks", "topic"]) == 2
    assert message.format(tmp=tmp_path) in one_error_line(capsys.readouterr().err, "khabar predict")
    assert sorted(path.name for path in tmp_path.iterdir()) == [name]


def test_an_empty_input_says_it_holds_no_rows(tmp_path, capsys, fitted_classifier_dir) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("\n\n")
    flags = ["--tasks", "topic", "--classifier", str(fitted_classifier_dir), "--device", "cpu", "--backend", "torch"]
    assert khabar(["predict", str(source), "-o", str(tmp_path / "out.jsonl"), *flags]) == 0
    assert f"note: INPUT {source} holds no rows" in capsys.readouterr().err


def test_answers_to_a_full_disk_or_from_a_closed_stdin_are_one_line(tmp_path, capsys, monkeypatch) -> None:
    import errno

    class Full(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("sys.stdin", None)  # started with `<&-`
    assert khabar(["classify", "-"]) == 2
    assert "stdin is closed" in one_error_line(capsys.readouterr().err, "khabar classify")
    monkeypatch.setattr("inference.commands.load_model", lambda *args: type("M", (), {"precision": ""})())
    monkeypatch.setattr("inference.commands._answer", lambda *args: [{"label": "sports", "score": 0.5}])
    monkeypatch.setattr("sys.stdout", Full())
    assert khabar(["classify", "خبر"]) == 2
    assert "stdout: No space left on device" in one_error_line(capsys.readouterr().err, "khabar classify")

"""``khabar-train evaluate``: report files, consistent metrics, honest intervals, baselines and user errors."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from training.cli import main as khabar_train
from training.evaluation import detect_kind
from training.evaluation.baselines import (
    bootstrap_ci,
    classification_scores,
    lead_baseline,
    majority_baseline,
    rouge_scores,
    tfidf_baseline,
)
from training.metrics.rouge import rouge

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "persian-news"


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def eval_file(sample_dir, tmp_path_factory) -> Path:
    """12 sample rows, then one row without a category and one without a summary (each skipped once)."""
    rows = [json.loads(line) for line in (sample_dir / "test.jsonl").read_text(encoding="utf-8").splitlines()[:12]]
    rows += [{**rows[0], "category": None}, {**rows[1], "summary": ""}]
    return write_jsonl(tmp_path_factory.mktemp("eval") / "eval.jsonl", rows)


def run_evaluate(*args: object) -> int:
    return khabar_train(["evaluate", *map(str, args), "--bootstrap", "200"])


def read_metrics(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text(encoding="utf-8"))


def assert_interval_holds(scores: dict, key: str, top: float) -> None:
    low, high = scores[f"{key}_ci"]
    assert 0 <= low <= scores[key] <= high <= top, (key, scores[key], low, high)


# --- end to end with the tiny models ---------------------------------------------------------------


@pytest.fixture(scope="module")
def classifier_report(tiny_classifier_dir, eval_file, sample_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "classifier"
    code = run_evaluate(
        "--model", tiny_classifier_dir, "--data", eval_file, "--baseline-train", sample_dir / "train.jsonl", "-o", out
    )
    assert code == 0
    return out


def test_classifier_report_writes_every_file(classifier_report) -> None:
    for name in ("metrics.json", "report.md", "predictions.jsonl"):
        assert (classifier_report / name).stat().st_size > 0
    for name in ("confusion_matrix.png", "per_class_f1.png"):
        assert (classifier_report / name).read_bytes().startswith(PNG_MAGIC)
    report = (classifier_report / "report.md").read_text(encoding="utf-8")
    assert "![confusion matrix](confusion_matrix.png)" in report and "![F1 per class](per_class_f1.png)" in report
    assert "| rows skipped | 1 (missing or empty `article` or `category`) |" in report
    assert len((classifier_report / "predictions.jsonl").read_text(encoding="utf-8").splitlines()) == 13


def test_each_prediction_names_its_line_in_the_data_file(classifier_report, eval_file) -> None:
    # Line 13 has no category and is skipped: from there on a row's position is not its line.
    records = [json.loads(line) for line in (classifier_report / "predictions.jsonl").read_text().splitlines()]
    source = eval_file.read_text(encoding="utf-8").splitlines()

    assert [r["line"] for r in records] == [*range(1, 13), 14]
    assert "lines" not in read_metrics(classifier_report)  # one entry a row: they belong to predictions.jsonl
    assert [r["row"] for r in records] == list(range(13))
    assert all(r["reference"] == json.loads(source[r["line"] - 1])["category"] for r in records)


def test_classifier_metrics_are_in_range_and_consistent(classifier_report) -> None:
    metrics = read_metrics(classifier_report)
    assert metrics["kind"] == "classification" and metrics["rows"] == 13 and metrics["skipped_rows"] == 1
    assert set(metrics["systems"]) == {"model", "majority", "tfidf"}
    for scores in metrics["systems"].values():
        matrix = scores["confusion_matrix"]["matrix"]
        trace = sum(matrix[i][i] for i in range(len(matrix)))
        assert scores["accuracy"] == pytest.approx(trace / sum(map(sum, matrix)))
        assert sum(map(sum, matrix)) == 13
        assert sum(c["support"] for c in scores["per_class"].values()) == 13
        for key in ("accuracy", "macro_f1", "weighted_f1"):
            assert_interval_holds(scores, key, top=1)


@pytest.fixture(scope="module")
def summarizer_report(tiny_summarizer_dir, eval_file, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "summarizer"
    # Short greedy decoding keeps a random-weight model from spending seconds per article.
    decoding = ("--num-beams", 1, "--max-new-tokens", 6)
    assert run_evaluate("--model", tiny_summarizer_dir, "--data", eval_file, "--limit", 4, *decoding, "-o", out) == 0
    return out


def test_summarizer_report_writes_every_file(summarizer_report) -> None:
    assert (summarizer_report / "lengths.png").read_bytes().startswith(PNG_MAGIC)
    report = (summarizer_report / "report.md").read_text(encoding="utf-8")
    assert "![summary lengths](lengths.png)" in report
    assert "## Examples" in report and report.count("| reference |") == 4
    assert "| rows skipped | 1 (missing or empty `article` or `summary`) |" in report
    assert "| decoding | num_beams 1, max_new_tokens 6 (overriding the saved settings) |" in report


def test_summarizer_metrics_are_in_range_with_intervals(summarizer_report) -> None:
    metrics = read_metrics(summarizer_report)
    assert metrics["kind"] == "summarization" and metrics["rows"] == 4 and metrics["limit"] == 4
    assert set(metrics["systems"]) == {"model", "lead-1", "lead-2"}
    for scores in metrics["systems"].values():
        for key in ("rouge1", "rouge2", "rougeL", "rougeLsum"):
            assert_interval_holds(scores, key, top=100)
        assert scores["mean_length"] > 0
    # Six new tokens make at most six words: the decoding override reached the model.
    assert metrics["systems"]["model"]["mean_length"] <= 6
    # Lead-2 contains lead-1, so it can only be longer.
    assert metrics["systems"]["lead-2"]["mean_length"] > metrics["systems"]["lead-1"]["mean_length"]


# --- user mistakes: one line naming the flag, file or column -----------------------------------------


def test_bad_column_is_a_one_line_error(tiny_classifier_dir, eval_file, tmp_path, capsys) -> None:
    code = run_evaluate("--model", tiny_classifier_dir, "--data", eval_file, "--label-column", "topic", "-o", tmp_path)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "eval.jsonl:1: column 'topic' not found" in err and "category" in err
    assert not (tmp_path / "metrics.json").exists()


def test_bad_baseline_train_fails_before_the_model_runs(tiny_classifier_dir, eval_file, tmp_path, capsys) -> None:
    code = run_evaluate(
        "--model", tiny_classifier_dir, "--data", eval_file, "--baseline-train", "nope.jsonl", "-o", tmp_path
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "nope.jsonl: no such file" in err


def test_the_report_names_the_engine_that_was_scored(classifier_report, tiny_classifier_dir, eval_file, tmp_path):
    # auto may score an int8 ONNX copy, whose answers differ a little from the trained weights'.
    assert read_metrics(classifier_report)["engine"] in (classifier_report / "report.md").read_text(encoding="utf-8")
    assert run_evaluate("--model", tiny_classifier_dir, "--data", eval_file, "--backend", "torch", "-o", tmp_path) == 0
    assert read_metrics(tmp_path)["engine"].startswith("torch ")


def test_a_backend_the_model_kind_has_not_is_one_line(tiny_summarizer_dir, eval_file, tmp_path, capsys) -> None:
    assert run_evaluate("--model", tiny_summarizer_dir, "--data", eval_file, "--backend", "onnx", "-o", tmp_path) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--backend onnx: runs no summarizer" in err


def test_bad_device_is_a_one_line_error(tiny_classifier_dir, eval_file, tmp_path, capsys) -> None:
    assert run_evaluate("--model", tiny_classifier_dir, "--data", eval_file, "--device", "gpu", "-o", tmp_path) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown device 'gpu'" in err


def test_not_a_model_directory_is_a_one_line_error(tmp_path, eval_file, capsys) -> None:
    assert run_evaluate("--model", tmp_path, "--data", eval_file, "-o", tmp_path / "out") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not a model directory (no config.json)" in err


@pytest.mark.parametrize("data_inside", [True, False], ids=["--data itself", "another tool's file"])
def test_a_report_never_replaces_a_file_that_is_not_an_earlier_report(
    tiny_classifier_dir, eval_file, tmp_path, capsys, data_inside
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    kept = out / "predictions.jsonl"
    kept.write_bytes(eval_file.read_bytes())
    data = kept if data_inside else eval_file
    assert run_evaluate("--model", tiny_classifier_dir, "--data", data, "-o", out) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "predictions.jsonl" in err
    assert ("would replace --data" in err) == data_inside
    assert kept.read_bytes() == eval_file.read_bytes() and sorted(p.name for p in out.iterdir()) == [kept.name]


def test_a_first_report_interrupted_after_its_plots_can_be_rerun(tiny_classifier_dir, eval_file, tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "confusion_matrix.png").write_bytes(PNG_MAGIC)  # written first; then the run stopped
    assert run_evaluate("--model", tiny_classifier_dir, "--data", eval_file, "-o", out) == 0
    assert (out / "report.md").is_file()


def test_a_report_folder_is_replaced_by_a_rerun(classifier_report, tiny_classifier_dir, eval_file) -> None:
    assert run_evaluate("--model", tiny_classifier_dir, "--data", eval_file, "-o", classifier_report) == 0
    (classifier_report / "report.md").unlink()  # as an interrupted rewrite leaves it: the report's metrics.json
    assert run_evaluate("--model", tiny_classifier_dir, "--data", eval_file, "-o", classifier_report) == 0


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--max-new-tokens", "100000", "--max-new-tokens: '100000' is over the limit of 2048"),
        ("--num-beams", "1000", "--num-beams: '1000' is over the limit of 64"),
        ("--num-beams", "0", "--num-beams: '0' must be at least 1"),
    ],
)
def test_decoding_flags_past_the_summarizer_limits_are_one_line(
    tiny_summarizer_dir, eval_file, tmp_path, capsys, flag, value, message
) -> None:
    assert run_evaluate("--model", tiny_summarizer_dir, "--data", eval_file, "-o", tmp_path / "o", flag, value) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err and not (tmp_path / "o").exists()


def test_kind_is_read_from_the_model_config(tiny_classifier_dir, tiny_summarizer_dir, tmp_path) -> None:
    assert detect_kind(tiny_classifier_dir) == "classification"
    assert detect_kind(tiny_summarizer_dir) == "summarization"
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(ValueError, match="cannot tell a classifier from a summarizer"):
        detect_kind(tmp_path)


# --- metrics and baselines without a model ----------------------------------------------------------


def test_classification_scores_agree_with_scikit_learn() -> None:
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    rng = random.Random(0)
    labels = ["sports", "economy", "politics", "health"]
    references = [rng.choice(labels[:3]) for _ in range(200)]
    predictions = [ref if rng.random() < 0.6 else rng.choice(labels) for ref in references]
    scores = classification_scores(predictions, references, draws=100)
    assert scores["accuracy"] == pytest.approx(accuracy_score(references, predictions))
    assert scores["macro_f1"] == pytest.approx(f1_score(references, predictions, average="macro"))
    assert scores["weighted_f1"] == pytest.approx(f1_score(references, predictions, average="weighted"))
    p, r, f, s = precision_recall_fscore_support(references, predictions, labels=["economy"], zero_division=0)
    assert scores["per_class"]["economy"] == pytest.approx(
        {"precision": p[0], "recall": r[0], "f1": f[0], "support": s[0]}
    )
    assert scores["per_class"]["health"]["support"] == 0  # predicted, never true: still listed


def test_bootstrap_interval_matches_the_normal_approximation() -> None:
    values = [1.0] * 120 + [0.0] * 280  # mean 0.3; normal 95% half-width 1.96 * sqrt(0.3 * 0.7 / 400) = 0.045
    low, high = bootstrap_ci(values, draws=2000, seed=1)
    assert low < 0.3 < high
    assert 0.035 < 0.3 - low < 0.055 and 0.035 < high - 0.3 < 0.055
    assert bootstrap_ci(values, draws=2000, seed=1) == (low, high)  # seeded


def test_bootstrap_interval_of_constant_scores_is_the_point() -> None:
    assert bootstrap_ci([0.1] * 30, draws=50) == pytest.approx((0.1, 0.1))


def test_majority_and_tfidf_baselines() -> None:
    assert majority_baseline(["economy", "sports", "sports"], count=2) == ["sports", "sports"]
    train_texts = ["تیم فوتبال گل زد", "بازیکن تیم ملی", "قیمت دلار بالا رفت", "بازار ارز و بورس"] * 3
    train_labels = ["sports", "sports", "economy", "economy"] * 3
    assert tfidf_baseline(train_texts, train_labels, ["گل دوم تیم", "بورس تهران"]) == ["sports", "economy"]


def test_lead_baseline_takes_first_sentences() -> None:
    article = "جمله اول است. جمله دوم؟ سومی\nچهارم"
    assert lead_baseline([article], 1) == ["جمله اول است."]
    assert lead_baseline([article], 2) == ["جمله اول است. جمله دوم؟"]
    assert lead_baseline([""], 1) == [""]


def test_report_rouge_counts_words_as_the_trainer_and_also_as_the_data_reference() -> None:
    # ZWNJ or a space inside «می‌شود» is the same word either way.
    assert rouge_scores(["گفته می‌شود"], ["گفته می شود"], draws=10)["rouge1"] == pytest.approx(100)
    # Punctuation: dropped as in training.metrics.rouge (so a report matches metrics.json); the data
    # README's figures keep it on its word.
    scores = rouge_scores(["برد."], ["برد"], draws=10)
    assert scores["rouge1"] == pytest.approx(rouge(["برد."], ["برد"])["rouge1"]) == pytest.approx(100)
    assert scores["readme_rouge"]["rouge1"] == pytest.approx(0)
    scores = rouge_scores(["تیم ملی برد", "بازار"], ["تیم ملی برد", "قیمت"], draws=10)
    assert scores["rouge1"] == pytest.approx(50) and scores["mean_length"] == 2


# --- the data README's reference figures (needs the shared data; minutes on 2 cores) -----------------


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "test.jsonl").is_file(), reason="shared persian-news data not present")
def test_baselines_reproduce_the_data_reference() -> None:
    from training.data import Columns, load_split

    summaries = load_split(str(SHARED / "test.jsonl"), Columns(summary="summary"))
    lead_1 = rouge_scores(lead_baseline(summaries["text"], 1), summaries["summary"], draws=10)
    assert lead_1["readme_rouge"]["rouge1"] == pytest.approx(26.5, abs=0.5)
    train = load_split(str(SHARED / "train.jsonl"), Columns(label="category"))
    test = load_split(str(SHARED / "test.jsonl"), Columns(label="category"))
    scores = classification_scores(tfidf_baseline(train["text"], train["label"], test["text"]), test["label"], draws=10)
    assert scores["accuracy"] == pytest.approx(0.87, abs=0.02)
    assert scores["macro_f1"] == pytest.approx(0.68, abs=0.03)


def test_rows_are_read_with_the_models_normalization_version(tmp_path):
    from training.data import Columns
    from training.evaluation import load_rows

    data = tmp_path / "rows.jsonl"
    data.write_text(json.dumps({"article": "قیمت‌ها بالا می گردد", "category": "economy"}) + "\n", encoding="utf-8")
    columns = Columns(label="category")

    v1, _ = load_rows(str(data), columns, normalization={"digits": "persian", "version": 1})
    v2, _ = load_rows(str(data), columns, normalization={"digits": "persian", "version": 2})

    assert v1["text"] == ["قیمت‌ها بالا می گردد"]  # a v1 model is scored on v1 text
    assert v2["text"] == ["قیمت‌ها بالا می\u200cگردد"]


def test_a_report_file_that_fails_to_write_leaves_no_half_file(tmp_path, monkeypatch) -> None:
    import errno

    from inference.batch.atomic import write_text_atomically

    def disk_full(fd):  # the bytes are written, but the disk cannot hold them
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("inference.batch.atomic.os.fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_text_atomically(tmp_path / "metrics.json", '{"rows": 1}')
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("beams", "per_call"), [(1, 16), (4, 8)])
def test_evaluation_summarizes_in_calls_the_size_the_beams_run_fastest(
    tiny_summarizer_dir, monkeypatch, beams, per_call
):
    from inference.summarizer import Summarizer
    from training.evaluation.predict import generate_summaries

    calls, summarize = [], Summarizer.summarize
    monkeypatch.setattr(
        Summarizer, "summarize", lambda self, texts, **kw: calls.append(len(texts)) or summarize(self, texts, **kw)
    )
    summaries = generate_summaries(
        tiny_summarizer_dir, ["خبر امروز"] * 20, device="cpu", num_beams=beams, max_new_tokens=2
    )
    assert len(summaries) == 20
    assert calls == [per_call] * (20 // per_call) + ([20 % per_call] if 20 % per_call else [])


def test_warnings_are_printed_as_well_as_reported(tiny_classifier_dir, tmp_path, capsys) -> None:
    # Topics the model does not know score 0 with the reason only inside report.md.
    data = write_jsonl(tmp_path / "other.jsonl", [{"article": "خبر ورزشی", "category": "0"}] * 3)
    assert run_evaluate("--model", tiny_classifier_dir, "--data", data, "-o", tmp_path / "report") == 0
    assert "khabar-train evaluate: warning: " in capsys.readouterr().err


def test_a_model_trained_on_headlines_is_scored_with_them_unless_told_otherwise(
    trained_classifier_dir, eval_file, tmp_path, capsys, monkeypatch
) -> None:
    # The tiny config trains on `title` + article; scored on the article alone it was understated, silently.
    from training.evaluation import cli

    seen, predict = [], cli.predict_topics
    monkeypatch.setattr(
        cli, "predict_topics", lambda model, inputs, *a: seen.append(inputs[0]) or predict(model, inputs, *a)
    )
    title = json.loads(eval_file.read_text(encoding="utf-8").splitlines()[0])["title"]
    assert run_evaluate("--model", trained_classifier_dir, "--data", eval_file, "-o", tmp_path / "with") == 0
    assert "headlines from column 'title', as" in capsys.readouterr().err
    args = ("--model", trained_classifier_dir, "--data", eval_file, "-o", tmp_path / "without")
    assert run_evaluate(*args, "--title-column", "none") == 0
    assert "headlines" not in capsys.readouterr().err
    assert seen[0].startswith(title[:10]) and not seen[1].startswith(title[:10])

    rows = [{k: v for k, v in json.loads(line).items() if k != "title"} for line in eval_file.read_text().splitlines()]
    untitled = write_jsonl(tmp_path / "untitled.jsonl", rows)
    assert run_evaluate("--model", trained_classifier_dir, "--data", untitled, "-o", tmp_path / "untitled") == 0
    assert "was trained with headlines (column 'title'), which" in capsys.readouterr().err
    # A baseline training file without headlines is read without them too, not refused.
    args = ("--model", trained_classifier_dir, "--data", eval_file, "--baseline-train", untitled)
    assert run_evaluate(*args, "-o", tmp_path / "baseline") == 0
    assert f"which {untitled} lacks; the TF-IDF baseline learns from articles alone" in capsys.readouterr().err


def test_a_report_is_not_written_into_a_training_run_in_progress(tiny_classifier_dir, eval_file, tmp_path, capsys):
    (tmp_path / "run" / "checkpoint-33").mkdir(parents=True)
    assert run_evaluate("--model", tiny_classifier_dir, "--data", eval_file, "-o", tmp_path / "run") == 2
    assert "is a training run's output_dir" in capsys.readouterr().err

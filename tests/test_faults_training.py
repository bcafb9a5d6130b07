"""Training and evaluation off the happy path: hostile model directories, bad configs, odd data.

Each test runs the real ``khabar-train`` entry point (or the data loader it uses) on a small
generated input and checks what a user sees: exit code 2, one line naming the file or key, no
traceback, nothing executed, nothing written, input files unchanged. Every check fires before
training starts, so the whole file takes seconds.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import shutil
import sys
from pathlib import Path

import pytest
import torch
from fixtures_training import TINY_CLASSIFIER_CONFIG, classifier_overrides

from training.cli import main
from training.config import ExperimentConfig
from training.data import Columns, DataError, load_split
from training.validation import RANGES, numeric_keys

TINY_SUMMARIZER_CONFIG = TINY_CLASSIFIER_CONFIG.parent.parent / "summarizer" / "tiny.yaml"


def run_train(capsys, *argv: str) -> tuple[int, str]:
    """``khabar-train ARGV`` in process with "y" waiting on stdin; returns the exit code and the error line."""
    stdin, sys.stdin = sys.stdin, io.StringIO("y\n" * 10)  # what `echo y | khabar-train ...` offers a prompt
    try:
        code = main(list(argv))
    finally:
        sys.stdin = stdin
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("khabar-train"), err
    assert not any(line.startswith("khabar-train") for line in lines[:-1]), err  # one error line
    return code, lines[-1]


def digest(folder: Path) -> dict[str, str]:
    """Hash of every file under ``folder``, to prove an input was left unchanged."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    }


def with_config(model_dir: Path, **changes) -> None:
    """Rewrite ``model_dir/config.json`` with ``changes``."""
    path = model_dir / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text(encoding="utf-8")), **changes}), encoding="utf-8")


def evil_copy(source: Path, target: Path) -> Path:
    """A copy of a tiny model whose config asks to run ``evil.py``, which would create ``PWNED`` in the cwd."""
    shutil.copytree(source, target)
    (target / "evil.py").write_text('import os\nos.system("touch PWNED")\nclass X:\n    pass\n', encoding="utf-8")
    with_config(target, model_type="evil", auto_map={"AutoConfig": "evil.X"})
    return target


@pytest.mark.parametrize("task", ["classifier", "summarizer"])
def test_training_never_runs_a_checkpoints_code(task, tiny_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    model = evil_copy(tiny_dir / task, tmp_path / "rc")
    before = digest(model)
    config = TINY_CLASSIFIER_CONFIG if task == "classifier" else TINY_SUMMARIZER_CONFIG
    code, error = run_train(capsys, str(config), "model.name_or_path=rc", "output_dir=t")
    assert code == 2
    assert "model.name_or_path" in error and "rc/config.json" in error and "auto_map" in error
    assert not (tmp_path / "PWNED").exists()
    assert not (tmp_path / "t").exists()
    assert digest(model) == before


def test_evaluate_never_runs_a_checkpoints_code(tiny_classifier_dir, sample_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    evil_copy(tiny_classifier_dir, tmp_path / "rc")
    argv = ["evaluate", "--model", "rc", "--data", str(sample_dir / "test.jsonl"), "-o", "report"]
    code, error = run_train(capsys, *argv)
    assert code == 2
    assert "--model" in error and "rc/config.json" in error and "auto_map" in error
    assert not (tmp_path / "PWNED").exists()
    assert not (tmp_path / "report").exists()


def test_label_zero_and_other_falsy_labels_are_labels(tmp_path, caplog):
    rows = [0, 0.0, False, "0", 1, "sports"]
    path = tmp_path / "topics.jsonl"
    path.write_text("".join(json.dumps({"article": f"خبر {i}", "topic": v}) + "\n" for i, v in enumerate(rows)))
    with caplog.at_level(logging.WARNING):
        data = load_split(str(path), Columns(text="article", label="topic"))
    assert data["label"] == ["0", "0.0", "False", "0", "1", "sports"]
    assert "dropped" not in caplog.text


def test_one_number_written_as_an_integer_and_a_float_is_warned_about(caplog):
    # A label column with a gap comes out of pandas as floats: 1 and 1.0 became two topics without a word.
    from training.classifier import warn_about_label_variants

    with caplog.at_level(logging.WARNING):
        warn_about_label_variants(["1", "1.0", "2", "2.5", "sports"])
    assert "'1' and '1.0' are one label written two ways" in caplog.text
    assert "'2'" not in caplog.text and "2.5" not in caplog.text


def test_a_csv_field_over_the_csv_modules_limit_is_read(tmp_path):
    path = tmp_path / "topics.csv"
    path.write_text("article,topic\n" + "خبر " * 50_000 + ",sports\n", encoding="utf-8")  # 200,000 characters
    assert load_split(str(path), Columns(text="article", label="topic"))["label"] == ["sports"]


def test_a_file_named_parquet_that_is_not_is_one_line(tmp_path):
    path = tmp_path / "topics.parquet"
    path.write_text("not parquet")
    with pytest.raises(DataError, match=r"topics\.parquet: cannot be read as Parquet \("):
        load_split(str(path), Columns(text="article", label="topic"))


def test_summary_zero_is_a_summary_and_blank_is_missing(tmp_path, caplog):
    rows = [0, "0", "", "   ", None, "خلاصه"]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps({"article": f"خبر {i}", "summary": v}) + "\n" for i, v in enumerate(rows)))
    with caplog.at_level(logging.WARNING):
        data = load_split(str(path), Columns(text="article", summary="summary"))
    assert data["summary"] == ["۰", "۰", "خلاصه"]  # normalized to Persian digits, as every text is
    assert "dropped 3 rows" in caplog.text


# Values a user can type that used to train nothing, crash mid-run or train on garbage.
OUT_OF_RANGE = [
    ("train.gradient_accumulation_steps", "-2"),
    ("train.logging_steps", "0"),
    ("train.num_workers", "-1"),
    ("train.learning_rate", ".nan"),
    ("train.learning_rate", "inf"),
    ("train.warmup_ratio", "1.5"),
    ("train.eval_batch_size", "0"),
    ("train.max_steps", "0"),
    ("train.seed", "-1"),
    ("train.early_stopping_patience", "0"),
    ("train.save_total_limit", "0"),
    ("data.max_train_samples", "0"),
    ("data.validation_fraction", "1.5"),
    ("generation.num_beams", "0"),
    ("generation.min_new_tokens", "-1"),
]


@pytest.mark.parametrize(("key", "value"), OUT_OF_RANGE)
def test_out_of_range_number_is_refused_before_any_work(key, value, tmp_path, capsys):
    out = tmp_path / "out"
    code, error = run_train(capsys, str(TINY_CLASSIFIER_CONFIG), f"{key}={value}", f"output_dir={out}")
    assert code == 2
    assert f"override '{key}={value}': {key}: must be" in error  # the override is at fault, not the file
    assert not out.exists()


def test_every_numeric_config_key_has_a_range():
    missing = [key for key in numeric_keys(ExperimentConfig) if key not in RANGES]
    assert not missing, f"add a range to training/validation.py RANGES for: {', '.join(missing)}"
    assert sorted(RANGES) == sorted(numeric_keys(ExperimentConfig))  # no stale entries either


def test_yaml_tag_in_an_override_is_refused_not_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    override = 'train.learning_rate=!!python/object/apply:os.system ["touch PWNED"]'
    code, error = run_train(capsys, str(TINY_CLASSIFIER_CONFIG), override, "output_dir=out")
    assert code == 2
    assert "train.learning_rate=!!python" in error and "not a plain value" in error
    assert not (tmp_path / "PWNED").exists()
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", ["jsonl", "csv", "utf16"])
def test_non_utf8_training_file_names_file_and_line(kind, tiny_classifier_dir, sample_dir, tmp_path, capsys):
    bad = tmp_path / f"train.{'csv' if kind == 'csv' else 'jsonl'}"
    rows = [{"title": "t", "article": text, "category": c} for text, c in (("خبر", "a"), ("خبر", "b"), ("café", "a"))]
    if kind == "csv":
        lines = ["title,article,category"] + [",".join(row.values()) for row in rows[:2]]
        bad.write_bytes("\n".join(lines).encode() + b"\n" + "t,café,b\n".encode("latin-1"))
        expected = f"{bad}:4: not valid UTF-8 (byte 0xe9"
    elif kind == "jsonl":
        lines = [json.dumps(row, ensure_ascii=False) for row in rows]
        bad.write_bytes("\n".join(lines[:2]).encode() + b"\n" + lines[2].encode("latin-1") + b"\n")
        expected = f"{bad}:3: not valid UTF-8 (byte 0xe9"
    else:
        bad.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-16")
        expected = f"{bad}:1: not valid UTF-8 (UTF-16 text)"
    before = bad.read_bytes()
    out = tmp_path / "out"
    argv = classifier_overrides(tiny_classifier_dir, sample_dir, out, f"data.train_file={bad}")
    code, error = run_train(capsys, str(TINY_CLASSIFIER_CONFIG), *argv)
    assert code == 2
    assert expected in error
    assert bad.read_bytes() == before
    assert not out.exists()


def test_gapped_id2label_in_the_starting_model_is_refused(tiny_classifier_dir, sample_dir, tmp_path, capsys):
    model = tmp_path / "gapped"
    shutil.copytree(tiny_classifier_dir, model)
    labels = json.loads((model / "config.json").read_text())["id2label"]
    with_config(model, id2label={str(2 * int(i)): label for i, label in labels.items()})
    out = tmp_path / "out"
    code, error = run_train(capsys, str(TINY_CLASSIFIER_CONFIG), *classifier_overrides(model, sample_dir, out))
    assert code == 2
    assert f"{model}/config.json" in error and "id2label ids must be 0..6 without gaps" in error
    assert not out.exists()


def test_corrupted_safetensors_is_refused(tiny_classifier_dir, sample_dir, tmp_path, capsys):
    model = truncated_copy(tiny_classifier_dir, tmp_path / "broken")
    weights = model / "model.safetensors"
    out = tmp_path / "out"
    code, error = run_train(capsys, str(TINY_CLASSIFIER_CONFIG), *classifier_overrides(model, sample_dir, out))
    assert code == 2
    assert f"{weights}: corrupted safetensors file" in error
    assert not out.exists()


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def pickled_copy(source: Path, target: Path) -> Path:
    """A copy of a tiny model whose only weights are a pickle that would create ``PWNED`` when loaded."""
    shutil.copytree(source, target)
    (target / "model.safetensors").unlink()
    torch.save({"bert.embeddings.word_embeddings.weight": _RunsCode()}, target / "pytorch_model.bin")
    return target


def truncated_copy(source: Path, target: Path) -> Path:
    """A copy of a tiny model whose safetensors file was cut short, like an interrupted download."""
    shutil.copytree(source, target)
    weights = target / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    return target


@pytest.mark.parametrize("damage", ["pickle", "truncated"])
def test_evaluate_refuses_unsafe_or_broken_weights(
    damage, tiny_classifier_dir, sample_dir, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    copy = pickled_copy if damage == "pickle" else truncated_copy
    model = copy(tiny_classifier_dir, tmp_path / "model")
    argv = ["evaluate", "--model", str(model), "--data", str(sample_dir / "test.jsonl"), "-o", "report"]
    code, error = run_train(capsys, *argv)
    assert code == 2
    expected = "refused its pickled weights" if damage == "pickle" else "corrupted safetensors file"
    assert "--model" in error and expected in error and "weights_only" not in error
    assert not (tmp_path / "PWNED").exists()
    assert not (tmp_path / "report").exists()


def test_plain_pickled_weights_still_load(tiny_classifier_dir, tmp_path):
    # The refusal is about code in a pickle, not about the format: tensors alone pass.
    from safetensors.torch import load_file

    from training.model_checks import check_model_source

    model = tmp_path / "plain"
    shutil.copytree(tiny_classifier_dir, model)
    torch.save(load_file(model / "model.safetensors"), model / "pytorch_model.bin")
    (model / "model.safetensors").unlink()
    check_model_source(str(model), "model.name_or_path")


def test_pickle_with_code_is_refused_without_torch_advice(
    tiny_classifier_dir, sample_dir, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    model = pickled_copy(tiny_classifier_dir, tmp_path / "pickled")
    out = tmp_path / "out"
    code, error = run_train(capsys, str(TINY_CLASSIFIER_CONFIG), *classifier_overrides(model, sample_dir, out))
    assert code == 2
    assert "model.name_or_path" in error and "refused its pickled weights" in error and "posix.system" in error
    assert "weights_only" not in error
    assert not (tmp_path / "PWNED").exists()
    assert not out.exists()


def test_missing_title_column_says_the_fix(tiny_classifier_dir, sample_dir, tmp_path, capsys):
    untitled = tmp_path / "untitled.jsonl"
    untitled.write_text(
        "".join(json.dumps({"article": f"خبر {i}", "category": "ab"[i % 2]}) + "\n" for i in range(6)), encoding="utf-8"
    )
    out = tmp_path / "out"
    argv = classifier_overrides(tiny_classifier_dir, sample_dir, out, f"data.train_file={untitled}")
    code, error = run_train(capsys, str(TINY_CLASSIFIER_CONFIG), *argv)
    assert code == 2
    assert f"{untitled}:1: column 'title' not found" in error and "data.title_column=null" in error
    assert not out.exists()


@pytest.mark.parametrize(
    "content, message",
    [
        ('[{"article": "خبر", "topic": "sports"}]\n', "is a JSON array, not JSON Lines"),
        ('{"article": "خبر", "topic": "sports", "topic": "economy"}\n', ":1: the key 'topic' appears twice"),
    ],
)
def test_json_that_is_not_one_object_a_line_is_named(tmp_path, content, message):
    # A JSON array was "malformed JSON (Expecting value)"; a key given twice kept its last value silently.
    path = tmp_path / "topics.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(message)):
        load_split(str(path), Columns(text="article", label="topic"))

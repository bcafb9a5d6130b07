"""Hostile and careless configs: each is refused at once in one short line naming the file (or override) and key.

Alias bombs, values of any size, quoted numbers, empty names, another task's keys, and YAML that used to
end in a traceback (huge integers, deep nesting, a list as a key).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import ROOT

from training.cli import main
from training.config import ONE_TASK_KEYS, ConfigError, ExperimentConfig, load_config, save_config
from training.validation import numeric_keys

CLASSIFIER = ROOT / "configs" / "classifier" / "tiny.yaml"
SUMMARIZER = ROOT / "configs" / "summarizer" / "tiny.yaml"
MINIMAL = "task: {task}\nmodel:\n  name_or_path: m\ndata:\n  train_file: t.jsonl\n"
SHORT = 700  # characters: the longest honest message lists a section's known keys; a value never makes it longer


def bomb(levels: int) -> str:
    """A flow list of nested anchors, each level nine aliases of the one before: 9**levels values once expanded."""
    parts = ["&l0 [x, x, x, x, x, x, x, x, x]"]
    parts += [f"&l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return f"[{', '.join(parts)}]"


def refused(path: Path, overrides: tuple[str, ...] = ()) -> str:
    """The one-line message ``load_config`` refuses ``path`` with."""
    with pytest.raises(ConfigError) as error:
        load_config(path, list(overrides))
    message = str(error.value)
    assert "\n" not in message and len(message) < SHORT, message[:SHORT]
    return message


def config(tmp_path: Path, body: str = "", task: str = "classification") -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(MINIMAL.format(task=task) + body, encoding="utf-8")
    return path


# --- values of any size --------------------------------------------------------------------------


def test_a_long_value_under_a_string_key_is_echoed_short(tmp_path) -> None:
    big = "[" + ", ".join(["x" * 20] * 5000) + "]"  # 5,000 values: under the alias limit, 110 kB as text
    path = config(tmp_path, f"  test_file: {big}\n")
    message = refused(path)
    assert message.startswith(f"{path}: data.test_file: expected a string, got [")
    message = refused(CLASSIFIER, (f"data.test_file={big}",))
    assert message.startswith("override 'data.test_file=[xxxxxxxx") and "data.test_file: expected a string" in message


def test_a_small_alias_bomb_is_refused_with_the_key_and_the_line(tmp_path) -> None:
    path = config(tmp_path, f"output_dir: {bomb(5)}\n")  # 59,049 values: harmless to print if this regressed
    start = time.perf_counter()
    message = refused(path)
    assert time.perf_counter() - start < 1
    assert message.startswith(f"{path}:6: invalid YAML (output_dir: over 10,000 values once aliases are expanded")
    assert "not a plain value (over 10,000 values" in refused(CLASSIFIER, (f"output_dir={bomb(5)}",))


def test_an_alias_inside_its_own_anchor_is_refused(tmp_path) -> None:
    message = refused(config(tmp_path, "  test_file: &a [*a]\n"))
    assert "data.test_file: over 10,000 values once aliases are expanded" in message


BOMB_SCRIPT = """
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (512 << 20, 512 << 20))  # a regression fails here, not the machine
from training.config import ConfigError, load_config
path, config, override = sys.argv[1:]
messages = []
start = time.perf_counter()
for args in ((path, []), (config, [override])):
    try:
        load_config(*args)
    except ConfigError as error:
        messages.append(str(error))
print(json.dumps({"seconds": time.perf_counter() - start, "messages": messages}))
"""


def test_the_nine_level_alias_bomb_is_refused_in_well_under_a_second(tmp_path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(MINIMAL.format(task="classification").replace("t.jsonl", bomb(9)), encoding="utf-8")
    argv = [sys.executable, "-c", BOMB_SCRIPT, str(path), str(CLASSIFIER), f"data.train_file={bomb(9)}"]
    run = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout)
    assert result["seconds"] < 0.5 and len(result["messages"]) == 2
    assert all(len(message) < SHORT for message in result["messages"])
    assert result["messages"][0].startswith(f"{path}:5: invalid YAML (data.train_file: over 10,000 values")
    assert result["messages"][1].startswith(f"{CLASSIFIER}: override 'data.train_file=[&l0 [x, x")


def test_the_cli_refuses_the_bomb_in_one_line(tmp_path, capsys) -> None:
    assert main([str(CLASSIFIER), f"data.train_file={bomb(5)}"]) == 2  # in process: small, in case of a regression
    error = capsys.readouterr().err.strip()
    assert error.startswith("khabar-train: error: ") and "\n" not in error and len(error) < SHORT


# --- YAML that used to end in a traceback ----------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("train:\n  seed: " + "9" * 5000 + "\n", ":7: invalid YAML (an integer of 5,000 characters is too long)"),
        ("  test_file: " + "[" * 5000 + "]" * 5000 + "\n", ":6: invalid YAML (values nested over 100 deep)"),
        ("train:\n  ? [a]\n  : 1\n", ":7: invalid YAML (a list or mapping cannot be a key)"),
        ("train:\n  1: 2\n", ": unknown key 'train.1'; known keys: train.epochs"),
    ],
    ids=["huge-int", "deep", "list-key", "int-key"],
)
def test_yaml_that_used_to_raise_a_traceback_is_a_config_error(tmp_path, body: str, problem: str) -> None:
    path = config(tmp_path, body)
    assert refused(path).startswith(f"{path}{problem}")


def test_merge_keys_work_as_in_yaml_and_a_key_may_override_a_merged_one(tmp_path) -> None:
    path = config(tmp_path, "train:\n  <<: {epochs: 2, learning_rate: 1e-4}\n  epochs: 3\n")
    cfg = load_config(path)
    assert (cfg.train.epochs, cfg.train.learning_rate) == (3, 1e-4)  # the key given beside the merge wins


# --- numbers -----------------------------------------------------------------------------------------


def test_every_numeric_key_refuses_a_quoted_number_and_takes_an_unquoted_one(tmp_path) -> None:
    for dotted in numeric_keys(ExperimentConfig):
        section, name = dotted.split(".")
        task = ONE_TASK_KEYS.get(dotted) or ONE_TASK_KEYS.get(section) or "classification"
        path = config(tmp_path, f"{section}:\n  {name}: '1'\n" if section != "data" else f"  {name}: '1'\n", task)
        message = refused(path)
        assert message.startswith(f"{path}: {dotted}: expected ") and "quotes make it text" in message, message
        unquoted = 0.5 if dotted in ("data.validation_fraction", "train.warmup_ratio") else 1
        assert getattr(getattr(load_config(path, [f"{dotted}={unquoted}"]), section), name) == unquoted
    message = refused(CLASSIFIER, ('train.epochs="20"',))
    assert message == "override 'train.epochs=\"20\"': train.epochs: expected a number, got '20' " + (
        "(quotes make it text: drop them)"
    )


def test_unquoted_numbers_yaml_reads_as_text_still_count(tmp_path) -> None:
    path = config(tmp_path, "train:\n  learning_rate: 2e-5\n  batch_size: 1e1\n  max_steps: 1E2\n")
    cfg = load_config(path)
    assert (cfg.train.learning_rate, cfg.train.batch_size, cfg.train.max_steps) == (2e-5, 10, 100)
    assert "train.learning_rate: must be a number > 0, got inf" in refused(path, ("train.learning_rate=inf",))
    assert refused(path, ("train.learning_rate='2e-5'",)).endswith("got '2e-5' (quotes make it text: drop them)")


# --- strings -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('  title_column: ""\n', "data.title_column: expected a non-empty string or null, got ''"),
        ("  text_column: ''\n", "data.text_column: expected a non-empty string, got ''"),
        ("  validation_file: '  '\n", "data.validation_file: expected a non-empty string or null, got '  '"),
        ("output_dir: ''\n", "output_dir: expected a non-empty string, got ''"),
    ],
    ids=["title", "text", "validation-file", "output-dir"],
)
def test_an_empty_name_is_refused(tmp_path, body: str, expected: str) -> None:
    path = config(tmp_path, body)
    assert refused(path) == f"{path}: {expected}"


def test_null_title_column_still_means_no_headline(tmp_path) -> None:
    assert refused(CLASSIFIER, ("data.title_column=''",)).endswith("got ''")
    assert load_config(CLASSIFIER, ["data.title_column=null"]).data.title_column is None
    assert load_config(CLASSIFIER, ["data.title_column="]).data.title_column is None


# --- keys of the other task ------------------------------------------------------------------------


@pytest.mark.parametrize("dotted", sorted(ONE_TASK_KEYS))
def test_a_key_of_the_other_task_is_refused_by_name(dotted: str) -> None:
    owner = ONE_TASK_KEYS[dotted]
    shipped, task = (CLASSIFIER, "classification") if owner == "summarization" else (SUMMARIZER, "summarization")
    values = {"generation": "{num_beams: 2}", "data.label_column": "topic", "data.summary_column": "lead"}
    value = values.get(dotted, "7")
    if dotted == "train.class_weights":  # its only value is refused by ExperimentConfig, in its own words
        assert refused(shipped, ("train.class_weights=balanced",)).endswith("applies to classification only")
        assert load_config(shipped, ["train.class_weights=null"]).train.class_weights is None  # the default
        return
    message = refused(shipped, (f"{dotted}={value}",))
    unknown = f"unknown key '{dotted}' for task '{task}': it applies to {owner} only"
    assert message == f"override '{dotted}={value}': {unknown}"
    if dotted == "generation":  # one key of the section, as an override, is blamed too
        assert refused(shipped, ("generation.num_beams=2",)) == f"override 'generation.num_beams=2': {unknown}"


def test_a_generation_section_in_a_classifier_file_names_the_file(tmp_path) -> None:
    path = config(tmp_path, "generation:\n  num_beams: 2\n")
    assert refused(path) == f"{path}: unknown key 'generation' for task 'classification': " + (
        "it applies to summarization only"
    )


@pytest.mark.parametrize("shipped", [CLASSIFIER, SUMMARIZER], ids=["classifier", "summarizer"])
def test_a_config_saved_by_an_earlier_version_with_both_tasks_defaults_still_loads(shipped: Path, tmp_path) -> None:
    cfg = load_config(shipped)
    old = tmp_path / "config.yaml"
    old.write_text(yaml.safe_dump(dataclasses.asdict(cfg), allow_unicode=True), encoding="utf-8")  # every key
    assert load_config(old) == cfg


@pytest.mark.parametrize("shipped", [CLASSIFIER, SUMMARIZER], ids=["classifier", "summarizer"])
def test_a_saved_config_loads_again_as_it_was(shipped: Path, tmp_path) -> None:
    cfg = load_config(shipped)
    saved = save_config(cfg, tmp_path / "config.yaml")
    assert load_config(saved) == cfg
    text = saved.read_text(encoding="utf-8")
    assert ("generation:" in text) == ("max_target_length:" in text) == (cfg.task == "summarization")
    assert ("label_column:" in text) == ("class_weights:" in text) == (cfg.task == "classification")


# --- misspelled keys and names YAML reads as something else ------------------------------------------


def test_a_misspelled_key_names_the_key_meant(tmp_path) -> None:
    message = refused(config(tmp_path, "train:\n  learnig_rate: 1e-4\n"))
    assert "unknown key 'train.learnig_rate' (did you mean 'train.learning_rate'?)" in message


def test_the_keys_offered_are_the_ones_the_task_reads(tmp_path) -> None:
    # A classification config is not offered the summarizer's keys, which it would then refuse.
    message = refused(config(tmp_path, "train:\n  max_target_lenght: 64\n"))
    assert "did you mean" not in message and "max_target_length" not in message
    assert "train.class_weights" in message
    message = refused(config(tmp_path, "train:\n  max_target_lenght: 64\n", task="summarization"))
    assert "(did you mean 'train.max_target_length'?)" in message and "class_weights" not in message


def test_an_unquoted_date_as_a_name_is_that_text(tmp_path) -> None:
    # YAML reads 2024-01-01 as a date; a run folder named by its date is a common choice.
    assert load_config(config(tmp_path, "output_dir: runs/2024-01-01\n")).output_dir == "runs/2024-01-01"
    assert load_config(config(tmp_path, "output_dir: 2024-01-01\n")).output_dir == "2024-01-01"
    assert load_config(config(tmp_path), ["output_dir=2024-01-01"]).output_dir == "2024-01-01"


def test_a_home_folder_in_a_path_is_expanded_once_for_every_part_of_the_run(monkeypatch, tmp_path):
    # The lock and the trainer wrote $HOME/x while the final save went to ./~/x.
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = load_config("configs/classifier/tiny.yaml", ["output_dir=~/runs/x", "data.train_file=~/train.jsonl"])
    assert cfg.output_dir == str(tmp_path / "runs" / "x") and cfg.data.train_file == str(tmp_path / "train.jsonl")

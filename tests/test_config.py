"""Training configs: every shipped YAML validates, overrides win, and mistakes are one-line errors naming the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT

from training.cli import main
from training.config import ConfigError, load_config
from training.overrides import parse_overrides

SHIPPED = sorted((ROOT / "configs").rglob("*.yaml"))


def write_config(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


MINIMAL = "task: classification\nmodel:\n  name_or_path: m\ndata:\n  train_file: t.jsonl\n"


def test_configs_are_shipped() -> None:
    names = {p.relative_to(ROOT / "configs").as_posix() for p in SHIPPED}
    assert {"classifier/tiny.yaml", "classifier/parsbert.yaml", "summarizer/tiny.yaml"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.relative_to(ROOT / "configs").as_posix())
def test_shipped_config_validates_and_opens_with_its_command(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.task == path.parent.name.replace("classifier", "classification").replace("summarizer", "summarization")
    first_line = path.read_text(encoding="utf-8").splitlines()[0]
    assert first_line == f"# Run: khabar-train {path.relative_to(ROOT).as_posix()}"
    assert isinstance(cfg.train.learning_rate, float)


def test_parsbert_recipe_reads_shared_data_at_full_length() -> None:
    cfg = load_config(ROOT / "configs/classifier/parsbert.yaml")
    assert cfg.model.name_or_path == "HooshvareLab/bert-fa-base-uncased"
    assert cfg.train.max_length == 512
    assert cfg.data.train_file == "../shared/data/persian-news/train.jsonl"
    assert cfg.train.class_weights == "balanced"


def test_scientific_notation_without_a_dot_is_a_float(tmp_path) -> None:
    path = write_config(tmp_path / "c.yaml", MINIMAL + "train:\n  learning_rate: 2e-5\n")
    assert load_config(path).train.learning_rate == pytest.approx(2e-5)
    assert load_config(path, ["train.learning_rate=3e-5"]).train.learning_rate == pytest.approx(3e-5)


def test_overrides_win_over_the_file() -> None:
    cfg = load_config(
        ROOT / "configs/classifier/tiny.yaml",
        ["train.epochs=2", "data.train_file=x.jsonl", "train.class_weights=null", "output_dir=elsewhere"],
    )
    assert cfg.train.epochs == 2 and cfg.data.train_file == "x.jsonl"
    assert cfg.train.class_weights is None and cfg.output_dir == "elsewhere"
    assert load_config(ROOT / "configs/classifier/tiny.yaml").train.epochs != 2


def test_unknown_key_names_the_key_and_the_file(tmp_path) -> None:
    path = write_config(tmp_path / "c.yaml", MINIMAL + "train:\n  learning_rat: 1e-4\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert str(path) in message and "'train.learning_rat'" in message and "train.learning_rate" in message
    with pytest.raises(ConfigError, match="unknown key 'train.epoch'"):
        load_config(ROOT / "configs/classifier/tiny.yaml", ["train.epoch=3"])


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.batch_size=big", "train.batch_size"),
        ("train.resume=maybe", "train.resume"),
        ("train.learning_rate=fast", "train.learning_rate"),
        ("train.class_weights=inverse", "train.class_weights"),
        ("data=articles.jsonl", "data"),
    ],
)
def test_wrong_type_names_the_key(override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=f"{key}: "):
        load_config(ROOT / "configs/classifier/tiny.yaml", [override])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.fp16=true", "train.bf16=true"], "exclusive"),
        (["train.eval_strategy=steps"], "eval_steps"),
        (["train.learning_rate=0"], "train.learning_rate: must be a number > 0"),
        (["model.name_or_path=null"], "model.name_or_path or model.config"),
    ],
)
def test_impossible_combinations_are_refused(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(ROOT / "configs/classifier/tiny.yaml", overrides)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("foo.bar=1", "override 'foo.bar=1': unknown key 'foo'"),
        ("train=3", "override 'train=3': train: expected a section"),
        ("train.learning_rate=0", "override 'train.learning_rate=0': train.learning_rate: must be"),
    ],
)
def test_a_bad_override_is_named_not_the_file(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(ROOT / "configs/classifier/tiny.yaml", ["train.epochs=2", override])


def test_a_key_given_twice_in_the_file_is_refused_with_its_line(tmp_path) -> None:
    path = write_config(tmp_path / "c.yaml", MINIMAL + "train:\n  epochs: 2\n  epochs: 3\n")
    with pytest.raises(ConfigError, match=r"c.yaml:\d+: invalid YAML \(the key 'epochs' appears twice"):
        load_config(path)


def test_malformed_override_is_refused() -> None:
    with pytest.raises(ConfigError, match="not key=value"):
        parse_overrides(["train.epochs"])


def test_cli_reports_config_mistakes_in_one_line(tmp_path, capsys) -> None:
    assert main([str(ROOT / "configs/classifier/tiny.yaml"), "train.epochz=3"]) == 2
    assert main([str(tmp_path / "missing.yaml")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("khabar-train: error: ") for line in lines)
    assert "train.epochz" in lines[0] and "missing.yaml" in lines[1]


def test_python_dash_m_training_is_the_same_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "training", "configs/classifier/tiny.yaml", "train.epochz=3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith("khabar-train: error: ") and "train.epochz" in result.stderr

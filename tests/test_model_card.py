"""Model cards: every trained model directory gets a README.md that the hub and a reader can use."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
import yaml
from helpers import ROOT

from training.cli import main
from training.model_card import write_model_card


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def test_training_writes_a_card_with_the_runs_metrics_and_baselines(trained_classifier_dir):
    card = (trained_classifier_dir / "README.md").read_text(encoding="utf-8")
    metrics = json.loads((trained_classifier_dir / "metrics.json").read_text(encoding="utf-8"))

    meta = front_matter(card)
    assert meta["language"] == "fa" and meta["pipeline_tag"] == "text-classification"
    assert meta["license"] == "apache-2.0" and "accuracy" in meta["metrics"]
    assert all(f"`{label}`" in card for label in metrics["labels"])
    assert f"| this model | {metrics['test']['accuracy']:.3f} | {metrics['test']['macro_f1']:.3f} |" in card
    assert "| majority class |" in card and "| TF-IDF + linear SVM |" in card
    assert "| test | `" in card and f"| {metrics['test']['rows']} |" in card
    # The machine that trained it is recorded with the metrics, so a rewritten card keeps it.
    assert metrics["train"]["hardware"] in card
    assert "tiny model trained from scratch" in card
    assert "AutoModelForSequenceClassification" in card and "Classifier.from_pretrained" in card


def test_khabar_train_card_rewrites_the_card_offline(trained_classifier_dir, tmp_path, capsys):
    model = tmp_path / "classifier"
    shutil.copytree(trained_classifier_dir, model)
    (model / "README.md").unlink()

    assert main(["card", str(model), "--no-baselines"]) == 0

    card = (model / "README.md").read_text(encoding="utf-8")
    assert "Baselines not computed" in card
    assert front_matter(card)["pipeline_tag"] == "text-classification"
    assert "model card written to" in capsys.readouterr().out


def test_a_directory_that_is_not_a_trained_model_is_a_one_line_error(tiny_classifier_dir, capsys):
    assert main(["card", str(tiny_classifier_dir)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "no metrics.json" in error and str(tiny_classifier_dir) in error


def test_a_summarizer_card_scores_lead_1_and_states_the_decoding(tiny_summarizer_dir, sample_dir, tmp_path):
    from training.config import load_config, save_config

    model = tmp_path / "summarizer"
    shutil.copytree(tiny_summarizer_dir, model)
    overrides = [f"data.{split}_file={sample_dir / f'{split}.jsonl'}" for split in ("train", "validation", "test")]
    save_config(load_config(ROOT / "configs" / "summarizer" / "tiny.yaml", overrides), model / "config.yaml")
    scores = {"rouge1": 12.5, "rouge2": 3.25, "rougeL": 10.0, "rows": 40}
    (model / "metrics.json").write_text(json.dumps({"train": {"train_runtime": 3.0}, "test": scores}))

    card = write_model_card(model).read_text(encoding="utf-8")

    assert front_matter(card)["pipeline_tag"] == "summarization"
    assert "| this model | 12.5 | 3.2 | 10.0 |" in card
    lead = next(line for line in card.splitlines() if line.startswith("| lead-1 |"))
    assert 10 < float(lead.split("|")[2]) < 60  # lead-1 is a real score on the sample, not 0
    assert "num_beams=" in card and "AutoModelForSeq2SeqLM" in card
    assert "Hardware: not recorded" in card


def test_a_hand_damaged_metrics_file_is_a_one_line_error(trained_classifier_dir, tmp_path, capsys):

    for name, damage in (("list", []), ("string score", None)):  # metrics.json as a list; a score as text
        model = tmp_path / name
        shutil.copytree(trained_classifier_dir, model)
        metrics = json.loads((model / "metrics.json").read_text(encoding="utf-8"))
        if damage is None:
            metrics["test"]["accuracy"] = "high"
        (model / "metrics.json").write_text(json.dumps(metrics if damage is None else damage), encoding="utf-8")

        assert main(["card", str(model), "--no-baselines"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("khabar-train card: error: ") and len(err.splitlines()) == 1


@pytest.mark.parametrize(("text", "said"), [("task: [classification\n", "unreadable"), ("- a\n- b\n", "no settings")])
def test_a_damaged_run_config_is_said_and_left_out_of_the_card(trained_classifier_dir, tmp_path, caplog, text, said):
    model = shutil.copytree(trained_classifier_dir, tmp_path / "classifier")
    (model / "config.yaml").write_text(text, encoding="utf-8")

    with caplog.at_level(logging.WARNING):
        assert main(["card", str(model), "--no-baselines"]) == 0

    assert f"config.yaml {'is unreadable' if said == 'unreadable' else 'holds no settings'}" in caplog.text
    assert front_matter((model / "README.md").read_text(encoding="utf-8"))["pipeline_tag"] == "text-classification"


def test_an_unknown_task_in_the_run_config_falls_back_to_what_the_model_is(tiny_summarizer_dir, tmp_path):
    from training.model_card import collect_facts

    model = shutil.copytree(tiny_summarizer_dir, tmp_path / "summarizer", ignore=shutil.ignore_patterns(".khabar-*"))
    (model / "metrics.json").write_text("{}", encoding="utf-8")
    (model / "config.yaml").write_text("task: summarisation\n", encoding="utf-8")  # a typo, by hand

    assert collect_facts(model)["task"] == "summarization"

"""Summarizer training from a config: artifacts, decoding settings, precision checks, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import ROOT, RecordSteps, read_jsonl, tiny_summarizer_run
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, GenerationConfig, TrainerCallback

from training.cli import main
from training.config import ConfigError, load_config
from training.summarizer import load_model_config, train

CONFIGS = ROOT / "configs" / "summarizer"
TINY_CONFIG = CONFIGS / "tiny.yaml"
ROUGE_KEYS = {"rouge1", "rouge2", "rougeL", "rougeLsum"}
# Decoding settings unlike the shipped ones, so the round trip proves they come from the config.
CUSTOM_DECODING = {"num_beams": 2, "no_repeat_ngram_size": 2, "length_penalty": 1.2, "max_new_tokens": 6}


def quick_overrides(model_dir: Path, out: Path, *extra: str) -> list[str]:
    """Point the tiny config at ``model_dir``, the bundled sample and ``out``, at toy size: 2 steps an epoch."""
    toy = ["data.max_train_samples=8", "data.max_eval_samples=4", "train.batch_size=4", "train.epochs=1"]
    short = ["train.max_target_length=16", "train.generation_eval_samples=2", "generation.max_new_tokens=8"]
    return tiny_summarizer_run(model_dir, out, *toy, *short, *extra)


@pytest.fixture(scope="module")
def trained_dir(tiny_summarizer_dir, tmp_path_factory) -> Path:
    """The tiny summarizer after a 2-step run through the real CLI, with custom decoding settings."""
    out = tmp_path_factory.mktemp("summarizer") / "model"
    decoding = [f"generation.{key}={value}" for key, value in CUSTOM_DECODING.items()]
    assert main([str(TINY_CONFIG), *quick_overrides(tiny_summarizer_dir, out, *decoding)]) == 0
    return out


def test_two_step_run_writes_every_artifact(trained_dir: Path) -> None:
    for name in ("model.safetensors", "config.json", "tokenizer.json", "generation_config.json", "normalization.json"):
        assert (trained_dir / name).is_file(), name
    assert not list(trained_dir.glob("checkpoint-*")), "checkpoints of a finished run are removed"

    resolved = load_config(trained_dir / "config.yaml")
    assert resolved.task == "summarization" and resolved.output_dir == str(trained_dir)
    assert resolved.generation.num_beams == 2 and resolved.data.max_train_samples == 8

    metrics = json.loads((trained_dir / "metrics.json").read_text(encoding="utf-8"))
    for split in ("validation", "test"):
        assert ROUGE_KEYS <= metrics[split].keys()
        assert all(0.0 <= metrics[split][key] <= 100.0 for key in ROUGE_KEYS)
        assert 0 < metrics[split]["gen_len"] <= 7  # at most max_new_tokens=6 and an end token
        assert metrics[split]["rows"] == 4
    assert metrics["train"]["epoch"] == 1.0

    samples = read_jsonl(trained_dir / "samples.jsonl")
    assert len(samples) == 4 and {"article", "reference", "generated", "rougeL"} <= samples[0].keys()
    assert samples[0]["reference"] and "\u064a" not in samples[0]["reference"]  # normalized: no Arabic yeh

    log = read_jsonl(trained_dir / "training_log.jsonl")
    # One row per evaluation, as the classifier writes (README: training_log.jsonl).
    assert [(row["epoch"], row["step"]) for row in log] == [(1.0, 2)]
    assert log[0]["train_loss"] > 0 and {"validation_loss", "rouge1", "rougeL", "gen_len"} <= log[0].keys()
    assert json.loads((trained_dir / "normalization.json").read_text())["digits"] == "persian"


def test_generation_config_round_trips_through_plain_transformers(trained_dir: Path) -> None:
    model = AutoModelForSeq2SeqLM.from_pretrained(trained_dir)
    settings = model.generation_config
    assert settings.num_beams == 2 and settings.no_repeat_ngram_size == 2
    assert settings.length_penalty == 1.2 and settings.early_stopping is True and settings.max_new_tokens == 6

    tokenizer = AutoTokenizer.from_pretrained(trained_dir)
    inputs = tokenizer(["تیم ملی فوتبال ایران در بازی دوستانه برد"], return_tensors="pt")
    explicit = GenerationConfig(
        **CUSTOM_DECODING, early_stopping=True, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1
    )
    with torch.inference_mode():
        plain = model.generate(**inputs)  # no arguments: decodes as saved
        configured = model.generate(**inputs, generation_config=explicit)
    assert plain.shape[1] <= 1 + 6
    assert torch.equal(plain, configured)


def test_fp16_is_refused_for_t5_models_with_a_reason(tiny_summarizer_dir, tmp_path, capsys) -> None:
    out = tmp_path / "model"
    assert main([str(TINY_CONFIG), *quick_overrides(tiny_summarizer_dir, out, "train.fp16=true")]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "train.fp16" in error and "NaN" in error and "train.bf16=true" in error and "float32" in error
    assert not out.exists()


def test_a_missing_model_is_a_one_line_error(tmp_path, capsys) -> None:
    missing = tmp_path / "no-such-model"
    assert main([str(TINY_CONFIG), *quick_overrides(missing, tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "model.name_or_path" in error and str(missing) in error


def test_a_classifier_is_not_a_summarizer(tiny_classifier_dir, tmp_path) -> None:
    cfg = load_config(TINY_CONFIG, quick_overrides(tiny_classifier_dir, tmp_path))
    with pytest.raises(ConfigError, match="bert model, not a sequence-to-sequence model"):
        load_model_config(cfg)


class Interrupt(Exception):
    """Stands in for a crash or a killed job."""


class StopAfterFirstCheckpoint(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        raise Interrupt


def test_interrupted_run_resumes_from_its_last_checkpoint(tiny_summarizer_dir, tmp_path, capsys) -> None:
    out = tmp_path / "model"
    two_epochs = quick_overrides(tiny_summarizer_dir, out, "train.epochs=2")
    with pytest.raises(Interrupt):
        train(load_config(TINY_CONFIG, two_epochs), callbacks=[StopAfterFirstCheckpoint()])
    assert [path.name for path in out.glob("checkpoint-*")] == ["checkpoint-2"]
    assert not (out / "model.safetensors").exists()

    with pytest.raises(ConfigError, match="train.resume=true"):  # starting over would mix two runs
        train(load_config(TINY_CONFIG, two_epochs))

    steps = RecordSteps()
    train(load_config(TINY_CONFIG, [*two_epochs, "train.resume=true"]), callbacks=[steps])
    assert steps.steps == [3, 4], "only the steps after the checkpoint run again"
    log = read_jsonl(out / "training_log.jsonl")
    assert [(row["epoch"], row["step"]) for row in log] == [(1.0, 2), (2.0, 4)]
    assert all(row["train_loss"] > 0 for row in log)
    assert (out / "model.safetensors").is_file() and not list(out.glob("checkpoint-*"))
    assert f"summarizer written to {out}/" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["tiny", "mt5-small"])
def test_shipped_configs_open_with_their_command_and_load(name: str) -> None:
    path = CONFIGS / f"{name}.yaml"
    assert path.read_text(encoding="utf-8").startswith(f"# Run: khabar-train configs/summarizer/{name}.yaml")
    cfg = load_config(path)
    assert cfg.task == "summarization" and cfg.data.text_column == "article" and cfg.data.summary_column == "summary"
    decoding = cfg.generation
    assert (decoding.num_beams, decoding.no_repeat_ngram_size, decoding.length_penalty) == (4, 3, 1.0)
    assert decoding.early_stopping is True


def test_mt5_small_config_follows_the_paper_and_reads_the_shared_data() -> None:
    cfg = load_config(CONFIGS / "mt5-small.yaml")
    assert cfg.model.name_or_path == "google/mt5-small" and cfg.train.max_length == 512
    assert cfg.data.train_file == "../shared/data/persian-news/train.jsonl"
    assert not cfg.train.fp16


def test_predictions_leave_the_models_decoding_settings_alone(tiny_summarizer_dir, tmp_path, caplog) -> None:
    import logging

    import datasets
    from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainingArguments

    from training.summarizer import DecodingKeepingTrainer

    tokenizer = AutoTokenizer.from_pretrained(tiny_summarizer_dir)
    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_summarizer_dir)
    model.generation_config = GenerationConfig(max_new_tokens=4, num_beams=1, decoder_start_token_id=0, eos_token_id=1)
    rows = datasets.Dataset.from_dict(
        {"input_ids": [[10, 11, 12, 1]] * 4, "attention_mask": [[1] * 4] * 4, "labels": [[13, 14, 1]] * 4}
    )
    args = Seq2SeqTrainingArguments(
        output_dir=str(tmp_path),
        predict_with_generate=True,
        per_device_eval_batch_size=2,
        report_to=[],
        dataloader_pin_memory=False,
    )
    collator = DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100)
    trainer = DecodingKeepingTrainer(model=model, args=args, data_collator=collator, processing_class=tokenizer)
    with caplog.at_level(logging.WARNING):
        trainer.predict(rows)  # two batches: the second generate would warn if the first changed the settings

    assert model.generation_config.max_length is None and model.generation_config.max_new_tokens == 4
    assert "seem to have been set" not in caplog.text


@pytest.mark.parametrize(("version", "expected"), [(3, "رسانه\u200cها می\u200cگویند"), (1, "رسانه ها می گویند")])
def test_the_summaries_training_writes_are_those_the_summarizer_will_answer(tiny_summarizer_dir, version, expected):
    # samples.jsonl and the reported scores come from these: they show the half-spaces put back as
    # Summarizer puts them back (for models normalized with v2 on), and single spaces.
    import numpy as np
    from datasets import Dataset
    from transformers.trainer_utils import PredictionOutput

    from training.summarizer import evaluate_split

    tokenizer = AutoTokenizer.from_pretrained(tiny_summarizer_dir)
    written = tokenizer(["رسانه\u200cها  می\u200cگویند"]).input_ids  # what this tokenizer lets a model write
    trainer = type("Trainer", (), {"processing_class": tokenizer})()
    trainer.predict = lambda data, metric_key_prefix: PredictionOutput(
        np.array(written), None, {f"{metric_key_prefix}_loss": 1.0}
    )
    cfg = load_config(ROOT / "configs" / "summarizer" / "tiny.yaml", [f"data.normalization_version={version}"])

    _, summaries = evaluate_split(trainer, None, Dataset.from_dict({"summary": ["رسانه‌ها می‌گویند"]}), "test", cfg)

    assert summaries == [expected]

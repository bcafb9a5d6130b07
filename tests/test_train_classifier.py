"""Training the topic classifier: the files it writes, its labels, resuming, and the mistakes it refuses."""

from __future__ import annotations

import json

import pytest
import torch
from fixtures_training import TINY_CLASSIFIER_CONFIG, classifier_overrides
from helpers import RecordSteps
from safetensors.torch import load_file
from transformers import AutoTokenizer, TrainerCallback, pipeline

from training.classifier import class_weights, load_model, tokenize, train, weighted_loss
from training.config import ConfigError, load_config
from training.data import DataError
from training.tiny import sample_labels

QUICK = ["train.max_length=32", "train.batch_size=8", "data.max_eval_samples=8"]


def quick_config(tiny_classifier_dir, sample_dir, out, *extra):
    overrides = classifier_overrides(tiny_classifier_dir, sample_dir, out, *QUICK, *extra)
    return load_config(TINY_CLASSIFIER_CONFIG, overrides)


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return str(path)


def test_training_run_writes_every_artifact(trained_classifier_dir) -> None:
    out = trained_classifier_dir
    for name in ("model.safetensors", "config.json", "tokenizer.json", "config.yaml", "normalization.json"):
        assert (out / name).is_file(), name
    assert (out / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob("checkpoint-*")), "checkpoints of a finished run are removed"

    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    for split, rows in (("validation", 39), ("test", 40)):
        scores = metrics[split]
        assert scores["rows"] == rows
        assert 0 <= scores["macro_f1"] <= 1 and 0 <= scores["accuracy"] <= 1
        assert set(scores["per_class"]) == set(metrics["labels"])
        assert sum(map(sum, scores["confusion_matrix"]["matrix"])) == rows
    assert metrics["train"]["best_validation_macro_f1"] is not None

    epochs = [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines()]
    assert len(epochs) == 1 and epochs[0]["epoch"] == pytest.approx(1.0)
    assert epochs[0]["train_loss"] > 0 and "macro_f1" in epochs[0] and "sports" in epochs[0]["per_class"]

    resolved = load_config(out / "config.yaml")
    assert resolved.train.epochs == 1 and resolved.output_dir == str(out)
    assert json.loads((out / "normalization.json").read_text())["digits"] == "persian"


def test_labels_come_from_training_data_and_round_trip(trained_classifier_dir) -> None:
    config = json.loads((trained_classifier_dir / "config.json").read_text(encoding="utf-8"))
    labels = sample_labels()
    assert [config["id2label"][str(i)] for i in range(len(labels))] == labels
    assert config["label2id"] == {label: i for i, label in enumerate(labels)}
    assert json.loads((trained_classifier_dir / "metrics.json").read_text())["labels"] == labels


def test_plain_transformers_pipeline_loads_the_model(trained_classifier_dir) -> None:
    classify = pipeline("text-classification", model=str(trained_classifier_dir))
    [prediction] = classify(["تیم ملی فوتبال ایران در ورزشگاه آزادی برد"])
    assert prediction["label"] in sample_labels() and 0 < prediction["score"] <= 1


class StopAtStep(TrainerCallback):
    """Interrupt training like Ctrl-C once ``step`` is reached."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            raise KeyboardInterrupt


def test_resume_continues_an_interrupted_run_to_the_same_model(tiny_classifier_dir, sample_dir, tmp_path) -> None:
    steps = [
        "train.max_steps=4",
        "train.eval_strategy=steps",
        "train.eval_steps=2",
        "train.early_stopping_patience=null",
    ]
    interrupted = tmp_path / "interrupted"
    cfg = quick_config(tiny_classifier_dir, sample_dir, interrupted, *steps)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, callbacks=[StopAtStep(3)])
    assert (interrupted / "checkpoint-2").is_dir()

    with pytest.raises(ConfigError, match="train.resume=true"):
        train(cfg)
    recorder = RecordSteps()
    train(quick_config(tiny_classifier_dir, sample_dir, interrupted, *steps, "train.resume=true"), [recorder])
    assert recorder.steps == [3, 4], "only the steps after the checkpoint run again"
    rows = [json.loads(line) for line in (interrupted / "training_log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [2, 4], "the log keeps the evaluations from before the interruption"

    # Seeded on CPU: one uninterrupted run ends with exactly the same weights.
    straight = tmp_path / "straight"
    train(quick_config(tiny_classifier_dir, sample_dir, straight, *steps))
    resumed_weights, straight_weights = (load_file(d / "model.safetensors") for d in (interrupted, straight))
    assert all(torch.equal(resumed_weights[name], straight_weights[name]) for name in straight_weights)


def test_unseen_validation_label_is_a_one_line_error(tiny_classifier_dir, sample_dir, tmp_path) -> None:
    validation = write_jsonl(tmp_path / "val.jsonl", [{"article": "خبر", "category": "weather", "title": "t"}] * 2)
    cfg = quick_config(tiny_classifier_dir, sample_dir, tmp_path / "out", f"data.validation_file={validation}")
    with pytest.raises(DataError) as error:
        train(cfg)
    message = str(error.value)
    assert "val.jsonl" in message and "'weather' (2 rows)" in message and "sports" in message
    assert "\n" not in message


def test_single_label_training_data_is_refused(tiny_classifier_dir, sample_dir, tmp_path) -> None:
    train_file = write_jsonl(
        tmp_path / "train.jsonl", [{"article": "خبر ورزشی", "category": "sports", "title": "t"}] * 4
    )
    cfg = quick_config(tiny_classifier_dir, sample_dir, tmp_path / "out", f"data.train_file={train_file}")
    with pytest.raises(DataError, match="at least two"):
        train(cfg)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_fp16_without_gpu_is_refused(tiny_classifier_dir, sample_dir, tmp_path) -> None:
    cfg = quick_config(tiny_classifier_dir, sample_dir, tmp_path / "out", "train.fp16=true")
    with pytest.raises(ConfigError, match="train.fp16: .* needs a CUDA GPU"):
        train(cfg)


def test_checkpoint_gets_a_new_head_sized_to_the_labels(tiny_classifier_dir, sample_dir, tmp_path) -> None:
    cfg = quick_config(tiny_classifier_dir, sample_dir, tmp_path / "out")
    original = load_file(tiny_classifier_dir / "model.safetensors")

    kept = load_model(cfg, sample_labels())  # the checkpoint already predicts these labels: continued training
    assert torch.equal(kept.classifier.weight.detach(), original["classifier.weight"])

    renamed = load_model(cfg, [f"topic-{i}" for i in range(len(sample_labels()))])  # same size, other meaning
    assert not torch.equal(renamed.classifier.weight.detach(), original["classifier.weight"])
    assert torch.equal(
        renamed.bert.embeddings.word_embeddings.weight.detach(), original["bert.embeddings.word_embeddings.weight"]
    )

    grown = load_model(cfg, [*sample_labels(), "health"])
    assert grown.classifier.out_features == 8 and grown.config.id2label[7] == "health"


def test_model_config_builds_fresh_weights(tiny_classifier_dir, sample_dir, tmp_path) -> None:
    fresh = f"model.config={tiny_classifier_dir / 'config.json'}"
    tokenizer = f"model.tokenizer={tiny_classifier_dir}"
    cfg = quick_config(tiny_classifier_dir, sample_dir, tmp_path / "out", fresh, tokenizer, "model.name_or_path=null")
    model = load_model(cfg, ["economy", "sports"])
    original = load_file(tiny_classifier_dir / "model.safetensors")
    assert model.config.id2label == {0: "economy", 1: "sports"}
    assert not torch.equal(
        model.bert.embeddings.word_embeddings.weight.detach(), original["bert.embeddings.word_embeddings.weight"]
    )


def test_title_is_joined_before_the_article(tiny_classifier_dir) -> None:
    import datasets

    tokenizer = AutoTokenizer.from_pretrained(tiny_classifier_dir)
    split = datasets.Dataset.from_dict({"text": ["متن خبر"], "label": ["sports"], "title": ["استقلال برد"]})
    row = tokenize(split, tokenizer, ["economy", "sports"], max_length=32)[0]
    assert tokenizer.decode(row["input_ids"], skip_special_tokens=True) == "استقلال برد متن خبر"
    assert row["labels"] == 1


def test_balanced_weights_make_each_topic_count_the_same() -> None:
    labels = ["economy", "sports"]
    weights = class_weights(["sports"] * 3 + ["economy"], labels)
    assert weights[0] * 1 == pytest.approx(weights[1] * 3)


def test_weighted_loss_over_accumulated_batches_equals_one_big_batch() -> None:
    torch.manual_seed(0)
    logits, labels = torch.randn(6, 3), torch.tensor([0, 1, 2, 2, 1, 0])
    loss = weighted_loss(torch.tensor([1.0, 2.0, 0.5]))

    class Out(dict):
        pass

    whole = loss(Out(logits=logits), labels)
    halves = loss(Out(logits=logits[:3]), labels[:3], 6) + loss(Out(logits=logits[3:]), labels[3:], 6)
    assert halves.item() == pytest.approx(whole.item())
    unweighted = weighted_loss(torch.ones(3))(Out(logits=logits), labels)
    assert unweighted.item() == pytest.approx(torch.nn.functional.cross_entropy(logits, labels).item())


def test_metrics_agree_with_scikit_learn_and_ignore_absent_topics() -> None:
    from sklearn.metrics import accuracy_score, f1_score

    from training.metrics import classification_metrics

    references = ["sports"] * 6 + ["economy"] * 3 + ["politics"] * 2
    predictions = ["sports"] * 5 + ["economy"] * 2 + ["sports"] * 2 + ["politics", "economy"]
    scores = classification_metrics(predictions, references, labels=["economy", "health", "politics", "sports"])
    assert scores["accuracy"] == pytest.approx(accuracy_score(references, predictions))
    assert scores["macro_f1"] == pytest.approx(f1_score(references, predictions, average="macro"))
    assert scores["weighted_f1"] == pytest.approx(f1_score(references, predictions, average="weighted"))
    assert scores["per_class"]["health"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert scores["per_class"]["economy"]["recall"] == pytest.approx(1 / 3)
    assert scores["confusion_matrix"]["matrix"][3] == [1, 0, 0, 5]  # true sports: 1 called economy, 5 right
    with pytest.raises(ValueError, match="weather"):
        classification_metrics(["weather"], ["sports"], labels=["sports"])


def test_confusion_matrix_plot_is_a_png_and_checks_its_shape(tmp_path) -> None:
    from training.evaluation.plots import plot_confusion_matrix

    path = plot_confusion_matrix({"labels": ["a", "b"], "matrix": [[3, 1], [0, 2]]}, tmp_path / "cm.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="2x2"):
        plot_confusion_matrix({"labels": ["a", "b"], "matrix": [[3, 1]]}, tmp_path / "bad.png")


def test_labels_held_out_of_the_training_file_still_count() -> None:
    import datasets

    from training.classifier import label_set

    cfg = load_config(TINY_CLASSIFIER_CONFIG, ["data.validation_file=null"])
    splits = {
        "train": datasets.Dataset.from_dict({"label": ["sports", "sports", "economy"]}),
        "validation": datasets.Dataset.from_dict({"label": ["health"]}),  # its only row was held out
    }
    labels = label_set(splits, cfg)
    assert labels == ["economy", "health", "sports"]
    assert torch.isfinite(class_weights(splits["train"]["label"], labels)).all()

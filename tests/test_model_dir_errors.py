"""A model directory with a bad file is refused at load, in one line naming the directory and the file or key.

Each test copies a tiny model, damages one file the way a hand edit would (a quoted number in
``config.json``, zero beams in ``generation_config.json``, a truncated ``normalization.json``, a
``config.json`` that no longer fits the weights) and checks what a user sees: exit code 2 and a
single error line, never a traceback, a per-text failure or advice about a flag nobody set.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from helpers import one_line_error

from inference.cli import main
from inference.model_checks import BrokenModelError
from inference.normalize import load_normalization

SAMPLE_TEST = Path(__file__).resolve().parent.parent / "data" / "sample" / "test.jsonl"
ARTICLE = "تیم ملی فوتبال ایران دیشب برد."


def model_copy(source: Path, tmp_path: Path) -> Path:
    """A copy of a model directory, without the fast engines' cache another test may have left in it."""
    target = tmp_path / "model"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".khabar-cache"))
    return target


def edit_json(path: Path, change) -> None:
    """Rewrite the JSON file at ``path`` after ``change(data)`` edits the dict in place."""
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data), encoding="utf-8")


def khabar(capsys: pytest.CaptureFixture, *args: object) -> tuple[int, str]:
    """Run the CLI in this process; return its exit code and stderr."""
    code = main([str(arg) for arg in args])
    return code, capsys.readouterr().err


def classify(capsys: pytest.CaptureFixture, model: Path, *extra: str) -> tuple[int, str]:
    return khabar(capsys, "classify", ARTICLE, "--classifier", model, "--device", "cpu", *extra)


def summarize(capsys: pytest.CaptureFixture, model: Path, backend: str = "torch") -> tuple[int, str]:
    return khabar(capsys, "summarize", ARTICLE, "--summarizer", model, "--device", "cpu", "--backend", backend)


# --- 1. a wrongly typed config.json value ------------------------------------------------------------


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda config: config.update(hidden_dropout_prob="0.1"), "hidden_dropout_prob"),
        # A t5 config's classifier_dropout must be a number; the BERT classifier saved null there.
        (lambda config: config.update(model_type="t5"), "classifier_dropout"),
        (lambda config: config.update(hidden_size=True), "hidden_size"),
    ],
)
def test_a_wrongly_typed_classifier_config_value_is_one_line(tmp_path, tiny_classifier_dir, capsys, change, field):
    model = model_copy(tiny_classifier_dir, tmp_path)
    edit_json(model / "config.json", change)
    code, err = classify(capsys, model)
    assert code == 2
    one_line_error(err, str(model), "config.json", repr(field))


def test_a_wrongly_typed_summarizer_config_value_is_one_line(tmp_path, tiny_summarizer_dir, capsys) -> None:
    model = model_copy(tiny_summarizer_dir, tmp_path)
    edit_json(model / "config.json", lambda config: config.update(dropout_rate="0.1"))
    code, err = summarize(capsys, model, backend="auto")
    assert code == 2
    line = one_line_error(err, str(model), "config.json", "'dropout_rate'", '"0.1"')
    assert "float" in line  # what the field takes


def test_evaluate_refuses_a_wrongly_typed_config_value_in_one_line(tmp_path, tiny_classifier_dir, capsys) -> None:
    from training.evaluation.cli import main as evaluate

    model = model_copy(tiny_classifier_dir, tmp_path)
    edit_json(model / "config.json", lambda config: config.update(hidden_dropout_prob="0.1"))
    code = evaluate(["--model", str(model), "--data", str(SAMPLE_TEST), "-o", str(tmp_path / "report"), "--limit", "3"])
    assert code == 2
    one_line_error(capsys.readouterr().err, str(model), "config.json", "'hidden_dropout_prob'")


# --- 2. generation_config.json values checked at load -------------------------------------------------


BAD_DECODING = [
    ({"max_new_tokens": "64"}, "max_new_tokens"),
    ({"num_beams": 0}, "num_beams"),
    ({"num_beams": 2.5}, "num_beams"),
    ({"min_new_tokens": -1}, "min_new_tokens"),
    ({"no_repeat_ngram_size": -1}, "no_repeat_ngram_size"),
    ({"length_penalty": "long"}, "length_penalty"),
    ({"do_sample": "true"}, "do_sample"),
    ({"do_sample": True, "temperature": 0}, "temperature"),
    ({"do_sample": True, "top_p": 1.5}, "top_p"),
    ({"num_return_sequences": 3}, "num_return_sequences"),
]


@pytest.mark.parametrize("settings, key", BAD_DECODING)
def test_bad_saved_decoding_is_refused_at_load(tmp_path, tiny_summarizer_dir, settings, key) -> None:
    from inference import Summarizer

    model = model_copy(tiny_summarizer_dir, tmp_path)
    edit_json(model / "generation_config.json", lambda saved: saved.update(settings))
    with pytest.raises(BrokenModelError, match=rf"generation_config\.json: cannot be read as decoding .*\({key} must"):
        Summarizer.from_pretrained(model, device="cpu", backend="torch")


@pytest.mark.parametrize("backend", ["torch", "auto"])
@pytest.mark.parametrize(
    "settings, key",
    [({"max_new_tokens": "64"}, "max_new_tokens"), ({"no_repeat_ngram_size": -1}, "no_repeat_ngram_size")],
)
def test_bad_saved_decoding_is_one_line_from_the_cli(tmp_path, tiny_summarizer_dir, capsys, backend, settings, key):
    model = model_copy(tiny_summarizer_dir, tmp_path)
    edit_json(model / "generation_config.json", lambda saved: saved.update(settings))
    code, err = summarize(capsys, model, backend)
    assert code == 2
    one_line_error(err, str(model / "generation_config.json"), key)


def test_sampling_settings_are_left_alone_when_not_sampling(tmp_path, tiny_summarizer_dir) -> None:
    from inference import Summarizer

    model = model_copy(tiny_summarizer_dir, tmp_path)
    # generate reads temperature only when sampling: a greedy model may keep a leftover 0.
    edit_json(model / "generation_config.json", lambda saved: saved.update(temperature=0, num_beams=1))
    summarizer = Summarizer.from_pretrained(model, device="cpu", backend="torch")
    assert isinstance(summarizer(ARTICLE, max_new_tokens=4), str)


# --- 3. a normalization.json that is not JSON ---------------------------------------------------------


def test_a_normalization_record_that_is_not_json_names_the_file(tmp_path) -> None:
    (tmp_path / "normalization.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match=r"normalization\.json: not valid JSON \("):
        load_normalization(tmp_path)


def test_a_damaged_normalization_record_stops_the_cli_before_any_conversion(tmp_path, tiny_classifier_dir, capsys):
    pytest.importorskip("onnxruntime")
    model = model_copy(tiny_classifier_dir, tmp_path)
    (model / "normalization.json").write_text("", encoding="utf-8")
    code, err = classify(capsys, model, "--backend", "onnx")
    assert code == 2
    one_line_error(err, str(model / "normalization.json"), "not valid JSON")
    assert not (model / ".khabar-cache").exists()  # refused before the ONNX export, not after it


# --- 4. weights that do not fit config.json -----------------------------------------------------------


def test_a_binary_classifier_saved_with_the_default_label_names_loads(tmp_path) -> None:
    from inference import Classifier
    from training.tiny import build_tiny_classifier

    model = build_tiny_classifier(tmp_path / "binary", labels=["LABEL_0", "LABEL_1"])
    assert "id2label" not in json.loads((model / "config.json").read_text())  # save_pretrained leaves it out
    assert Classifier.from_pretrained(model, device="cpu").labels == ["LABEL_0", "LABEL_1"]


def test_a_classifier_config_without_labels_says_so(tmp_path, tiny_classifier_dir, capsys) -> None:
    model = model_copy(tiny_classifier_dir, tmp_path)
    edit_json(model / "config.json", lambda config: config.pop("id2label"))
    code, err = classify(capsys, model, "--backend", "torch")
    assert code == 2
    line = one_line_error(err, str(model), "config.json", "no id2label")
    assert "ignore_mismatched_sizes" not in err and "LOAD REPORT" not in err, line


@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_a_config_that_does_not_fit_the_weights_is_one_line(tmp_path, tiny_classifier_dir, capsys, backend) -> None:
    model = model_copy(tiny_classifier_dir, tmp_path)
    edit_json(model / "config.json", lambda config: config.update(hidden_size=128))
    code, err = classify(capsys, model, "--backend", backend)
    assert code == 2
    line = one_line_error(err, str(model), "weights do not fit its config.json", "[64]", "[128]")
    assert "ignore_mismatched_sizes" not in line


class _Records(logging.Handler):
    """Keeps the messages logged to it."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def load_report():
    """The messages transformers logs about loading weights (its load report table among them)."""
    logger, handler = logging.getLogger("transformers.modeling_utils"), _Records()
    logger.addHandler(handler)
    yield handler.messages
    logger.removeHandler(handler)


def test_a_refused_load_prints_no_load_report_table(tmp_path, tiny_classifier_dir, load_report) -> None:
    from transformers import AutoModelForSequenceClassification

    from inference.loading import load_weights

    model = model_copy(tiny_classifier_dir, tmp_path)
    edit_json(model / "config.json", lambda config: config.update(hidden_size=128))
    with pytest.raises(BrokenModelError, match=r"'bert\.[\w.]+' is \[64\] in the weights but config.json makes"):
        load_weights(AutoModelForSequenceClassification, str(model), torch.device("cpu"), torch.float32, None)
    assert not [message for message in load_report if "LOAD REPORT" in message]


def test_a_load_that_succeeds_still_shows_the_report(tmp_path, tiny_classifier_dir, load_report) -> None:
    # A guard for the hold-back above: weights the model does not use are noted, as transformers does.
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForSequenceClassification

    from inference.loading import load_weights

    model = model_copy(tiny_classifier_dir, tmp_path)
    tensors = load_file(model / "model.safetensors")
    tensors["unused.weight"] = torch.zeros(3)
    save_file(tensors, model / "model.safetensors", metadata={"format": "pt"})
    load_weights(AutoModelForSequenceClassification, str(model), torch.device("cpu"), torch.float32, None)
    assert [message for message in load_report if "LOAD REPORT" in message and "unused.weight" in message]


@pytest.mark.parametrize("layers", [0, -1])
@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_a_layer_count_below_one_is_one_line(tmp_path, tiny_classifier_dir, capsys, backend, layers) -> None:
    # Zero layers built a model that ran on embeddings alone (torch) or failed inside ONNX Runtime.
    model = model_copy(tiny_classifier_dir, tmp_path)
    edit_json(model / "config.json", lambda config: config.update(num_hidden_layers=layers))
    code, err = classify(capsys, model, "--backend", backend)
    assert code == 2
    one_line_error(err, str(model), f"'num_hidden_layers' to {layers}", "at least 1")


@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_a_config_with_fewer_layers_than_the_weights_is_refused(tmp_path, tiny_classifier_dir, capsys, backend):
    # transformers dropped the second layer's weights with a note and the model answered from the first alone.
    model = model_copy(tiny_classifier_dir, tmp_path)
    edit_json(model / "config.json", lambda config: config.update(num_hidden_layers=1))
    code, err = classify(capsys, model, "--backend", backend)
    assert code == 2
    one_line_error(err, str(model), "'bert.encoder.layer.1.", "num_hidden_layers to 1", "config.json")


def test_a_summarizer_config_with_fewer_decoder_layers_is_refused(tmp_path, tiny_summarizer_dir, capsys) -> None:
    model = model_copy(tiny_summarizer_dir, tmp_path)
    edit_json(model / "config.json", lambda config: config.update(num_decoder_layers=1))
    code, err = summarize(capsys, model)
    assert code == 2
    one_line_error(err, str(model), "'decoder.block.1.", "config.json")


def test_a_weight_one_layer_keeps_found_in_another_layer_is_only_a_note(tmp_path, tiny_summarizer_dir) -> None:
    # T5 keeps its relative attention bias in block 0; a converted checkpoint may hold one in block 1,
    # which the model has: unused there, but no layer is missing.
    from safetensors.torch import load_file, save_file

    from inference import Summarizer

    model = model_copy(tiny_summarizer_dir, tmp_path)
    tensors = load_file(model / "model.safetensors")
    bias = tensors["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
    tensors["encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight"] = bias.clone()
    save_file(tensors, model / "model.safetensors", metadata={"format": "pt"})
    assert isinstance(Summarizer.from_pretrained(model, device="cpu", backend="torch")(ARTICLE), str)


def test_a_hub_models_recorded_normalization_is_used(tmp_path, monkeypatch) -> None:
    # A khabar model pushed to the hub was normalized with the newest version, not its own.
    import huggingface_hub

    from inference.loading import normalization_folder, text_normalization_version
    from inference.normalize import save_normalization

    save_normalization(tmp_path, "persian", 3)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda repo, name: str(tmp_path / name))
    normalization_folder.cache_clear()
    try:
        assert text_normalization_version("someone/khabar-classifier") == 3
    finally:
        normalization_folder.cache_clear()

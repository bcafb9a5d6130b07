"""classify() and summarize(): where the model comes from, and loading it once."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading

import pytest
import torch

import inference
from inference import api
from inference.classifier import Classifier
from inference.devices import resolve_device
from inference.loading import ModelNotFoundError, resolve_model


@pytest.fixture(autouse=True)
def no_model_settings(monkeypatch, tmp_path):
    """Each test starts with no environment variables, an empty working directory and no loaded models."""
    monkeypatch.delenv("KHABAR_CLASSIFIER", raising=False)
    monkeypatch.delenv("KHABAR_SUMMARIZER", raising=False)
    monkeypatch.chdir(tmp_path)
    api.clear_cache()
    yield
    api.clear_cache()


@pytest.fixture
def load_count(monkeypatch) -> list[str]:
    """The sources ``Classifier.from_pretrained`` loaded, in order."""
    loaded: list[str] = []
    original = Classifier.from_pretrained.__func__

    def counting(cls, source, *args, **kwargs):
        loaded.append(source)
        return original(cls, source, *args, **kwargs)

    monkeypatch.setattr(Classifier, "from_pretrained", classmethod(counting))
    return loaded


def test_one_call_classifies_a_text_or_a_list_in_order(tiny_classifier_dir):
    texts = ["تیم ملی فوتبال برد", "بازار بورس", "انتخابات"]

    one = inference.classify(texts[0], model=tiny_classifier_dir, device="cpu")
    many = inference.classify(texts, model=tiny_classifier_dir, device="cpu", batch_size=2, top_k=1)

    assert set(one) == {"label", "score"}
    # The default engine may be int8 (ONNX Runtime without AMX), whose activation scales are set per
    # batch: a text's score moves by ~1e-4 with its batch-mates (and near-ties may swap labels).
    assert many[0]["score"] == pytest.approx(one["score"], abs=1e-3)
    assert len(many) == 3
    assert len(inference.classify(texts[0], model=tiny_classifier_dir, device="cpu", top_k=2)) == 2


def test_one_call_summarizes_a_text_or_a_list(tiny_summarizer_dir):
    quick = {"num_beams": 1, "max_new_tokens": 4}

    one = inference.summarize("تیم ملی فوتبال ایران برد.", model=tiny_summarizer_dir, device="cpu", **quick)
    many = inference.summarize(["خبر اول", "خبر دوم"], model=tiny_summarizer_dir, device="cpu", **quick)

    assert isinstance(one, str) and isinstance(many, list) and len(many) == 2


def test_without_a_model_the_error_says_how_to_get_one():
    with pytest.raises(ModelNotFoundError) as caught:
        inference.classify("خبر")

    message = str(caught.value)
    assert message == (
        "no classifier model: pass model=..., set KHABAR_CLASSIFIER, or train one with "
        "`khabar-train configs/classifier/tiny.yaml`"
    )
    with pytest.raises(ModelNotFoundError, match="set KHABAR_SUMMARIZER"):
        inference.summarize("خبر")


def test_the_environment_variable_names_the_model(tiny_classifier_dir, monkeypatch, load_count):
    monkeypatch.setenv("KHABAR_CLASSIFIER", str(tiny_classifier_dir))

    assert set(inference.classify("خبر", device="cpu")) == {"label", "score"}
    assert load_count == [str(tiny_classifier_dir.resolve())]


def test_models_in_the_working_directory_are_the_default(tiny_classifier_dir, tiny_summarizer_dir, tmp_path):
    shutil.copytree(tiny_classifier_dir, tmp_path / "models" / "classifier")

    assert resolve_model("classifier", None) == "models/classifier"
    assert inference.classify("خبر", device="cpu")["label"] in api.load_model("classifier", device="cpu").labels
    with pytest.raises(ModelNotFoundError, match="no summarizer model"):
        resolve_model("summarizer", None)


def test_the_argument_wins_over_the_variable_which_wins_over_the_default(tiny_classifier_dir, monkeypatch, tmp_path):
    (tmp_path / "models" / "classifier").mkdir(parents=True)
    (tmp_path / "models" / "classifier" / "config.json").write_text("{}")
    monkeypatch.setenv("KHABAR_CLASSIFIER", "env/model")

    assert resolve_model("classifier", None) == "env/model"
    assert resolve_model("classifier", str(tiny_classifier_dir)) == str(tiny_classifier_dir)
    monkeypatch.setenv("KHABAR_CLASSIFIER", "")
    assert resolve_model("classifier", None) == "models/classifier"


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("./missing", "model './missing': no such model directory"),
        ("a/b/c", "no such model directory"),
        (".", "has no config.json"),
    ],
)
def test_a_model_that_is_not_there_is_a_one_line_error(model, message):
    with pytest.raises(ModelNotFoundError, match=message):
        resolve_model("classifier", model)


def test_hub_ids_are_accepted_without_a_local_directory(monkeypatch):
    assert resolve_model("summarizer", "google/mt5-small") == "google/mt5-small"
    monkeypatch.setenv("KHABAR_CLASSIFIER", "HooshvareLab/bert-fa-base-uncased-clf-persiannews")
    assert resolve_model("classifier", None) == "HooshvareLab/bert-fa-base-uncased-clf-persiannews"


def test_an_unreachable_hub_id_is_a_one_line_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    with pytest.raises(ModelNotFoundError, match="cannot load no-such-org/no-such-model") as caught:
        inference.classify("خبر", model="no-such-org/no-such-model", device="cpu")
    assert "\n" not in str(caught.value)


def test_a_model_is_loaded_once_per_model_device_and_options(tiny_classifier_dir, tmp_path, load_count):
    relative = tiny_classifier_dir.relative_to(tiny_classifier_dir.anchor)
    (tmp_path / "root").symlink_to(tiny_classifier_dir.anchor)

    for _ in range(3):
        inference.classify("خبر", model=tiny_classifier_dir, device="cpu", top_k=2, batch_size=4)
    inference.classify("خبر", model=f"root/{relative}", device="cpu")  # the same directory, relatively
    assert len(load_count) == 1

    inference.classify("خبر", model=tiny_classifier_dir, device="cpu", long_text="truncate")
    inference.classify("خبر", model=tiny_classifier_dir, device="cpu", quantize="int8")
    assert len(load_count) == 3
    assert api.load_model("classifier", tiny_classifier_dir, "cpu") is api.load_model("classifier", tiny_classifier_dir)


def test_auto_and_the_device_it_picks_share_one_loaded_model(tiny_classifier_dir, load_count):
    inference.classify("خبر", model=tiny_classifier_dir, device="auto")
    inference.classify("خبر", model=tiny_classifier_dir, device=str(resolve_device("auto")))

    assert len(load_count) == 1


def test_clear_cache_forgets_loaded_models(tiny_classifier_dir, load_count):
    inference.classify("خبر", model=tiny_classifier_dir, device="cpu")
    api.clear_cache()
    inference.classify("خبر", model=tiny_classifier_dir, device="cpu")

    assert len(load_count) == 2


def test_auto_picks_cuda_only_when_it_is_there():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device(None).type == expected


def test_a_loaded_model_can_be_passed_as_is(tiny_classifier_dir, tiny_summarizer_dir, load_count):
    classifier = Classifier.from_pretrained(tiny_classifier_dir, device="cpu")
    assert inference.classify("خبر", model=classifier) == classifier.predict("خبر")
    with pytest.raises(TypeError, match="a summarizer is needed"):
        inference.summarize("خبر", model=classifier)
    with pytest.raises(TypeError, match="quantize, device: load options apply when model is a path"):
        inference.classify("خبر", model=classifier, quantize="int8", device="cpu")


@pytest.mark.parametrize(
    ("source", "error", "message"),
    [
        (None, TypeError, "loads from a directory path or a hub id, not NoneType"),
        (b"models/classifier", TypeError, "not bytes"),
        ("config.json", ModelNotFoundError, "is a file; give the classifier's directory"),
    ],
)
def test_loading_from_something_that_is_not_a_directory_says_so(tiny_classifier_dir, source, error, message):
    source = tiny_classifier_dir / source if source == "config.json" else source
    with pytest.raises(error, match=message):
        Classifier.from_pretrained(source, device="cpu")


def test_a_damaged_tokenizer_file_is_named(tiny_classifier_dir, tmp_path):
    model = shutil.copytree(tiny_classifier_dir, tmp_path / "model", ignore=shutil.ignore_patterns(".khabar-*"))
    (model / "tokenizer.json").write_text('{"x": ', encoding="utf-8")
    with pytest.raises(ModelNotFoundError, match="tokenizer files"):
        Classifier.from_pretrained(model, device="cpu")


def test_a_load_option_that_cannot_be_a_cache_key_is_named(tiny_classifier_dir) -> None:
    # A list raised "unhashable type: 'list'" from the model cache, naming no option.
    with pytest.raises(TypeError, match=r"quantize must be a string, number or None, got list \['int8'\]"):
        inference.classify("خبر", model=str(tiny_classifier_dir), device="cpu", quantize=["int8"])


def test_a_numpy_integer_is_a_whole_number(tiny_classifier_dir) -> None:
    import numpy as np

    topics = inference.classify("خبر ورزشی", model=str(tiny_classifier_dir), device="cpu", top_k=np.int64(2))
    assert len(topics) == 2


def test_a_default_spelled_out_is_the_same_loaded_model(tiny_classifier_dir, load_count):
    first = api.load_model("classifier", tiny_classifier_dir, "cpu")
    for option in ({"backend": "auto"}, {"quantize": None}, {"dtype": "auto"}, {"long_text": "windows"}):
        assert api.load_model("classifier", tiny_classifier_dir, "cpu", **option) is first
    assert len(load_count) == 1


def test_a_loaded_model_answers_while_another_one_loads(tiny_classifier_dir, tmp_path, monkeypatch):
    other = shutil.copytree(tiny_classifier_dir, tmp_path / "other")
    loaded = api.load_model("classifier", tiny_classifier_dir, "cpu")
    started, release = threading.Event(), threading.Event()
    original = Classifier.from_pretrained.__func__

    def slow(cls, source, *args, **kwargs):
        started.set()
        release.wait(10)  # a long conversion of the other model
        return original(cls, source, *args, **kwargs)

    monkeypatch.setattr(Classifier, "from_pretrained", classmethod(slow))
    loading = threading.Thread(target=api.load_model, args=("classifier", other, "cpu"))
    loading.start()
    try:
        assert started.wait(10)
        answered = []
        hit = threading.Thread(target=lambda: answered.append(api.load_model("classifier", tiny_classifier_dir, "cpu")))
        hit.start()
        hit.join(5)
        assert answered == [loaded]  # the cached model did not wait for the other one's load
    finally:
        release.set()
        loading.join(10)


def test_a_forked_child_does_not_inherit_a_load_in_progress():
    api._cache._lock.acquire()  # held by a parent's thread at the moment of the fork
    api._cache.after_fork()
    assert api._cache._lock.acquire(timeout=1)
    api._cache._lock.release()


FORK_AFTER_LOAD = """
import os, sys
from inference import Classifier
Classifier.from_pretrained(sys.argv[1], device="cpu", backend="torch")
for _ in range(2):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
"""


def test_forking_after_a_model_loaded_says_how_to_avoid_a_hung_child(tiny_classifier_dir):
    done = subprocess.run(
        [sys.executable, "-c", FORK_AFTER_LOAD, str(tiny_classifier_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 0, done.stderr[-500:]
    assert done.stderr.count("forking a process that has loaded a model") == 1  # once, not per fork
    assert "get_context('spawn')" in done.stderr

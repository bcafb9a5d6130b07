"""Classifier: results per input, order under length sorting, long articles, int8, text handling, bad input."""

from __future__ import annotations

import json
import random
import shutil
import sys
import types

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from inference.classifier import BF16_CPU_TOKENS_PER_BATCH, CPU_TOKENS_PER_BATCH, Classifier
from inference.devices import DeviceError, resolve_dtype
from inference.inputs import length_sorted_batches
from inference.loading import ModelNotFoundError


@pytest.fixture(scope="module")
def classifier(fitted_classifier_dir) -> Classifier:
    # float32: these tests hold answers to 1e-4 across batchings; bf16 (auto with AMX or AMD's AVX512-BF16) moves
    # padded batches by ~1e-3, and is held to its own limits in test_precision_auto.py.
    return Classifier.from_pretrained(fitted_classifier_dir, device="cpu", dtype="float32")


def test_a_string_gives_one_result_and_a_list_gives_a_list(classifier):
    one = classifier("تیم ملی فوتبال ایران دیشب برد")
    many = classifier(["بازار بورس تهران امروز", "انتخابات مجلس"])

    assert set(one) == {"label", "score"} and one["label"] in classifier.labels
    assert isinstance(one["score"], float) and 0 < one["score"] <= 1
    assert isinstance(many, list) and len(many) == 2 and all(set(r) == {"label", "score"} for r in many)
    assert classifier([]) == []


def test_shuffled_input_gives_the_same_answers_in_the_new_order(classifier, sample_articles):
    texts = sample_articles[:12]
    alone = [classifier.predict_proba(text) for text in texts]
    order = list(range(len(texts)))
    random.Random(0).shuffle(order)

    batched = classifier.predict_proba([texts[i] for i in order], batch_size=5)

    for got, i in zip(batched, order, strict=True):
        assert got == pytest.approx(alone[i], abs=1e-4)


def _recording_shapes(classifier: Classifier) -> list[tuple[int, int]]:
    """The (rows, padded length) of every forward pass ``classifier`` makes from now on."""
    shapes, forward = [], classifier.forward
    classifier.forward = lambda ids, mask: shapes.append(tuple(ids.shape)) or forward(ids, mask)
    return shapes


def test_cpu_batches_stay_within_the_token_budget_and_answers_do_not_depend_on_batching(
    fitted_classifier_dir, sample_articles
):
    classifier = Classifier.from_pretrained(fitted_classifier_dir, device="cpu", dtype="float32")
    shapes = _recording_shapes(classifier)
    texts = sample_articles[:12] + ["خبر کوتاه"] * 6

    batched = classifier.predict_proba(texts, batch_size=16)

    assert all(rows == 1 or rows * length <= CPU_TOKENS_PER_BATCH for rows, length in shapes)
    assert max(rows for rows, _ in shapes) > 1  # short texts are still batched
    one_by_one = [classifier.predict_proba(text) for text in texts]
    for got, expected in zip(batched, one_by_one, strict=True):
        assert got == pytest.approx(expected, abs=1e-5)


def test_a_bfloat16_classifier_on_a_cpu_fills_batches_up_to_its_larger_token_budget(
    fitted_classifier_dir, sample_articles
):
    classifier = Classifier.from_pretrained(fitted_classifier_dir, device="cpu", dtype="bfloat16")
    shapes = _recording_shapes(classifier)

    classifier.predict(sample_articles[:12], batch_size=16)

    padded = [rows * length for rows, length in shapes]
    assert all(rows == 1 or rows * length <= BF16_CPU_TOKENS_PER_BATCH for rows, length in shapes)
    assert max(padded) > CPU_TOKENS_PER_BATCH  # bigger than float32's batches


@given(st.lists(st.integers(1, 600), max_size=40), st.integers(1, 20), st.sampled_from([None, 512, 1024]))
def test_length_sorted_batches_cover_every_text_once_within_both_limits(lengths, batch_size, max_tokens):
    batches = list(length_sorted_batches(lengths, batch_size, max_tokens))
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    for batch in batches:
        padded = len(batch) * max(lengths[i] for i in batch)
        assert len(batch) <= batch_size and (max_tokens is None or len(batch) == 1 or padded <= max_tokens)


def test_top_k_lists_the_best_labels_best_first(classifier):
    probs = classifier.predict_proba("قیمت دلار در بازار آزاد")
    top = classifier.predict("قیمت دلار در بازار آزاد", top_k=3)
    both = classifier.predict(["خبر اول", "خبر دوم"], top_k=2)

    assert [r["label"] for r in top] == sorted(probs, key=probs.get, reverse=True)[:3]
    assert [r["score"] for r in top] == sorted((r["score"] for r in top), reverse=True)
    assert len(both) == 2 and all(len(r) == 2 for r in both)
    assert len(classifier.predict("خبر", top_k=100)) == len(classifier.labels)


def test_probabilities_cover_every_label_and_sum_to_one(classifier):
    many = classifier.predict_proba(["ورزش", "اقتصاد و بازار", "سیاست خارجی ایران"])

    for probs in many:
        assert set(probs) == set(classifier.labels)
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
    best = classifier.predict("ورزش")
    assert best["score"] == pytest.approx(max(many[0].values()))


def test_a_long_article_is_read_as_overlapping_windows_whose_logits_are_averaged(fitted_classifier_dir):
    # float32: bf16 (the auto choice with AMX or AMD's AVX512-BF16) moves a padded batch by ~4e-4.
    short = Classifier.from_pretrained(fitted_classifier_dir, device="cpu", dtype="float32")
    short.max_length = 32
    article = " ".join(["تیم ملی فوتبال ایران در بازی دیشب برد."] * 6 + ["نرخ تورم و قیمت دلار بالا رفت."] * 6)

    windows, owners = short.windows([article])
    expected = torch.stack([short.forward(*_as_batch(ids))[0] for ids in windows]).mean(dim=0)

    assert len(windows) > 2 and set(owners) == {0}
    assert max(len(ids) for ids in windows) <= 32
    # A quarter of the 30 content tokens (7) is shared: the next window starts 7 tokens back.
    assert windows[1][1:8] == windows[0][-8:-1]
    assert short.logits([article])[0].tolist() == pytest.approx(expected.tolist(), abs=1e-5)


def test_windows_read_the_end_of_an_article_and_truncate_reads_only_its_start(fitted_classifier_dir):
    # float32: exact equality below must not depend on the processor's default precision.
    windowed = Classifier.from_pretrained(fitted_classifier_dir, device="cpu", dtype="float32")
    truncated = Classifier.from_pretrained(fitted_classifier_dir, device="cpu", dtype="float32", long_text="truncate")
    windowed.max_length = truncated.max_length = 32
    start = "تیم ملی فوتبال ایران در بازی دیشب برد. " * 4
    one, other = start + "نرخ تورم بالا رفت. " * 8, start + "جشنواره فیلم فجر آغاز شد. " * 8

    assert truncated.predict_proba(one) == truncated.predict_proba(other)
    # Any difference shows the later windows were read: the tiny fitted model moves scores by only ~1e-5.
    assert windowed.predict_proba(one) != windowed.predict_proba(other)
    assert len(truncated.windows([one])[0]) == 1


def test_int8_runs_and_agrees_with_float32_on_most_articles(fitted_classifier_dir, sample_articles):
    exact = Classifier.from_pretrained(fitted_classifier_dir, device="cpu", dtype="float32")
    int8 = Classifier.from_pretrained(fitted_classifier_dir, device="cpu", quantize="int8", backend="torch")

    expected, got = exact.predict(sample_articles, top_k=2), int8(sample_articles)

    assert isinstance(int8.forward.model.classifier, torch.ao.nn.quantized.dynamic.Linear)
    # Counted where float32 decides (all 40 on the fixture; a near-tie flips under int8).
    clear = [i for i, top in enumerate(expected) if top[0]["score"] - top[1]["score"] >= 0.05]
    agree = sum(expected[i][0]["label"] == got[i]["label"] for i in clear) / max(len(clear), 1)
    assert len(clear) >= 10 and agree >= 0.9


def test_arabic_letters_and_other_digits_give_the_same_answer_as_the_normalized_text(classifier):
    raw, normalized = "كتاب عربي ١٢٣ درباره فوتبال", "کتاب عربی ۱۲۳ درباره فوتبال"
    # Without normalization the model would see other tokens, so equal answers mean it ran.
    assert classifier.tokenizer(raw).input_ids != classifier.tokenizer(normalized).input_ids

    assert classifier.predict_proba(raw) == classifier.predict_proba(normalized)


def test_the_digit_policy_recorded_in_the_model_directory_is_applied(fitted_classifier_dir, tmp_path):
    latin_dir = tmp_path / "latin"
    shutil.copytree(fitted_classifier_dir, latin_dir)
    (latin_dir / "normalization.json").write_text(json.dumps({"normalizer": "khabar", "version": 1, "digits": "latin"}))

    latin = Classifier.from_pretrained(latin_dir, device="cpu")

    assert latin.digits == "latin"
    assert latin.predict_proba("سال ۱۴۰۲") == latin.predict_proba("سال 1402")


@pytest.mark.parametrize(
    ("texts", "error", "message"),
    [
        (None, TypeError, "text at index 0: expected a string or a list"),
        (["خبر", 42], TypeError, "text at index 1: expected a string, got int"),
        (bytearray("خبر".encode()), TypeError, r"got bytearray; decode it first"),  # not a list of ints
        (memoryview(b"news"), TypeError, "got memoryview; decode it first"),
        # Iterating a table gives its column names: one answer per column, for text nobody wrote.
        (pd.DataFrame({"article": ["خبر", "خبر"]}), TypeError, r"got a DataFrame; pass one column of it"),
        (np.array(7), TypeError, "text at index 0: expected a string or a list of strings, got int"),
        (["خبر", "خبر", None], TypeError, "text at index 2: expected a string, got NoneType"),
        (["خبر", " \n\t "], ValueError, "text at index 1: empty or whitespace only"),
        ("", ValueError, "text at index 0: empty"),
        (["خبر", "\u200c\u064b\u0640"], ValueError, "text at index 1: nothing left after normalization"),
    ],
)
def test_bad_input_is_refused_naming_its_index_before_any_model_work(classifier, texts, error, message):
    calls = []
    checked = Classifier(classifier.tokenizer, lambda *batch: calls.append(batch), classifier.labels, max_length=32)

    with pytest.raises(error, match=message):
        checked.predict(texts)
    assert calls == []


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"device": "gpu"}, DeviceError, "unknown device 'gpu'"),
        ({"device": "cuda:99"}, DeviceError, "cuda:99"),
        ({"quantize": "int4"}, ValueError, "unknown quantize 'int4'"),
        ({"quantize": "int8", "dtype": "bfloat16"}, ValueError, "starts from float32"),
        ({"dtype": "int3"}, ValueError, "unknown dtype"),
        ({"long_text": "summary"}, ValueError, "long_text must be 'windows' or 'truncate'"),
    ],
)
def test_bad_load_options_are_one_line_errors(tiny_classifier_dir, options, error, message):
    with pytest.raises(error, match=message) as caught:
        Classifier.from_pretrained(tiny_classifier_dir, **options)
    assert "\n" not in str(caught.value)


def test_a_summarizer_or_a_missing_model_is_not_loaded_as_a_classifier(tiny_summarizer_dir, tmp_path):
    with pytest.raises(ModelNotFoundError, match="mt5 summarizer, not a topic classifier"):
        Classifier.from_pretrained(tiny_summarizer_dir, device="cpu")
    with pytest.raises(ModelNotFoundError, match="cannot load"):
        Classifier.from_pretrained(tmp_path, device="cpu")


def test_other_backends_get_the_same_token_ids_from_the_fast_engine_package(
    classifier, fitted_classifier_dir, monkeypatch
):
    asked = {}

    def classifier_engine(model_dir, backend, quantize):
        asked.update(model_dir=model_dir, backend=backend, quantize=quantize)
        return classifier.forward  # the torch model behind an engine's interface

    monkeypatch.setitem(sys.modules, "inference.fast", types.SimpleNamespace(classifier_engine=classifier_engine))
    fast = Classifier.from_pretrained(fitted_classifier_dir, device="auto", backend="onnx", quantize="int8")

    assert asked == {"model_dir": fitted_classifier_dir, "backend": "onnx", "quantize": "int8"}
    assert fast.device.type == "cpu"
    texts = ["تیم ملی برد", "بازار بورس امروز بالا رفت و شاخص کل رکورد زد"]
    assert fast.predict_proba(texts) == classifier.predict_proba(texts)
    with pytest.raises(ValueError, match="dtype is for backend='torch'"):
        Classifier.from_pretrained(fitted_classifier_dir, backend="onnx", dtype="bf16")


def _as_batch(ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    tensor = torch.tensor([ids])
    return tensor, torch.ones_like(tensor)


@pytest.mark.parametrize(
    ("bf16", "model_type", "expected"),
    [
        (True, "bert", torch.bfloat16),
        (False, "bert", torch.float16),
        (True, "mt5", torch.bfloat16),
        (False, "mt5", torch.float32),
    ],
)
def test_gpus_default_to_half_precision_but_never_float16_for_t5(monkeypatch, bf16, model_type, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16)

    assert resolve_dtype(None, torch.device("cuda"), model_type) == expected
    assert resolve_dtype(None, torch.device("cpu"), model_type) == torch.float32


def test_int8_is_refused_on_a_gpu():
    with pytest.raises(DeviceError, match="quantize='int8' is dynamic quantization for the CPU"):
        resolve_dtype(None, torch.device("cuda:0"), "bert", "int8")


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@needs_cuda
def test_on_a_gpu_the_classifier_runs_in_half_precision_and_agrees_with_the_cpu(fitted_classifier_dir, sample_articles):
    on_cpu = Classifier.from_pretrained(fitted_classifier_dir, device="cpu", dtype="float32")
    on_gpu = Classifier.from_pretrained(fitted_classifier_dir)  # auto picks the GPU

    expected, got = on_cpu(sample_articles), on_gpu(sample_articles)

    assert on_gpu.device.type == "cuda"
    assert on_gpu.forward.model.dtype in (torch.bfloat16, torch.float16)
    agree = sum(a["label"] == b["label"] for a, b in zip(expected, got, strict=True)) / len(expected)
    assert agree >= 0.9
    # bf16 moves this model's top scores by 0.001-0.014 (the whole model cast, measured on the CPU over
    # five fitted models); 0.05 leaves room for GPU kernels. tests/test_gpu.py tells padding faults apart.
    assert [b["score"] for b in got] == pytest.approx([a["score"] for a in expected], abs=0.05)


@pytest.mark.gpu
@needs_cuda
def test_on_a_gpu_int8_and_missing_devices_are_refused(tiny_classifier_dir):
    with pytest.raises(DeviceError, match="dynamic quantization for the CPU"):
        Classifier.from_pretrained(tiny_classifier_dir, device="cuda", quantize="int8")
    with pytest.raises(DeviceError, match="this machine has"):
        Classifier.from_pretrained(tiny_classifier_dir, device=f"cuda:{torch.cuda.device_count()}")
    assert Classifier.from_pretrained(tiny_classifier_dir, device="cuda:0", dtype="float32").forward.model.dtype == (
        torch.float32
    )


def test_a_long_list_is_read_a_few_hundred_texts_at_a_time_with_the_same_answers(classifier, monkeypatch):
    texts = [f"خبر شماره {i} " * (1 + i % 7) for i in range(11)]
    whole = classifier.logits(texts)
    passes = []
    windows = classifier.windows
    monkeypatch.setattr("inference.classifier.TEXTS_PER_PASS", 4)
    monkeypatch.setattr(classifier, "windows", lambda part: passes.append(len(part)) or windows(part))
    assert torch.allclose(classifier.logits(texts), whole, atol=1e-4)
    assert passes == [4, 4, 3]  # memory holds one pass's windows, not the whole list's


def test_answers_do_not_depend_on_the_default_dtype_another_thread_set(classifier):
    # transformers sets torch's process-wide default dtype (bf16) while a thread loads a model.
    expected = classifier.logits(["خبر ورزشی", "خبر اقتصادی " * 300])
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        during = classifier.logits(["خبر ورزشی", "خبر اقتصادی " * 300])
    finally:
        torch.set_default_dtype(before)
    assert during.dtype == torch.float32 and torch.allclose(during, expected, atol=1e-4)

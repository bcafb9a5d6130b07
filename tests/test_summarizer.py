"""Summarizer: results per input, order under length sorting, decoding defaults, truncation, text handling."""

from __future__ import annotations

import json
import logging
import random
import re
import shutil
import sys
import types

import pytest
import torch

from inference.devices import DeviceError
from inference.loading import ModelNotFoundError
from inference.summarizer import Summarizer, loses_half_spaces

# Greedy and short, so each call takes a fraction of a second on the tiny model.
QUICK = {"num_beams": 1, "max_new_tokens": 6}


@pytest.fixture(scope="module")
def summarizer(tiny_summarizer_dir) -> Summarizer:
    return Summarizer.from_pretrained(tiny_summarizer_dir, device="cpu")


def test_a_string_gives_a_string_and_a_list_gives_a_list(summarizer):
    one = summarizer("تیم ملی فوتبال ایران دیشب برد.", **QUICK)
    many = summarizer(["خبر اول درباره بازار", "خبر دوم درباره فوتبال"], **QUICK)

    assert isinstance(one, str) and one
    assert isinstance(many, list) and len(many) == 2 and all(isinstance(s, str) for s in many)
    assert summarizer([], **QUICK) == []


def test_shuffled_input_gives_the_same_summaries_in_the_new_order(summarizer, sample_articles):
    texts = [article[: 40 * (i + 1)] for i, article in enumerate(sample_articles[:6])]  # varied lengths
    alone = [summarizer(text, **QUICK) for text in texts]
    order = list(range(len(texts)))
    random.Random(1).shuffle(order)

    batched = summarizer([texts[i] for i in order], batch_size=4, **QUICK)

    assert batched == [alone[i] for i in order]


@pytest.mark.parametrize(
    ("settings", "calls"),
    [
        ({"num_beams": 1}, [16, 4]),  # greedy: 16 articles a call is the fastest measured
        ({"num_beams": 4}, [8, 8, 4]),  # 4 beams: 8 articles (32 hypotheses)
        ({}, [8, 8, 4]),  # the saved decoding's beams (4) decide
        ({"num_beams": 4, "batch_size": 5}, [5, 5, 5, 5]),  # a caller's size is kept
    ],
)
def test_articles_per_generate_call_follow_the_beams_unless_the_caller_sets_them(
    summarizer, monkeypatch, settings, calls
):
    seen = []

    def generate(sources, generation):
        seen.append(len(sources))
        return [[5] for _ in sources]

    monkeypatch.setattr(summarizer, "generate", generate)
    assert len(summarizer(["خبر امروز"] * 20, max_new_tokens=2, **settings)) == 20
    assert seen == calls


def test_a_callers_cap_bounds_the_size_the_beams_pick(summarizer):
    saved = summarizer.generation_config.num_beams or 1
    assert summarizer.batch_size_for() == summarizer.batch_size_for(saved)  # None: the saved decoding's beams
    assert (summarizer.batch_size_for(1, at_most=4), summarizer.batch_size_for(64, at_most=4)) == (4, 1)
    for bad in ({"at_most": 0}, {"at_most": -3}, {"num_beams": 0}):
        with pytest.raises(ValueError, match="must be a positive integer"):
            summarizer.batch_size_for(**bad)


def test_on_a_gpu_a_callers_batch_size_is_kept_whole(summarizer, monkeypatch):
    # On a GPU it is the floor of the token budget: --batch-size 128 must not shrink to the CPU's 8.
    monkeypatch.setattr(summarizer, "device", torch.device("cuda"))
    assert summarizer.batch_size_for(4, at_most=128) == 128
    assert summarizer.batch_size_for(4) == 8


def test_decoding_defaults_come_from_the_saved_generation_config(tiny_summarizer_dir, tmp_path):
    short_dir = tmp_path / "short"
    shutil.copytree(tiny_summarizer_dir, short_dir)
    config = json.loads((short_dir / "generation_config.json").read_text())
    (short_dir / "generation_config.json").write_text(json.dumps({**config, "max_new_tokens": 3, "num_beams": 1}))
    short = Summarizer.from_pretrained(short_dir, device="cpu")
    text = "تیم ملی فوتبال ایران دیشب در ورزشگاه آزادی برد."

    default = short(text)
    longer = short(text, max_new_tokens=8)

    # Greedy decoding: the 3-token summary is the start of the 8-token one.
    assert longer.startswith(default) and len(longer) > len(default)
    assert short.generation_config.max_new_tokens == 3  # a call's override does not stick


def test_generate_kwargs_override_the_defaults_and_unknown_ones_are_refused(summarizer):
    assert summarizer.decoding(no_repeat_ngram_size=0, length_penalty=2.0).length_penalty == 2.0
    assert summarizer.decoding(num_beams=None).num_beams == summarizer.generation_config.num_beams

    with pytest.raises(TypeError, match="unknown generation option.*beam_count"):
        summarizer("خبر", beam_count=2)
    with pytest.raises(ValueError, match="max_new_tokens must be a positive integer"):
        summarizer("خبر", max_new_tokens=0)


@pytest.mark.parametrize("setting", ["max_new_tokens", "min_new_tokens", "num_beams"])
def test_a_decoding_past_its_limit_is_refused_before_any_memory_is_taken(summarizer, setting):
    # 10**8 new tokens once made a torch beam search allocate until the process was killed.
    with pytest.raises(ValueError, match=f"{setting} must be at most"):
        summarizer("خبر", **{setting: 10**8})


@pytest.mark.parametrize(
    "options, message",
    [
        ({"max_length": 100_000}, "max_length must be at most 2048"),  # a model saving no max_new_tokens
        ({"no_repeat_ngram_size": -1}, "no_repeat_ngram_size must be a whole number of at least 0, got -1"),
        ({"min_new_tokens": -5}, "min_new_tokens must be a whole number from 0 to 2048, got -5"),
        ({"length_penalty": "x"}, 'length_penalty must be a number, got "x"'),
        ({"do_sample": True, "top_p": 2.0}, "top_p must be a number above 0 and at most 1, got 2.0"),
        ({"return_dict_in_generate": True}, "return_dict_in_generate is not supported"),
        ({"decoder_start_token_id": 10**9}, "decoder_start_token_id must be a token id from 0 to"),
    ],
)
@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_a_bad_decoding_option_is_refused_naming_it(tiny_summarizer_dir, backend, options, message):
    # Each failed deep inside generate or an engine (an IndexError, a pybind signature dump) or ran unbounded.
    summarizer = Summarizer.from_pretrained(tiny_summarizer_dir, device="cpu", backend=backend)
    with pytest.raises(ValueError, match=re.escape(message)):
        summarizer("تیم ملی فوتبال ایران برد", **options)


def test_long_articles_are_truncated_and_counted_once_per_call(summarizer, caplog):
    long_article = "تیم ملی فوتبال ایران دیشب برد. " * 400

    with caplog.at_level(logging.INFO, logger="inference.summarizer"):
        ids = summarizer.encode(["خبر کوتاه", long_article, long_article])
        summarizer([long_article, "خبر کوتاه"], **QUICK)

    assert [len(x) for x in ids][1:] == [summarizer.max_length] * 2
    assert ids[1][-1] == summarizer.tokenizer.eos_token_id
    assert [r.getMessage() for r in caplog.records] == [
        f"2 of 3 texts were longer than {summarizer.max_length} tokens and were truncated",
        f"1 of 2 texts were longer than {summarizer.max_length} tokens and were truncated",
    ]


def test_arabic_letters_give_the_same_summary_as_the_normalized_text(summarizer):
    raw, normalized = "كتاب عربي درباره فوتبال ١٤٠٢", "کتاب عربی درباره فوتبال ۱۴۰۲"
    assert summarizer.tokenizer(raw).input_ids != summarizer.tokenizer(normalized).input_ids

    assert summarizer(raw, **QUICK) == summarizer(normalized, **QUICK)


@pytest.mark.parametrize(
    ("texts", "error", "message"),
    [
        (None, TypeError, "text at index 0: expected a string or a list"),
        (["خبر", b"bytes"], TypeError, "text at index 1: expected a string, got bytes"),
        (["خبر", "خبر", ""], ValueError, "text at index 2: empty or whitespace only"),
        (["\u064b\u200d"], ValueError, "text at index 0: nothing left after normalization"),
    ],
)
def test_bad_input_is_refused_naming_its_index_before_any_model_work(summarizer, texts, error, message):
    calls = []
    checked = Summarizer(
        summarizer.tokenizer, lambda *batch: calls.append(batch), summarizer.generation_config, max_length=32
    )

    with pytest.raises(error, match=message):
        checked.summarize(texts)
    assert calls == []


@pytest.mark.parametrize(
    ("version", "expected"),
    [(3, "رسانه\u200cها می\u200cگویند"), (2, "رسانه\u200cها می\u200cگویند"), (1, "رسانه ها می گویند")],
)
def test_summaries_get_back_the_half_spaces_the_tokenizer_reads_as_spaces(summarizer, version, expected):
    # mT5's tokenizer (and the tiny one) reads a ZWNJ as a space, so a model trained on «رسانه‌ها» writes
    # «رسانه ها»; models normalized with v2 on get the half-space repairs their training text had.
    written = summarizer.tokenizer("رسانه\u200cها می\u200cگویند", add_special_tokens=False).input_ids
    model = Summarizer(
        summarizer.tokenizer,
        lambda sources, generation: [written] * len(sources),
        summarizer.generation_config,
        max_length=32,
        normalization_version=version,
    )

    assert model(["خبر", "خبر دیگر"]) == [expected, expected]


def test_a_summary_has_single_spaces_between_words(summarizer):
    # "▁" then "▁ی": the lone word-start piece of mT5-style vocabularies decodes to a double space.
    first, second = sorted(p for p in summarizer.tokenizer.get_vocab() if p.startswith("▁") and len(p) > 3)[:2]
    written = summarizer.tokenizer.convert_tokens_to_ids([first, "▁", second, "▁", "▁"])
    model = Summarizer(
        summarizer.tokenizer,
        lambda sources, generation: [written] * len(sources),
        summarizer.generation_config,
        max_length=32,
        normalization_version=1,  # spaces only: no half-space repair between the two words
    )

    assert model("خبر") == f"{first[1:]} {second[1:]}"


def test_a_tokenizer_that_keeps_half_spaces_is_left_to_write_them():
    class EveryCharacter:  # a tokenizer with a token for each character, ZWNJ included
        def __call__(self, text, add_special_tokens=True):
            return types.SimpleNamespace(input_ids=[ord(char) for char in text])

        def decode(self, ids, skip_special_tokens=False):
            return "".join(map(chr, ids))

    assert not loses_half_spaces(EveryCharacter())


def test_int8_runs_on_the_cpu(tiny_summarizer_dir):
    int8 = Summarizer.from_pretrained(tiny_summarizer_dir, device="cpu", quantize="int8", backend="torch")

    assert isinstance(int8("تیم ملی فوتبال ایران برد.", **QUICK), str)
    linears = [m for m in int8.generate.model.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]
    assert linears


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"dtype": "float16"}, ValueError, "float16 breaks mt5 models"),
        ({"dtype": torch.float16}, ValueError, "float16 breaks mt5 models"),
        ({"device": "tpu"}, DeviceError, "unknown device 'tpu'"),
        ({"device": "cuda:99"}, DeviceError, "cuda:99"),
    ],
)
def test_bad_load_options_are_one_line_errors(tiny_summarizer_dir, options, error, message):
    with pytest.raises(error, match=message) as caught:
        Summarizer.from_pretrained(tiny_summarizer_dir, **{"device": "cpu", **options})
    assert "\n" not in str(caught.value)


def test_a_classifier_is_not_loaded_as_a_summarizer(tiny_classifier_dir):
    with pytest.raises(ModelNotFoundError, match="bert model, not a sequence-to-sequence summarizer"):
        Summarizer.from_pretrained(tiny_classifier_dir, device="cpu")


def test_other_backends_get_token_ids_and_plain_decoding_settings(summarizer, tiny_summarizer_dir, monkeypatch):
    asked = {}

    class Engine:  # the torch model behind a fast engine's interface
        def generate(self, input_ids, generation):
            asked["generation"] = generation
            return summarizer.generate(input_ids, summarizer.decoding(**generation))

    def summarizer_engine(model_dir, backend, quantize):
        asked.update(model_dir=model_dir, backend=backend, quantize=quantize)
        return Engine()

    monkeypatch.setitem(sys.modules, "inference.fast", types.SimpleNamespace(summarizer_engine=summarizer_engine))
    fast = Summarizer.from_pretrained(tiny_summarizer_dir, backend="ctranslate2", quantize="int8")
    texts = ["تیم ملی برد", "بازار بورس امروز بالا رفت و شاخص کل رکورد زد"]

    assert fast(texts, **QUICK) == summarizer(texts, **QUICK)
    assert asked["model_dir"] == tiny_summarizer_dir and asked["backend"] == "ctranslate2"
    assert asked["generation"] == {
        "num_beams": 1,
        "max_new_tokens": 6,
        "min_new_tokens": None,
        "no_repeat_ngram_size": 3,
        "length_penalty": 1.0,
        "early_stopping": True,
    }
    with pytest.raises(DeviceError):  # the fast engines are CPU engines
        Summarizer.from_pretrained(tiny_summarizer_dir, device="cuda", backend="ctranslate2")


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@needs_cuda
def test_on_a_gpu_the_summarizer_runs_without_float16(tiny_summarizer_dir):
    on_gpu = Summarizer.from_pretrained(tiny_summarizer_dir)  # auto picks the GPU

    assert on_gpu.device.type == "cuda"
    assert on_gpu.generate.model.dtype == (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32)
    assert isinstance(on_gpu("تیم ملی فوتبال ایران برد.", **QUICK), str)
    assert len(on_gpu(["خبر اول", "خبر دوم درباره بازار"], **QUICK)) == 2
    with pytest.raises(ValueError, match="float16 breaks mt5"):
        Summarizer.from_pretrained(tiny_summarizer_dir, device="cuda", dtype="fp16")


def test_more_than_one_summary_per_text_is_refused_not_misaligned(summarizer):
    with pytest.raises(ValueError, match="num_return_sequences must be 1"):
        summarizer(["خبر", "خبر دیگر"], num_return_sequences=2, num_beams=2)


def test_a_summarizer_whose_tokenizer_is_only_a_sentencepiece_model_loads(tiny_summarizer_dir, tmp_path):
    # The hub's google/mt5-small holds spiece.model and no tokenizer.json; transformers 5 reads it
    # through protobuf (a dependency for that reason). The same pieces as the tiny tokenizer's.
    from training.tiny import _sentencepiece, sample_texts

    hub_like = shutil.copytree(tiny_summarizer_dir, tmp_path / "mt5", ignore=shutil.ignore_patterns(".khabar-*"))
    (hub_like / "tokenizer.json").unlink()
    (hub_like / "spiece.model").write_bytes(
        _sentencepiece(sample_texts(), 4000, "unigram", "nmt_nfkc").SerializeToString()
    )

    loaded = Summarizer.from_pretrained(hub_like, device="cpu", backend="torch")
    reference = Summarizer.from_pretrained(tiny_summarizer_dir, device="cpu", backend="torch")

    text = "رسانه\u200cها از بازی تیم ملی فوتبال ایران خبر دادند"
    assert loaded.tokenizer.tokenize(text) == reference.tokenizer.tokenize(text)
    assert loaded(text, **QUICK) == reference(text, **QUICK)


def test_numpy_numbers_are_taken_as_decoding_options(summarizer):
    import numpy as np

    options = {"num_beams": np.int64(2), "max_new_tokens": np.int64(4), "length_penalty": np.float32(1.0)}
    assert isinstance(summarizer("تیم ملی فوتبال ایران برد", **options, do_sample=np.False_), str)

"""dtype="auto" on the CPU: bf16 only where the processor runs it fast, and the answers kept."""

from __future__ import annotations

import json
import logging
import math

import pytest
import torch

from inference import Classifier, Summarizer
from inference.cli import main
from inference.precision import (
    BENCH_ISAS,
    CpuCapabilities,
    auto_backend,
    auto_cpu_choice,
    auto_cpu_dtype,
    capabilities_from_flags,
    cpu_capabilities,
    isa_limit,
)
from training.metrics import rouge

SAPPHIRE_RAPIDS = CpuCapabilities(amx=True, avx512_bf16=True, avx512_vnni=True, avx512=True, avx2=True)
CPU = torch.device("cpu")


@pytest.fixture
def no_isa_limit(monkeypatch):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)


@pytest.fixture(scope="module")
def references(sample_dir) -> list[dict]:
    with (sample_dir / "test.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def all_articles(sample_dir) -> list[str]:
    """Every bundled article (336): on the 40 of the test split one flipped near-tie is 2.5%."""
    return [row["article"] for split in ("train", "validation", "test") for row in _rows(sample_dir / f"{split}.jsonl")]


def _rows(path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _auto_is_bf16() -> bool:
    return auto_cpu_choice("classifier", cpu_capabilities(), isa_limit()).dtype == torch.bfloat16


ZEN4 = CpuCapabilities(amx=False, avx512_bf16=True, avx512_vnni=True, avx512=True, avx2=True, vendor="AuthenticAMD")


@pytest.mark.parametrize("isa", BENCH_ISAS)
def test_bf16_only_where_it_was_measured_faster(isa):
    # ParsBERT-base, bf16 / fp32: Xeon with AMX 4.4x, the same Xeon capped at AVX512_CORE_BF16
    # 0.78x; AMD Zen 4 (AVX512-BF16, no AMX) 1.8x, capped at AVX512_CORE_VNNI 0.45x, at AVX2 0.27x.
    xeon = auto_cpu_choice("classifier", SAPPHIRE_RAPIDS, isa_limit=isa)
    assert xeon.dtype == (torch.bfloat16 if isa == "AVX512_CORE_AMX" else torch.float32)
    assert isa in xeon.reason
    zen4 = auto_cpu_choice("classifier", ZEN4, isa_limit=isa)
    assert zen4.dtype == (torch.bfloat16 if isa in ("AVX512_CORE_BF16", "AVX512_CORE_AMX") else torch.float32)


def test_capabilities_read_from_cpu_flags():
    flags = {"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}
    zen4 = capabilities_from_flags(flags, vendor="AuthenticAMD")
    assert (zen4.amx, zen4.isa, zen4.amd) == (False, "AVX512_CORE_BF16", True)
    assert auto_cpu_choice("summarizer", zen4).dtype == torch.bfloat16
    cooper_lake = capabilities_from_flags(flags, vendor="GenuineIntel")  # never measured natively: float32
    assert auto_cpu_choice("summarizer", cooper_lake).dtype == torch.float32
    assert "measured slower in bfloat16 on Intel" in auto_cpu_choice("summarizer", cooper_lake).reason
    ice_lake = capabilities_from_flags({"avx2", "avx512f", "avx512_vnni"}, vendor="GenuineIntel")
    assert auto_cpu_choice("summarizer", ice_lake).dtype == torch.float32


def test_onednn_isa_limit_is_honoured(monkeypatch, no_isa_limit):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert isa_limit() == "AVX2"
    assert auto_cpu_dtype("classifier") == torch.float32  # whatever this machine has


def test_auto_is_the_default_dtype_and_says_what_it_chose(fitted_classifier_dir, caplog):
    with caplog.at_level(logging.INFO, logger="inference.precision"):
        classifier = Classifier.from_pretrained(fitted_classifier_dir, device="cpu", backend="torch")
    expected = "bfloat16" if _auto_is_bf16() else "float32"
    assert classifier.precision == f"torch {expected} (auto)"
    assert next(classifier.forward.model.parameters()).dtype == getattr(torch, expected)
    line = next(r.getMessage() for r in caplog.records if "(dtype=auto)" in r.getMessage())
    assert expected in line and "oneDNN" in line


def test_explicit_dtype_wins(fitted_classifier_dir, tiny_summarizer_dir):
    classifier = Classifier.from_pretrained(fitted_classifier_dir, device="cpu", dtype="float32")
    assert classifier.precision == "torch float32"
    assert next(classifier.forward.model.parameters()).dtype == torch.float32
    summarizer = Summarizer.from_pretrained(tiny_summarizer_dir, device="cpu", dtype="bfloat16")
    assert summarizer.precision == "torch bfloat16"


DECIDED_MARGIN = 0.01  # probability between float32's first and second topic


@pytest.mark.parametrize("dtype", ["auto", "bfloat16"])
def test_topics_agree_with_float32(fitted_classifier_dir, all_articles, dtype):
    # bfloat16 is what "auto" picks with AMX or AMD's AVX512-BF16; checked on every machine, so an older
    # CPU (where auto is float32 and agrees trivially) still guards the bf16 numerics.
    texts = all_articles
    reference = Classifier.from_pretrained(fitted_classifier_dir, device="cpu", dtype="float32")
    other = Classifier.from_pretrained(fitted_classifier_dir, device="cpu", dtype=dtype)
    want, got = reference.predict(texts, top_k=2), other.predict(texts)
    assert all(math.isfinite(p["score"]) for p in got)
    # A tiny model can be near-uniform on some articles (none of the 336 on the fixture, 18 with an
    # earlier vocabulary): float32 itself puts two topics within 1% there, near bfloat16's resolution,
    # and a flip between them says nothing.
    # Agreement counts the articles float32 decides; 100 of them at least, so one flip is the most
    # the test forgives.
    decided = [i for i, top in enumerate(want) if top[0]["score"] - top[1]["score"] >= DECIDED_MARGIN]
    assert len(decided) >= 100
    agreement = sum(want[i][0]["label"] == got[i]["label"] for i in decided) / len(decided)
    assert agreement >= 0.99


def test_bf16_topics_do_not_depend_on_batching(fitted_classifier_dir, references):
    texts = [row["article"] for row in references[:12]]
    classifier = Classifier.from_pretrained(fitted_classifier_dir, device="cpu", dtype="bfloat16")
    batched = classifier.predict_proba(texts, batch_size=5)
    for got, text in zip(batched, texts, strict=True):
        alone = classifier.predict_proba(text)
        assert max(alone, key=alone.get) == max(got, key=got.get)
        assert got == pytest.approx(alone, abs=2e-2)


@pytest.mark.parametrize("dtype", ["auto", "bfloat16"])
def test_summaries_score_as_float32_does(tiny_summarizer_dir, references, dtype):
    rows = references[:12]
    texts, gold = [row["article"] for row in rows], [row["summary"] for row in rows]
    settings = {"num_beams": 4, "max_new_tokens": 16}
    reference = Summarizer.from_pretrained(tiny_summarizer_dir, device="cpu", dtype="float32")(texts, **settings)
    summaries = Summarizer.from_pretrained(tiny_summarizer_dir, device="cpu", dtype=dtype)(texts, **settings)
    assert all(summaries) and not any("nan" in s.lower() for s in summaries)
    assert abs(rouge(summaries, gold)["rouge1"] - rouge(reference, gold)["rouge1"]) <= 0.5


def test_auto_backend_takes_the_fastest_installed_engine_for_the_processor(monkeypatch):
    def engine(kind, isa="AVX2", local=True, dtype=None, model_type="", device=CPU):
        return auto_backend(kind, device, local, dtype, model_type, isa).backend

    assert engine("classifier", local=False) == "torch"  # engines need a directory
    assert engine("summarizer", dtype="float32") == "torch"  # a dtype is torch's
    assert engine("summarizer", device=torch.device("cuda")) == "torch"
    assert engine("summarizer", model_type="bart") == "torch"  # conversion untested on it
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)  # the fast extra not installed
    assert engine("classifier") == engine("summarizer") == "torch"
    monkeypatch.setattr("importlib.util.find_spec", lambda name: object())  # both engines installed
    assert engine("summarizer") == engine("summarizer", "AVX512_CORE_AMX") == "ctranslate2"
    assert engine("classifier", "AVX512_CORE_VNNI", dtype="auto", model_type="bert") == "onnx"
    assert engine("classifier", "AVX512_CORE_AMX", model_type="bert") == "torch"  # bf16 on AMX is faster
    assert auto_backend("summarizer", CPU, True, None, "mt5", "AVX2", ["repetition_penalty"]).backend == "torch"


def test_auto_keeps_a_summarizer_on_torch_when_its_saved_decoding_needs_it(tiny_summarizer_dir, tmp_path, caplog):
    import shutil

    model_dir = shutil.copytree(
        tiny_summarizer_dir, tmp_path / "summarizer", ignore=shutil.ignore_patterns(".khabar-*")
    )
    saved = json.loads((model_dir / "generation_config.json").read_text())
    (model_dir / "generation_config.json").write_text(json.dumps({**saved, "repetition_penalty": 1.3}))
    with caplog.at_level(logging.INFO):
        summarizer = Summarizer.from_pretrained(model_dir, device="cpu")

    assert summarizer.precision.startswith("torch")  # the engine would decode without the penalty
    assert "saved decoding uses repetition_penalty" in caplog.text


@pytest.mark.parametrize("backend", ["ctranslate2", "fast"])
def test_a_fast_engine_asked_for_a_summarizer_whose_saved_decoding_it_would_ignore_is_refused(
    tiny_summarizer_dir, tmp_path, backend
):
    import shutil

    model_dir = shutil.copytree(
        tiny_summarizer_dir, tmp_path / "summarizer", ignore=shutil.ignore_patterns(".khabar-*")
    )
    saved = json.loads((model_dir / "generation_config.json").read_text())
    (model_dir / "generation_config.json").write_text(json.dumps({**saved, "do_sample": True, "top_k": 5}))

    with pytest.raises(ValueError, match=f"sets do_sample, top_k, which the {backend} backend cannot apply"):
        Summarizer.from_pretrained(model_dir, device="cpu", backend=backend)
    assert not (model_dir / ".khabar-cache").exists(), "refused before any conversion"


def test_an_unknown_load_option_is_refused_before_anything_is_read(tmp_path):
    with pytest.raises(TypeError, match="Summarizer.from_pretrained: .*long_text"):
        Summarizer.from_pretrained(tmp_path / "missing", long_text="truncate")


def test_auto_is_the_default_backend_and_says_which_engine_it_chose(
    fitted_classifier_dir, tiny_summarizer_dir, tmp_path, monkeypatch, caplog
):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("ctranslate2")
    import shutil

    fresh = shutil.ignore_patterns(".khabar-cache")  # conversions land beside the model
    classifier_dir = shutil.copytree(fitted_classifier_dir, tmp_path / "classifier", ignore=fresh)
    summarizer_dir = shutil.copytree(tiny_summarizer_dir, tmp_path / "summarizer", ignore=fresh)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # a processor without AMX, whatever this one has
    with caplog.at_level(logging.INFO):
        classifier = Classifier.from_pretrained(classifier_dir, device="cpu")
        summarizer = Summarizer.from_pretrained(summarizer_dir, device="cpu")

    assert (classifier.precision, summarizer.precision) == ("onnx int8 (auto)", "ctranslate2 int8 (auto)")
    assert "classifier runs on onnx (backend=auto)" in caplog.text
    assert classifier("تیم ملی فوتبال ایران برد")["label"] in classifier.labels
    with pytest.raises(ValueError, match="cannot apply repetition_penalty; .*backend='torch'"):
        summarizer("تیم ملی فوتبال ایران برد", repetition_penalty=1.5)


def test_predict_summary_line_names_the_precision(fitted_classifier_dir, tmp_path, capsys):
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"id": 1, "article": "تیم ملی فوتبال ایران دیشب برد"}) + "\n", encoding="utf-8")
    args = ["predict", str(source), "-o", str(tmp_path / "out.jsonl"), "--tasks", "topic"]
    assert main([*args, "--classifier", str(fitted_classifier_dir), "--dtype", "float32"]) == 0
    assert "classifier torch float32" in capsys.readouterr().err


def test_a_summarizer_without_saved_decoding_still_gets_the_fast_engine_under_auto(tiny_summarizer_dir):
    from transformers import AutoConfig, GenerationConfig

    from inference.backends import unfollowed_settings

    implied = GenerationConfig.from_model_config(AutoConfig.from_pretrained(tiny_summarizer_dir))
    assert {"use_cache", "output_attentions"} & set(implied.to_diff_dict())  # what the model config brings
    assert unfollowed_settings(implied.to_diff_dict()) == []  # none of it changes the text

"""The offline tiny models load with plain transformers Auto classes and run."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForSeq2SeqLM, AutoModelForSequenceClassification, AutoTokenizer

from training.tiny import main as tiny_models_main


def test_tiny_classifier_loads_with_auto_classes(tiny_classifier_dir) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_classifier_dir)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_classifier_dir)
    assert model.config.num_hidden_layers == 2 and model.config.hidden_size <= 64
    assert "sports" in model.config.label2id
    batch = tokenizer(["تیم ملی فوتبال برد", "بازار ارز"], padding=True, return_tensors="pt")
    with torch.inference_mode():
        logits = model(**batch).logits
    assert logits.shape == (2, len(model.config.id2label))
    assert (tiny_classifier_dir / "model.safetensors").is_file()
    assert json.loads((tiny_classifier_dir / "normalization.json").read_text())["normalizer"] == "khabar"


def test_tiny_tokenizer_covers_persian(tiny_classifier_dir) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_classifier_dir)
    ids = tokenizer("تیم ملی فوتبال ایران")["input_ids"]
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == "تیم ملی فوتبال ایران"


def test_tiny_summarizer_loads_and_generates(tiny_summarizer_dir) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_summarizer_dir)
    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_summarizer_dir)
    assert model.config.num_layers == 2 and model.config.num_decoder_layers == 2 and model.config.d_model <= 64
    assert model.generation_config.num_beams == 4 and model.generation_config.no_repeat_ngram_size == 3
    assert tokenizer.decode(tokenizer("خبر امروز")["input_ids"], skip_special_tokens=True) == "خبر امروز"
    inputs = tokenizer(["خبر امروز درباره اقتصاد است"], return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=5, num_beams=1)
    assert out.shape[0] == 1 and out.shape[1] <= 6


REPRODUCE = """
import hashlib, json, sys
from training.tiny import sample_texts, train_unigram_tokenizer, train_wordpiece_tokenizer
texts = sample_texts()[:200]
for train in (train_wordpiece_tokenizer, train_unigram_tokenizer):
    vocab = sorted(train(texts, vocab_size=1500).get_vocab().items())
    print(len(vocab), hashlib.sha256(json.dumps(vocab).encode()).hexdigest())
"""


def test_tiny_tokenizers_are_reproducible_from_process_to_process() -> None:
    # The tests' fixtures and the demo train these afresh; the same texts must give the same pieces
    # in the same ids in every process (hash maps seeded per process made them differ), or every
    # figure measured on a tiny model moves from one build to the next.
    import subprocess
    import sys

    from helpers import ROOT

    runs = [
        subprocess.run([sys.executable, "-c", REPRODUCE], capture_output=True, text=True, cwd=ROOT, check=True).stdout
        for _ in range(2)
    ]
    assert runs[0] == runs[1]
    assert all(int(line.split()[0]) > 1000 for line in runs[0].splitlines())


def test_the_tiny_wordpiece_vocabulary_holds_only_bert_specials() -> None:
    from training.tiny import sample_texts, train_wordpiece_tokenizer

    vocab = train_wordpiece_tokenizer(sample_texts()[:200], vocab_size=1500).get_vocab()
    assert not [token for token in vocab if "<" in token and ">" in token]  # no sentencepiece control pieces


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        (("config.json", "model.safetensors", "config.yaml", "training_log.jsonl"), "holds a trained model"),
        (("notes.txt",), "holds files that are not a model"),
        (("config.json", "big.safetensors"), "holds a trained model"),  # a hub download: no run files
    ],
)
def test_tiny_models_never_replace_a_trained_model_or_other_files(tmp_path, capsys, files, problem) -> None:
    folder = tmp_path / "summarizer"
    folder.mkdir()
    for name in files:
        (folder / name).write_text("kept")
    if "big.safetensors" in files:
        with open(folder / "big.safetensors", "r+b") as weights:
            weights.truncate(30 << 20)  # sparse: a full-size model's weights, without writing them
            weights.seek(0)
            weights.write(b"kept")
    assert tiny_models_main(["--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{folder} {problem}" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summarizer"]  # the classifier was not built either
    assert all((folder / name).read_bytes()[:4] == b"kept" for name in files)

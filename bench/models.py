"""Real-size architectures with random weights: the work of the real models, without the hub.

Random weights cost exactly what trained ones do per token; only the output text is meaningless,
which is why the benchmark forces every summary to the same length. The tokenizers are trained on
the Persian news articles, so the articles split into about as many tokens as with the real ones.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch
from transformers import BertConfig, BertForSequenceClassification, GenerationConfig, MT5Config
from transformers import MT5ForConditionalGeneration as MT5

from inference.normalize import save_normalization
from training.config import GenerationSettings
from training.tiny import train_unigram_tokenizer, train_wordpiece_tokenizer

# HooshvareLab/bert-fa-base-uncased
PARSBERT_BASE = {
    "vocab_size": 100_000,
    "num_hidden_layers": 12,
    "hidden_size": 768,
    "num_attention_heads": 12,
    "intermediate_size": 3_072,
    "max_position_embeddings": 512,
}
# google/mt5-small
MT5_SMALL = {
    "vocab_size": 250_112,
    "d_model": 512,
    "d_kv": 64,
    "d_ff": 1_024,
    "num_layers": 8,
    "num_decoder_layers": 8,
    "num_heads": 6,
    "feed_forward_proj": "gated-gelu",
}
TOPICS = ["culture-art", "economy", "health", "international", "politics", "science-tech", "society", "sports"]
DONE = "bench-model.json"
# The shipped decoding (beam 4, no-repeat 3) with the length fixed: min = max = 48 new tokens.
SUMMARY_DECODING = GenerationSettings(min_new_tokens=48, max_new_tokens=48).decoding()


def default_work_folder() -> Path:
    """Where the benchmarks build their models: the user cache's ``bench``, else ``.bench`` here (no home).

    Example:
        >>> default_work_folder().name in ("bench", ".bench")
        True
    """
    from inference.fast.cache import user_cache_dir

    try:
        return user_cache_dir() / "bench"
    except RuntimeError:  # HOME unset or empty
        return Path(".bench").absolute()


def build_classifier(out: Path, texts: list[str]) -> Path:
    """A ParsBERT-base-sized topic classifier with random weights in ``out`` (reused when present).

    Example:
        >>> PARSBERT_BASE["hidden_size"] * PARSBERT_BASE["num_hidden_layers"]
        9216
    """
    if (out / DONE).is_file():
        return out
    tokenizer = train_wordpiece_tokenizer(texts, vocab_size=PARSBERT_BASE["vocab_size"])
    config = BertConfig(
        **PARSBERT_BASE,
        pad_token_id=tokenizer.pad_token_id,
        id2label=dict(enumerate(TOPICS)),
        label2id={label: i for i, label in enumerate(TOPICS)},
    )
    torch.manual_seed(0)
    model = BertForSequenceClassification(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return _finish(out, parameter_count(model))


def build_summarizer(out: Path, texts: list[str], tokenizer_vocab: int = 32_000) -> Path:
    """An mT5-small-sized summarizer with random weights and an untied output layer in ``out``.

    transformers 5 builds mT5 from a config with the output layer tied to the embeddings (172M
    parameters); google/mt5-small has its own 250k x 512 output layer (300M). Saving a separate
    ``lm_head.weight`` makes ``from_pretrained`` load it untied, so the work matches the real model.

    Example:
        >>> MT5_SMALL["vocab_size"] * MT5_SMALL["d_model"] * 4 // 2**20  # MB of fp32 output layer
        488
    """
    if (out / DONE).is_file():
        return out
    tokenizer = train_unigram_tokenizer(texts, vocab_size=tokenizer_vocab)
    config = MT5Config(**MT5_SMALL, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    torch.manual_seed(0)
    model = MT5(config)
    lm_head = torch.randn_like(model.shared.weight) * config.d_model**-0.5
    # Rows past the trained tokenizer's vocabulary score 0 while some real token scores above 0, so the
    # summaries decode to real Persian tokens; the layer keeps its full 250k-row size and cost.
    lm_head[len(tokenizer) :] = 0
    model.lm_head.weight = torch.nn.Parameter(lm_head)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=0, pad_token_id=0, eos_token_id=1, **SUMMARY_DECODING
    )
    # Both weights are saved on purpose; silence the "tied in config but different" warning.
    logging.getLogger("transformers.modeling_utils").setLevel(logging.ERROR)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return _finish(out, parameter_count(model))


def _finish(out: Path, parameters: int) -> Path:
    save_normalization(out)
    (out / DONE).write_text(json.dumps({"parameters": parameters}) + "\n")
    return out


def parameter_count(model: torch.nn.Module) -> int:
    """Distinct parameters of ``model`` (tied ones once), to check the architecture built is real-size.

    Example:
        >>> parameter_count(torch.nn.Linear(2, 3))
        9
    """
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def with_output_vocabulary(model_dir: Path, out: Path) -> Path:
    """A copy of ``model_dir`` (hard links, no extra disk) with the output vocabulary of the training articles.

    The vocabulary lists every token of the train split's articles and summaries, as a user would
    write it after training (``python -m inference.fast.vocab``).

    Example:
        >>> import tempfile
        >>> from training.tiny import build_tiny_summarizer
        >>> copy = with_output_vocabulary(build_tiny_summarizer(tempfile.mkdtemp()), Path(tempfile.mkdtemp()) / "v")
        >>> vocabulary_size(copy) > 100
        True
    """
    from bench.workloads import read_articles, read_summaries
    from inference.fast.vocab import OUTPUT_VOCAB_FILE, write_output_vocabulary

    if (out / OUTPUT_VOCAB_FILE).is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    for path in model_dir.iterdir():
        if path.is_file() and not (out / path.name).exists():
            os.link(path, out / path.name)
    write_output_vocabulary(out, read_articles("train") + read_summaries("train"))
    return out


def vocabulary_size(model_dir: Path) -> int | None:
    """How many tokens the output vocabulary of ``model_dir`` holds (``None``: the full vocabulary).

    Example:
        >>> vocabulary_size(Path("/nonexistent")) is None
        True
    """
    from inference.fast.vocab import read_output_vocabulary

    ids = read_output_vocabulary(model_dir)
    return len(ids) if ids is not None else None

"""The summarizer on CTranslate2: convert an mT5 directory once, then decode with int8 weights.

Why CTranslate2: it runs mT5 with int8 weights, caches keys and values without the per-step
reordering copies that dominate beam search in ``transformers`` on CPU, and batches beams well.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

from inference.fast.cache import open_cached
from inference.fast.deps import require
from inference.fast.vocab import OUTPUT_VOCAB_FILE, REWRITE_HINT, check_made_for, read_output_vocabulary

QUANTIZE = (None, "int8")
VOCAB_FILE = "shared_vocabulary.json"
VMAP_FILE = "vmap.txt"


def convert_summarizer(model_dir: str | Path, out_dir: str | Path, quantize: str | None = "int8") -> Path:
    """Convert a ``save_pretrained`` (m)T5 directory to a CTranslate2 model in ``out_dir``.

    When the model directory holds an ``output_vocabulary.json`` (see
    :func:`inference.fast.vocab.write_output_vocabulary`), decoding is restricted to those tokens.

    Example:
        >>> import tempfile
        >>> from training.tiny import build_tiny_summarizer
        >>> out = convert_summarizer(build_tiny_summarizer(tempfile.mkdtemp()), tempfile.mkdtemp())
        >>> (out / "model.bin").is_file()
        True
    """
    require("ctranslate2", "the ctranslate2 backend")
    from ctranslate2.converters import TransformersConverter
    from transformers import AutoConfig, AutoModelForSeq2SeqLM

    from inference.loading import load_weights

    # The converter loads the weights itself, unchecked: refuse first what the torch backend refuses
    # (a pickle, missing weights, NaN). Conversion runs once per model, so the extra load is paid once.
    load_weights(AutoModelForSeq2SeqLM, str(model_dir), torch.device("cpu"), torch.float32, None)

    config = AutoConfig.from_pretrained(model_dir)
    # transformers 5 scales T5's decoder output by d_model**-0.5 only when `scale_decoder_outputs`
    # says so, and never for mT5; CTranslate2's converter scales whenever the (always true)
    # `tie_word_embeddings` is set. Follow transformers, the reference.
    scale = config.d_model**-0.5 if getattr(config, "scale_decoder_outputs", False) else 1.0

    class _Converter(TransformersConverter):
        def _load(self):
            import numpy as np

            spec = super()._load()
            spec.decoder.scale_outputs = np.float32(scale)
            return spec

    out = Path(out_dir)
    # The vocabulary map is written outside `out`: the converter empties `out` before saving.
    with tempfile.TemporaryDirectory() as scratch:
        vmap = _write_vmap(model_dir, Path(scratch) / VMAP_FILE)
        _Converter(str(model_dir), low_cpu_mem_usage=True).convert(
            str(out), vmap=str(vmap) if vmap else None, quantization=quantize, force=True
        )
    return out


def _write_vmap(model_dir: str | Path, path: Path) -> Path | None:
    """A CTranslate2 vocabulary map whose empty key lists the tokens decoding may always use."""
    ids = read_output_vocabulary(model_dir)
    if ids is None:
        return None
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    _check_output_vocabulary(Path(model_dir) / OUTPUT_VOCAB_FILE, ids, tokenizer)
    check_made_for(model_dir, tokenizer)
    tokens = tokenizer.convert_ids_to_tokens(ids)
    path.write_text("\t" + " ".join(tokens) + "\n", encoding="utf-8")
    return path


def _check_output_vocabulary(path: Path, ids: list[int], tokenizer) -> None:
    # A list made for another model names ids this tokenizer lacks (or different tokens under the
    # same ids); one with only special tokens would make every summary empty.
    if ids and max(ids) >= len(tokenizer):
        raise ValueError(
            f"{path}: token id {max(ids)} is beyond this model's {len(tokenizer):,} tokens, so the list was "
            f"made for another model; {REWRITE_HINT}"
        )
    if set(ids) <= set(tokenizer.all_special_ids):
        raise ValueError(f"{path}: lists only special tokens, so every summary would be empty; {REWRITE_HINT}")


def translate_options(generation: dict) -> dict:
    """Map ``transformers`` generation settings onto ``Translator.translate_batch`` options.

    ``early_stopping=True`` (stop once ``num_beams`` hypotheses end) is CTranslate2's only beam
    stopping rule, so other values decode as if it were true.

    Example:
        >>> opts = translate_options({"num_beams": 4, "max_new_tokens": 48, "no_repeat_ngram_size": 3})
        >>> opts["beam_size"], opts["max_decoding_length"], opts["no_repeat_ngram_size"]
        (4, 48, 3)
        >>> translate_options({"num_beams": None, "length_penalty": None})["beam_size"]
        1
        >>> translate_options({"min_new_tokens": 48, "max_new_tokens": 2})["min_decoding_length"]
        2
    """

    def setting(name: str, default):
        # The classes pass every known setting, with None for those the model leaves unset.
        value = generation.get(name)
        return default if value is None else value

    longest = int(setting("max_new_tokens", 64))
    return {
        "beam_size": int(setting("num_beams", 1)),
        "max_decoding_length": longest,
        # A call's max_new_tokens below the model's saved minimum wins, as in transformers
        # (CTranslate2 would refuse the pair).
        "min_decoding_length": min(int(setting("min_new_tokens", 0)), longest),
        "no_repeat_ngram_size": int(setting("no_repeat_ngram_size", 0)),
        "length_penalty": float(setting("length_penalty", 1.0)),
        "patience": 1.0,
        # Truncation happens in Summarizer; the engine must not cut inputs again.
        "max_input_length": 0,
    }


class Ct2Summarizer:
    """Summary token ids from a converted mT5, given the article token ids.

    Example:
        >>> import tempfile
        >>> from training.tiny import build_tiny_summarizer
        >>> engine = Ct2Summarizer.from_model_dir(build_tiny_summarizer(tempfile.mkdtemp()), "int8")
        >>> out = engine.generate([[10, 11, 12, 1]], {"num_beams": 1, "max_new_tokens": 5, "min_new_tokens": 5})
        >>> len(out[0])
        5
    """

    def __init__(self, folder: str | Path, quantize: str | None = "int8", threads: int | None = None):
        ct2 = require("ctranslate2", "the ctranslate2 backend")
        folder = Path(folder)
        self.translator = ct2.Translator(
            str(folder),
            device="cpu",
            compute_type="int8" if quantize == "int8" else "float32",
            inter_threads=1,
            # Physical cores, as torch counts them by default (and as a user may have set them).
            intra_threads=threads or torch.get_num_threads(),
        )
        self.tokens = json.loads((folder / VOCAB_FILE).read_text(encoding="utf-8"))
        self.ids = {token: i for i, token in enumerate(self.tokens)}
        self.use_vmap = (folder / VMAP_FILE).is_file()

    @classmethod
    def from_model_dir(cls, model_dir: str | Path, quantize: str | None = "int8") -> Ct2Summarizer:
        """Convert ``model_dir`` on first use (cached beside it) and load the result."""
        if quantize not in QUANTIZE:
            raise ValueError(f"the ctranslate2 backend supports quantize in {QUANTIZE}, not {quantize!r}")
        ct2 = require("ctranslate2", "the ctranslate2 backend")
        # int8 weights are stored converted, so the file on disk is 4x smaller and loads faster.
        settings = {"ctranslate2": ct2.__version__, "quantize": quantize, "vocab": OUTPUT_VOCAB_FILE}
        kind = f"ctranslate2-{quantize or 'fp32'}"
        return open_cached(
            model_dir,
            kind,
            settings,
            lambda out: convert_summarizer(model_dir, out, quantize),
            lambda folder: cls(folder, quantize),
        )

    def generate(self, input_ids: list[list[int]], generation: dict) -> list[list[int]]:
        """Summary token ids (no start or end token) for each article's token ids, in order."""
        source = [[self.tokens[i] for i in ids] for ids in input_ids]
        results = self.translator.translate_batch(source, use_vmap=self.use_vmap, **translate_options(generation))
        return [[self.ids[token] for token in result.hypotheses[0]] for result in results]

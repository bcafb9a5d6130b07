"""The engines each model can run on, named in one place for the API, the engines and the CLI.

``"torch"`` is transformers itself (CPU or GPU). ``"onnx"`` (classifier) and ``"ctranslate2"``
(summarizer) are the fast CPU engines of :mod:`inference.fast`; ``"fast"`` names each model's
fast engine, so one ``khabar predict --backend fast`` serves both models; ``"auto"`` the fastest
installed for this processor (:func:`inference.precision.auto_backend`). Kept free of torch so
``khabar --help`` stays quick.

Example:
    >>> [name for name in SUMMARIZER_BACKENDS if name not in CLASSIFIER_BACKENDS]
    ['ctranslate2']
"""

from __future__ import annotations

from collections.abc import Iterable

CLASSIFIER_BACKENDS = ("torch", "onnx", "fast", "auto")
SUMMARIZER_BACKENDS = ("torch", "ctranslate2", "fast", "auto")
# The decoding settings every summarizer backend follows; the fast engines receive exactly these.
ENGINE_SETTINGS = (
    "num_beams",
    "max_new_tokens",
    "min_new_tokens",
    "no_repeat_ngram_size",
    "length_penalty",
    "early_stopping",
)
# Saved settings an engine needs no instruction for: token ids it reads from the model, the length
# cap it falls back on, bookkeeping, and what generate returns besides the text.
_ENGINE_NEUTRAL = (
    "bos_token_id",
    "decoder_start_token_id",
    "eos_token_id",
    "pad_token_id",
    "max_length",
    "transformers_version",
    "_from_model_config",
    # What generate returns beside the text, and how it computes it: never the text itself.
    "use_cache",
    "output_attentions",
    "output_hidden_states",
    "output_scores",
    "output_logits",
    "return_dict_in_generate",
)


def unfollowed_settings(changed: Iterable[str]) -> list[str]:
    """The decoding settings among ``changed`` (names set away from the defaults) a fast engine cannot follow.

    Example:
        >>> unfollowed_settings(["num_beams", "eos_token_id", "repetition_penalty"])
        ['repetition_penalty']
    """
    return sorted(set(changed) - set(ENGINE_SETTINGS) - set(_ENGINE_NEUTRAL))

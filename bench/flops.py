"""Model FLOPs of a training step, for MFU: the matrix multiplications the architecture needs, from its config.

Counted on the real (unpadded) tokens, 2 FLOPs per multiply-add, training = 3x the forward pass
(forward, and a backward of twice its work). Embedding lookups, norms and softmaxes are left out:
they are memory-bound and small. The counts match the usual estimates: ParsBERT-base reads a
512-token article in about 97 GFLOP, mT5-small trains on a 512 -> 128 pair in about 185.

Example:
    >>> from transformers import BertConfig
    >>> from bench.models import PARSBERT_BASE
    >>> round(encoder_forward_flops(BertConfig(**PARSBERT_BASE), 512) / 1e9)
    97
"""

from __future__ import annotations

# bf16 dense tensor-core peaks (FLOP/s) of common training GPUs. The H200 figure is the one quoted
# for the H200 this project's GPU runs used; the others are the vendors' data sheets (SXM parts).
GPU_PEAK_BF16 = {
    "H200": 790e12,
    "H100": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "A10": 125e12,
}
DEFAULT_GPU_PEAK = GPU_PEAK_BF16["H200"]


def encoder_forward_flops(config, tokens: int) -> float:
    """Forward FLOPs of a BERT encoder (with its classification head) on one input of ``tokens`` tokens.

    Example:
        >>> from transformers import BertConfig
        >>> encoder_forward_flops(BertConfig(hidden_size=4, intermediate_size=8, num_hidden_layers=1,
        ...     num_attention_heads=1, num_labels=2), 2)
        624.0
    """
    d, layers = config.hidden_size, config.num_hidden_layers
    per_token = layers * (4 * d * d + 2 * d * config.intermediate_size)
    attention = layers * 2 * tokens * tokens * d  # Q K^T and the weighted sum of V
    head = d * d + d * config.num_labels  # pooler and classifier, on the first token only
    return 2.0 * (per_token * tokens + attention + head)


def seq2seq_forward_flops(config, source: int, target: int) -> float:
    """Forward FLOPs of a T5-style encoder-decoder on one pair (``source`` -> ``target`` tokens), LM head included.

    Example:
        >>> from transformers import MT5Config
        >>> from bench.models import MT5_SMALL
        >>> round(3 * seq2seq_forward_flops(MT5Config(**MT5_SMALL), 512, 128) / 1e9)
        188
    """
    d, inner, ff = config.d_model, config.num_heads * config.d_kv, config.d_ff
    ff_mats = 3 if config.is_gated_act else 2
    attention_block = 4 * d * inner
    encoder = config.num_layers * (attention_block + ff_mats * d * ff) * source
    encoder += config.num_layers * 2 * source * source * inner
    decoder_layers = config.num_decoder_layers
    decoder = decoder_layers * (2 * attention_block + ff_mats * d * ff) * target
    decoder += decoder_layers * 2 * inner * (target * target + target * source)  # self- and cross-attention
    head = d * config.vocab_size * target
    return 2.0 * (encoder + decoder + head)


def training_flops(forward_flops: float) -> float:
    """A training step's FLOPs from its forward pass's: the backward pass costs twice the forward.

    Example:
        >>> training_flops(1.0)
        3.0
    """
    return 3.0 * forward_flops


def gpu_peak(device_name: str) -> float:
    """The bf16 dense peak of the named GPU (``DEFAULT_GPU_PEAK`` when unknown).

    Example:
        >>> gpu_peak("NVIDIA A100-SXM4-80GB") / 1e12
        312.0
    """
    for model, peak in GPU_PEAK_BF16.items():
        if model in device_name:
            return peak
    return DEFAULT_GPU_PEAK

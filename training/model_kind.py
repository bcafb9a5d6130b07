"""What kind of model a directory or config holds: the one "is this a sequence-to-sequence model" test.

The summarizer's trainer, ``khabar-train evaluate`` and the model card all ask it here, so a model
family that transformers can run as a seq2seq LM is a summarizer everywhere or nowhere.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from transformers import PretrainedConfig
from transformers.models.auto.modeling_auto import MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES

from training.data import DataError

Kind = Literal["classification", "summarization"]


def is_seq2seq(config: PretrainedConfig | Mapping) -> bool:
    """Whether ``config`` (a ``PretrainedConfig`` or a ``config.json`` dict) is an encoder-decoder LM family.

    Example:
        >>> is_seq2seq({"model_type": "mt5"}), is_seq2seq({"model_type": "bert"})
        (True, False)
    """
    model_type = config.get("model_type") if isinstance(config, Mapping) else config.model_type
    return model_type in MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES


def detect_kind(model_dir: str | Path) -> Kind:
    """Tell a topic classifier from a summarizer by its ``config.json`` (architectures, then model type).

    Example:
        >>> import json, tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / "config.json").write_text(json.dumps({"architectures": ["BertForSequenceClassification"]}))
        >>> detect_kind(folder)
        'classification'
        >>> _ = (folder / "config.json").write_text(json.dumps({"model_type": "mt5"}))
        >>> detect_kind(folder)
        'summarization'
    """
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise DataError(f"{model_dir}: not a model directory (no config.json)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: malformed JSON ({error.msg})") from None
    architectures = " ".join(config.get("architectures") or [])
    if "ForSequenceClassification" in architectures:
        return "classification"
    if "ForConditionalGeneration" in architectures or is_seq2seq(config):
        return "summarization"
    raise DataError(
        f"{path}: cannot tell a classifier from a summarizer "
        f"(architectures: {architectures or 'none'}, model_type: {config.get('model_type')})"
    )

"""The sections of a model card, each a function of the facts :func:`training.model_card.collect_facts` gathers.

Example:
    >>> print(limits({"task": "classification", "parameters": 100_000}).splitlines()[0])
    ## Intended use and limits
"""

from __future__ import annotations

from collections.abc import Callable

_TINY_PARAMETERS = 5_000_000
_TOPIC_KEYS = {"accuracy": "accuracy", "macro_f1": "macro-F1", "weighted_f1": "weighted-F1"}
_ROUGE_KEYS = {"rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L"}


def title(facts: dict) -> str:
    """The heading and one line on what the model does.

    Example:
        >>> title({"task": "summarization", "model_dir": "models/summarizer"}).splitlines()[0]
        '# khabar summarizer — summarizer'
    """
    what = "Persian news summarizer" if facts["task"] == "summarization" else "Persian news topic classifier"
    kind = "summarizer" if facts["task"] == "summarization" else "topic classifier"
    name = facts["model_dir"].rstrip("/").rsplit("/", 1)[-1]
    return f"# khabar {kind} — {name}\n\nA {what} trained with khabar.\n"


def task_and_labels(facts: dict) -> str:
    """The task, and the labels a classifier predicts.

    Example:
        >>> "`sports`" in task_and_labels({"task": "classification", "metrics": {"labels": ["sports"]}})
        True
    """
    if facts["task"] == "summarization":
        return "## Task\n\nWrites a short Persian lead (one or two sentences) for a news article.\n"
    labels = facts["metrics"].get("labels") or list((facts["model_config"].get("id2label") or {}).values())
    listed = ", ".join(f"`{label}`" for label in labels)
    what = f"Predicts the topic of a Persian news article: one of {len(labels)} labels, {listed}."
    return f"## Task and labels\n\n{what}\n"


def base_checkpoint(facts: dict) -> str:
    """Where training started and the model's size.

    Example:
        >>> "org/bert" in base_checkpoint({"start": "org/bert", "model_config": {"model_type": "bert"},
        ...                                "parameters": 110_000_000})
        True
    """
    config = facts["model_config"]
    architecture = ", ".join(config.get("architectures") or []) or config.get("model_type", "unknown")
    size = f"{facts['parameters'] / 1e6:.1f}M parameters" if facts.get("parameters") else "size unknown"
    start = f"`{facts['start']}`" if facts.get("start") else "not recorded"
    return f"## Base checkpoint\n\nFine-tuned from {start}; architecture {architecture}, {size}.\n"


def data(facts: dict) -> str:
    """The data files and how many rows each split had.

    Example:
        >>> "| test | `t.jsonl` | 40 |" in data({"run": {"data": {"test_file": "t.jsonl"}},
        ...                                     "metrics": {"test": {"rows": 40}}, "baselines": None})
        True
    """
    files = (facts["run"].get("data") or {}) if isinstance(facts["run"], dict) else {}
    counted = (facts.get("baselines") or {}).get("rows", {})
    lines = ["## Data", "", "| split | file | rows |", "|---|---|---:|"]
    for split in ("train", "validation", "test"):
        path = files.get(f"{split}_file")
        rows = counted.get(split) or (facts["metrics"].get(split) or {}).get("rows")
        if path or rows:
            where = f"`{path}`" if path else f"held out of the training file ({files.get('validation_fraction')})"
            lines.append(f"| {split} | {where} | {rows if rows is not None else '—'} |")
    return "\n".join(lines) + "\n"


def results(facts: dict) -> str:
    """Test (else validation) scores of the model beside the baselines'.

    Example:
        >>> text = results({"task": "classification", "metrics": {"test": {"accuracy": 0.5, "macro_f1": 0.4,
        ...     "weighted_f1": 0.45}}, "baselines": {"split": "test", "systems": {"majority class":
        ...     {"accuracy": 0.4, "macro_f1": 0.1, "weighted_f1": 0.2}}}})
        >>> "| this model | 0.500 | 0.400 | 0.450 |" in text, "| majority class | 0.400 |" in text
        (True, True)
    """
    split = "test" if "test" in facts["metrics"] else "validation"
    scores = facts["metrics"].get(split) or {}
    keys, digits = (_ROUGE_KEYS, 1) if facts["task"] == "summarization" else (_TOPIC_KEYS, 3)
    lines = [f"## Results ({split} split)", "", "| system | " + " | ".join(keys.values()) + " |"]
    lines.append("|---|" + "---:|" * len(keys))
    rows = {"this model": scores, **((facts.get("baselines") or {}).get("systems") or {})}
    for name, values in rows.items():
        cells = [f"{values[key]:.{digits}f}" if key in values else "—" for key in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if not facts.get("baselines"):
        lines += ["", "Baselines not computed: the run's data files were not found when this card was written."]
    if facts["task"] == "summarization":
        lines += ["", "ROUGE F1 (0–100) on normalized Persian words, as `khabar-train evaluate` scores it."]
    return "\n".join(lines) + "\n"


def settings(facts: dict) -> str:
    """Normalization, decoding and the main training settings.

    Example:
        >>> "digits `persian`" in settings({"normalization": {"digits": "persian", "version": 1},
        ...     "generation": {}, "run": {}, "task": "classification", "hardware": "CPU", "metrics": {}})
        True
    """
    norm = facts["normalization"]
    lines = ["## Settings", ""]
    version, digits = norm.get("version", 1), norm.get("digits", "persian")
    lines.append(
        f"- Normalization: khabar normalizer version {version}, digits `{digits}` "
        "(applied by khabar at inference; plain transformers users must normalize the same way)."
    )
    if facts["task"] == "summarization" and facts["generation"]:
        kept = ("num_beams", "max_new_tokens", "min_new_tokens", "no_repeat_ngram_size", "length_penalty")
        decoding = ", ".join(f"{key}={facts['generation'][key]}" for key in kept if key in facts["generation"])
        lines.append(f"- Decoding (`generation_config.json`): {decoding}.")
    train = facts["run"].get("train") or {}
    kept = ("epochs", "max_steps", "learning_rate", "batch_size", "gradient_accumulation_steps", "max_length", "seed")
    lines.append("- Training: " + ", ".join(f"{key}={train[key]}" for key in kept if key in train) + ".")
    runtime = (facts["metrics"].get("train") or {}).get("train_runtime")
    time = f"{runtime:.0f} s{since_resume(facts['metrics'])}" if isinstance(runtime, (int, float)) else "not recorded"
    lines.append(f"- Hardware: {facts['hardware']}; training time {time}.")
    return "\n".join(lines) + "\n"


def limits(facts: dict) -> str:
    """Intended use, and plainly when the model is a tiny one built for tests.

    Example:
        >>> "tiny" in limits({"task": "summarization", "parameters": 1_000_000})
        True
    """
    lines = ["## Intended use and limits", ""]
    if facts.get("parameters") and facts["parameters"] < _TINY_PARAMETERS:
        lines.append(
            "**This is a tiny model trained from scratch for tests and demos, not for real use**: its "
            "answers are close to chance. Train from a real checkpoint (see khabar's `configs/`) for use."
        )
        lines.append("")
    use = "summarizing" if facts["task"] == "summarization" else "routing and tagging"
    lines.append(
        f"Intended for {use} Persian news articles like those it was trained on (agency news). Other "
        "genres, dialects or very long documents (inputs are truncated to the trained length) score lower; "
        "review outputs before publishing them."
    )
    return "\n".join(lines) + "\n"


def how_to_load(facts: dict) -> str:
    """Loading code for khabar and for plain transformers.

    Example:
        >>> "AutoModelForSeq2SeqLM" in how_to_load({"task": "summarization", "model_dir": "m"})
        True
    """
    path = facts["model_dir"]
    if facts["task"] == "summarization":
        khabar = f'from inference import Summarizer\n\nsummarizer = Summarizer.from_pretrained("{path}")\n'
        khabar += 'print(summarizer.summarize("متن خبر ..."))'
        plain = "AutoModelForSeq2SeqLM"
    else:
        khabar = f'from inference import Classifier\n\nclassifier = Classifier.from_pretrained("{path}")\n'
        khabar += 'print(classifier.predict("متن خبر ..."))'
        plain = "AutoModelForSequenceClassification"
    transformers = (
        f"from transformers import AutoTokenizer, {plain}\nfrom inference import normalize\n\n"
        f'tokenizer = AutoTokenizer.from_pretrained("{path}")\nmodel = {plain}.from_pretrained("{path}")\n'
        'inputs = tokenizer(normalize("متن خبر ..."), truncation=True, return_tensors="pt")'
    )
    return (
        "## How to load\n\nWith khabar (normalizes the text as in training):\n\n```python\n"
        f"{khabar}\n```\n\nWith plain transformers:\n\n```python\n{transformers}\n```\n"
    )


SECTIONS: list[Callable[[dict], str]] = [
    title,
    task_and_labels,
    base_checkpoint,
    data,
    results,
    settings,
    limits,
    how_to_load,
]


def since_resume(metrics: dict) -> str:
    """`` since the resume from checkpoint-N`` for a resumed run's time and loss (they cover that part only).

    Example:
        >>> since_resume({"train": {"resumed_from": "checkpoint-17"}}), since_resume({"train": {}})
        (' since the resume from checkpoint-17', '')
    """
    resumed = (metrics.get("train") or {}).get("resumed_from")
    return f" since the resume from {resumed}" if resumed else ""

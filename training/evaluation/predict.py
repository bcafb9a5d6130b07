"""Batched predictions of a trained model over the evaluated rows, longest first, with a progress bar."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path


def predict_topics(
    model_dir: str | Path,
    texts: Sequence[str],
    batch_size: int = 16,
    device: str | None = None,
    backend: str = "auto",
    engine: dict | None = None,
) -> list[str]:
    """Topic labels from a classifier directory, in input order, with a progress bar.

    ``backend`` picks the engine as ``khabar predict --backend`` does; what ran (engine and
    precision, e.g. ``"onnx int8 (auto)"``) is put in ``engine["classifier"]`` when given.

    Example:
        >>> import tempfile
        >>> from training.tiny import build_tiny_classifier
        >>> model, engine = build_tiny_classifier(tempfile.mkdtemp()), {}
        >>> labels = predict_topics(model, ["تیم ملی برد", "بازار ارز"], device="cpu", backend="torch", engine=engine)
        >>> len(labels), all(isinstance(label, str) for label in labels), engine["classifier"].startswith("torch")
        (2, True, True)
    """
    from inference import Classifier

    classifier = Classifier.from_pretrained(model_dir, device=device or "auto", backend=backend)
    if engine is not None:
        engine["classifier"] = classifier.precision
    predict = lambda chunk: [p["label"] for p in classifier.predict(chunk, batch_size=batch_size)]  # noqa: E731
    return _in_chunks(predict, texts, batch_size, "classifying")


def generate_summaries(
    model_dir: str | Path,
    texts: Sequence[str],
    batch_size: int | None = None,
    device: str | None = None,
    backend: str = "auto",
    engine: dict | None = None,
    **decoding: int,
) -> list[str]:
    """Summaries from a summarizer directory, in input order, with a progress bar.

    The model's saved decoding settings apply unless ``decoding`` overrides them
    (``num_beams``, ``max_new_tokens``). ``batch_size`` (articles a call) defaults to the fastest
    for the beams (:meth:`inference.Summarizer.batch_size_for`: 16 greedy, 8 with 4 beams).
    ``backend`` and ``engine`` are as for :func:`predict_topics`.

    Example:
        >>> import tempfile
        >>> from training.tiny import build_tiny_summarizer
        >>> len(generate_summaries(build_tiny_summarizer(tempfile.mkdtemp()), ["متن خبر"], device="cpu"))
        1
    """
    from inference import Summarizer

    summarizer = Summarizer.from_pretrained(model_dir, device=device or "auto", backend=backend)
    if engine is not None:
        engine["summarizer"] = summarizer.precision
    if batch_size is None:
        batch_size = summarizer.batch_size_for(decoding.get("num_beams"))
    summarize = lambda chunk: summarizer.summarize(chunk, batch_size=batch_size, **decoding)  # noqa: E731
    return _in_chunks(summarize, texts, batch_size, "summarizing")


def _in_chunks(model: Callable[[list[str]], list], texts: Sequence[str], batch_size: int, desc: str) -> list:
    """Run ``model`` over ``texts`` a batch at a time (longest first), advancing a progress bar."""
    from tqdm.auto import tqdm

    # Chunks of similar length pad least, and the slowest come first so the time estimate is honest.
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    outputs: list = [None] * len(texts)
    with tqdm(total=len(texts), desc=desc, unit="article") as bar:
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            for i, output in zip(chunk, model([texts[i] for i in chunk]), strict=True):
                outputs[i] = output
            bar.update(len(chunk))
    return outputs

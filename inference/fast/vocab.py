"""Restrict the summarizer's output vocabulary to the tokens Persian news uses.

mT5's output layer has 250,112 rows (512 MB in fp32) and is read in full at every decoding step,
for every beam: for a model as small as mT5-small it is most of the decoding cost. A Persian news
summarizer only ever writes a small part of that multilingual vocabulary, so listing the tokens
seen when tokenizing the training articles and summaries and scoring only those cuts the work.

The list is opt-in: write it once with :func:`write_output_vocabulary` or

    python -m inference.fast.vocab MODEL_DIR train.jsonl [more.jsonl ...]

(it is saved in the model directory as ``output_vocabulary.json``); the ctranslate2 backend then
decodes with it. A summary can only differ from the full-vocabulary one where the full model would
have picked a token that never appears in the texts given.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

OUTPUT_VOCAB_FILE = "output_vocabulary.json"


def write_output_vocabulary(model_dir: str | Path, texts: Iterable[str], batch_size: int = 256) -> Path:
    """Save the ids of every token of ``texts`` (plus the special tokens) as the output vocabulary.

    Example:
        >>> import tempfile
        >>> from training.tiny import build_tiny_summarizer
        >>> model_dir = build_tiny_summarizer(tempfile.mkdtemp())
        >>> path = write_output_vocabulary(model_dir, ["خبر امروز", "ورزش"])
        >>> ids = read_output_vocabulary(model_dir)
        >>> 1 in ids and len(ids) < 20   # the end token, and only a handful of others
        True
    """
    from transformers import AutoTokenizer

    from inference.normalize import load_normalization, normalize

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    record = load_normalization(model_dir)
    ids = set(tokenizer.all_special_ids)
    batch: list[str] = []
    for text in [*texts, None]:
        if text is not None:
            batch.append(normalize(text, record["digits"], record["version"]))
        if batch and (text is None or len(batch) == batch_size):
            ids.update(i for row in tokenizer(batch, add_special_tokens=False).input_ids for i in row)
            batch = []
    path = Path(model_dir) / OUTPUT_VOCAB_FILE
    path.write_text(json.dumps({"ids": sorted(ids)}) + "\n", encoding="utf-8")
    return path


def read_output_vocabulary(model_dir: str | Path) -> list[int] | None:
    """The saved output vocabulary of ``model_dir``, or ``None`` when decoding may use every token.

    Example:
        >>> read_output_vocabulary("/nonexistent") is None
        True
    """
    path = Path(model_dir) / OUTPUT_VOCAB_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))["ids"]


def jsonl_texts(paths: Iterable[str | Path], fields: Iterable[str] = ("article", "summary", "title")) -> Iterator[str]:
    """Every non-empty string under ``fields`` in the JSONL files ``paths``.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "d.jsonl"
        >>> _ = p.write_text('{"article": "متن", "summary": null}\\n', encoding="utf-8")
        >>> list(jsonl_texts([p]))
        ['متن']
    """
    fields = tuple(fields)
    for path in paths:
        with Path(path).open(encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                yield from (row[key] for key in fields if isinstance(row.get(key), str) and row[key].strip())


def main(argv: list[str] | None = None) -> int:
    """``python -m inference.fast.vocab MODEL_DIR DATA.jsonl...``: write the summarizer's output vocabulary."""
    parser = argparse.ArgumentParser(prog="python -m inference.fast.vocab", description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", type=Path, help="a trained summarizer directory")
    parser.add_argument("data", nargs="+", type=Path, help="JSONL files whose article/summary/title texts to cover")
    args = parser.parse_args(argv)
    path = write_output_vocabulary(args.model_dir, jsonl_texts(args.data))
    print(f"{len(read_output_vocabulary(args.model_dir)):,} tokens written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

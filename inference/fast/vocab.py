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
import hashlib
import json
import logging
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from inference.batch.atomic import write_text_atomically
from inference.model_checks import error_line

OUTPUT_VOCAB_FILE = "output_vocabulary.json"
PROG = "python -m inference.fast.vocab"
REWRITE_HINT = f"write it again with {PROG} MODEL_DIR DATA.jsonl, or delete it"
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
log = logging.getLogger(__name__)


def write_output_vocabulary(model_dir: str | Path, texts: Iterable[str], batch_size: int = 256) -> Path:
    """Save the ids of every token of ``texts`` (plus the special tokens) as the output vocabulary.

    ``model_dir`` must be a saved summarizer and ``texts`` hold at least one non-blank text: a list of
    special tokens only would make every summary empty. The file is replaced in one step, so an
    interrupted or failed write leaves the previous list as it was.

    Example:
        >>> import tempfile
        >>> from training.tiny import build_tiny_summarizer
        >>> model_dir = build_tiny_summarizer(tempfile.mkdtemp())
        >>> path = write_output_vocabulary(model_dir, ["خبر امروز", "ورزش"])
        >>> ids = read_output_vocabulary(model_dir)
        >>> 1 in ids and len(ids) < 20   # the end token, and only a handful of others
        True
        >>> try:
        ...     write_output_vocabulary(model_dir, ["  "])
        ... except ValueError as err:
        ...     print(str(err).split(";")[0])
        no text to take tokens from
    """
    from inference.normalize import load_normalization, normalize

    tokenizer = _summarizer_tokenizer(model_dir)
    record = load_normalization(model_dir)
    ids = set(tokenizer.all_special_ids)
    batch: list[str] = []
    seen = 0
    for text in [*texts, None]:
        if text is not None and text.strip():
            batch.append(normalize(text, record["digits"], record["version"]))
            seen += 1
        if batch and (text is None or len(batch) == batch_size):
            ids.update(i for row in tokenizer(batch, add_special_tokens=False).input_ids for i in row)
            batch = []
    if not seen:
        raise ValueError(f"no text to take tokens from; {OUTPUT_VOCAB_FILE} not written")
    path = Path(model_dir) / OUTPUT_VOCAB_FILE
    # Renamed over the old list only once whole: a full disk or Ctrl-C never leaves half a list.
    saved = {"ids": sorted(ids), "tokenizer": tokenizer_digest(tokenizer)}
    write_text_atomically(path, json.dumps(saved) + "\n")
    return path


def tokenizer_digest(tokenizer) -> str:
    """A short hash of ``tokenizer``'s tokens in id order: the same ids mean the same tokens only under the same one.

    Example:
        >>> class Tokens:
        ...     def __len__(self): return 2
        ...     def convert_ids_to_tokens(self, ids): return ["<pad>", "خبر"][: len(ids)]
        >>> tokenizer_digest(Tokens())
        'b7bb678cc5a05024'
    """
    tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    return hashlib.sha256("\n".join(map(str, tokens)).encode()).hexdigest()[:16]


def check_made_for(model_dir: str | Path, tokenizer) -> None:
    """Refuse an output vocabulary written for another tokenizer: its ids would name other tokens.

    A model retrained from another base in the same folder keeps the list, and every id of a
    small tokenizer is also an id of a large one, so the ids alone cannot tell. A list written
    before the tokenizer was recorded is used with a warning.
    """
    path = Path(model_dir) / OUTPUT_VOCAB_FILE
    saved = json.loads(path.read_text(encoding="utf-8")).get("tokenizer")
    if saved is None:
        log.warning("%s does not say which tokenizer it was made for; %s", path, REWRITE_HINT.split(", or")[0])
    elif saved != tokenizer_digest(tokenizer):
        raise ValueError(f"{path}: was made for another tokenizer than this model's; {REWRITE_HINT}")


def _summarizer_tokenizer(model_dir: str | Path):
    """The tokenizer of a local summarizer directory; anything else is a one-line ``ValueError``."""
    from inference.loading import ModelNotFoundError, load_config_and_tokenizer

    # A hub id or a typo would otherwise reach the hub client and fail with its own long message.
    if not Path(model_dir).is_dir():
        what = "is a file; give the summarizer's directory" if Path(model_dir).exists() else "no such model directory"
        raise ModelNotFoundError(f"{model_dir}: {what}")
    # The list only serves the summarizer: written into a classifier's folder it would do nothing.
    return load_config_and_tokenizer(str(model_dir), "summarizer")[1]


def read_output_vocabulary(model_dir: str | Path) -> list[int] | None:
    """The saved output vocabulary of ``model_dir``, or ``None`` when decoding may use every token.

    A file that is not such a list (damaged, edited, from another tool) is a ``ValueError`` naming it.

    Example:
        >>> read_output_vocabulary("/nonexistent") is None
        True
    """
    path = Path(model_dir) / OUTPUT_VOCAB_FILE
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:  # not UTF-8, or not JSON
        raise ValueError(f"{path}: not an output vocabulary ({' '.join(str(exc).split())}); {REWRITE_HINT}") from None
    ids = saved.get("ids") if isinstance(saved, dict) else None
    if not isinstance(ids, list) or not all(type(i) is int and i >= 0 for i in ids):
        raise ValueError(f'{path}: not an output vocabulary (expected {{"ids": [token ids]}}); {REWRITE_HINT}')
    return ids


def jsonl_texts(paths: Iterable[str | Path], fields: Iterable[str] = ("article", "summary", "title")) -> Iterator[str]:
    """Every non-empty string under ``fields`` in the JSONL files ``paths`` (blank lines are skipped).

    A line that is not a JSON object, or a file without any such text (the wrong file, or other field
    names), is a ``ValueError`` naming the file and line.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "d.jsonl"
        >>> _ = p.write_text('{"article": "متن", "summary": null}\\n\\n', encoding="utf-8")
        >>> list(jsonl_texts([p]))
        ['متن']
    """
    fields = tuple(fields)
    for path in paths:
        found = 0
        for number, row in _jsonl_rows(Path(path)):
            if not isinstance(row, dict):
                raise ValueError(f"{path} line {number}: expected a JSON object, got {type(row).__name__}")
            texts = [row[key] for key in fields if isinstance(row.get(key), str) and row[key].strip()]
            found += len(texts)
            yield from texts
        if not found:
            raise ValueError(f"{path}: no non-empty {' or '.join(map(repr, fields))} text in it")


def _jsonl_rows(path: Path) -> Iterator[tuple[int, object]]:
    # Read as bytes and decoded line by line, so an error names the line it is on.
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                # utf-8-sig on every line: editors add a BOM, and files joined with cat carry theirs inside.
                line = raw.decode("utf-8-sig")
            except UnicodeDecodeError:
                raise ValueError(f"{path} line {number}: not UTF-8 text") from None
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path} line {number}: not JSON ({exc.msg})") from None


def main(argv: list[str] | None = None) -> int:
    """``python -m inference.fast.vocab MODEL_DIR DATA.jsonl...``: write the summarizer's output vocabulary.

    Returns 0, or 2 after printing a one-line error (a missing or unreadable file, a model that is not
    a summarizer, no text in the data).

    Example:
        >>> main(["/no/such/model", "train.jsonl"])
        2
    """
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", type=Path, help="a trained summarizer directory")
    parser.add_argument("data", nargs="+", type=Path, help="JSONL files whose article/summary/title texts to cover")
    args = parser.parse_args(argv)
    target = args.model_dir / OUTPUT_VOCAB_FILE
    try:
        path = write_output_vocabulary(args.model_dir, jsonl_texts(args.data))
        count = len(read_output_vocabulary(args.model_dir) or ())
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; {target} is as it was", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (OSError, ValueError) as exc:
        print(f"{PROG}: error: {_write_error(exc, target)}", file=sys.stderr)
        return EXIT_USAGE
    print(f"{count:,} tokens written to {path}")
    return 0


def _write_error(exc: BaseException, target: Path) -> str:
    """One line naming the list when writing it failed: not the temporary file it went to, nor nothing.

    Example:
        >>> _write_error(OSError(28, "No space left on device"), Path("m/output_vocabulary.json"))
        'm/output_vocabulary.json: cannot write it (No space left on device)'
    """
    if isinstance(exc, OSError) and exc.errno is not None:
        name = Path(exc.filename).name if exc.filename else None
        if name is None or name.startswith(f".{target.stem}."):  # write_text_atomically's temporary file
            return f"{target}: cannot write it ({exc.strerror})"
    return error_line(exc)


if __name__ == "__main__":
    sys.exit(main())

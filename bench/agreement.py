"""How often the fast path gives the reference path's answer, on a trained model and real articles.

``python -m bench.agreement --classifier DIR --summarizer DIR`` compares ``Classifier`` on the
onnx backend with the torch one (top-1 agreement over the test split) and ``Summarizer`` on
ctranslate2 with torch (how often the summary text is identical, in the model's saved decoding
settings), and records the figures in
``bench/results.json`` under ``agreement``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from bench.run import RESULTS
from bench.workloads import read_articles


def classifier_agreement(model_dir: Path, texts: list[str], quantize: str | None) -> dict:
    """Top-1 agreement of the onnx backend with the torch backend on ``texts``."""
    from inference import Classifier

    reference = Classifier.from_pretrained(model_dir, device="cpu").predict(texts)
    fast = Classifier.from_pretrained(model_dir, device="cpu", backend="onnx", quantize=quantize).predict(texts)
    same = sum(a["label"] == b["label"] for a, b in zip(reference, fast, strict=True))
    return {"backend": "onnx", "quantize": quantize, "docs": len(texts), "top1_agreement": round(same / len(texts), 4)}


def summary_equality(model_dir: Path, texts: list[str], quantize: str | None, num_beams: int) -> dict:
    """Share of summaries from the ctranslate2 backend identical to the torch backend's.

    ``equal_summaries`` compares with transformers' default decoding. ``equal_renormalized``
    compares with transformers told to renormalize scores after banning repeated n-grams
    (``renormalize_logits=True``), which is what CTranslate2's beam search does: the two differ
    only where a ban removes probability mass that the beams' scores would otherwise still count.
    """
    from inference import Summarizer

    reference = Summarizer.from_pretrained(model_dir, device="cpu")
    engine = Summarizer.from_pretrained(model_dir, device="cpu", backend="ctranslate2", quantize=quantize)
    fast = engine.summarize(texts, num_beams=num_beams)
    row = {"backend": "ctranslate2", "quantize": quantize, "num_beams": num_beams, "docs": len(texts)}
    for name, extra in (("equal_summaries", {}), ("equal_renormalized", {"renormalize_logits": True})):
        expected = reference.summarize(texts, num_beams=num_beams, **extra)
        row[name] = round(sum(a == b for a, b in zip(expected, fast, strict=True)) / len(texts), 4)
    return row


def main(argv: list[str] | None = None) -> int:
    """Measure agreement for the models given and add it to the results file."""
    parser = argparse.ArgumentParser(prog="python -m bench.agreement", description=__doc__.split("\n\n")[0])
    parser.add_argument("--classifier", type=Path, help="a trained classifier directory")
    parser.add_argument("--summarizer", type=Path, help="a trained summarizer directory")
    parser.add_argument("--split", default="test", help="which split of the data to read")
    parser.add_argument("--summaries", type=int, default=100, help="articles to summarize per setting")
    parser.add_argument("--note", default="", help="what the models are, for the record")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    texts = read_articles(args.split)
    rows = []
    if args.classifier:
        rows += [{"model": "classifier", **classifier_agreement(args.classifier, texts, q)} for q in ("int8", None)]
    if args.summarizer:
        some = texts[: args.summaries]
        for quantize in ("int8", None):
            for beams in (1, 4):
                rows.append({"model": "summarizer", **summary_equality(args.summarizer, some, quantize, beams)})
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    results = json.loads(args.out.read_text()) if args.out.is_file() else {"machines": {}, "results": []}
    results["agreement"] = {
        "measured": time.strftime("%Y-%m-%d"),
        "models": args.note,
        "split": args.split,
        "rows": rows,
    }
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    for row in rows:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())

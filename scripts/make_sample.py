"""Rebuild data/sample/ from the Apache-2.0 Fars News / Varzesh3 rows of the shared dataset.

Run from the repository root: ``python scripts/make_sample.py ../shared/data/persian-news``.
Only rows from those two sources are copied (the other sources are GPL-3.0), and only rows
that have both a topic and an agency lead, so every sample row serves both tasks.
"""

from __future__ import annotations

import json
import random
import sys
from collections import defaultdict
from pathlib import Path

APACHE_SOURCES = {"farsnews", "varzesh3"}
FIELDS = ("id", "source", "url", "title", "article", "summary", "category")
MAX_ARTICLE_BYTES = 2400  # keeps the whole sample under ~1 MB
# rows per category: sports is capped so the other topics are not drowned out
PLAN = {
    "train.jsonl": ("train", 80, 30),
    "validation.jsonl": ("validation", 16, 4),
    "test.jsonl": ("test", 16, 4),
    "demo.jsonl": ("test", 8, 3),
}


def eligible(row: dict) -> bool:
    return (
        row["source"] in APACHE_SOURCES
        and bool(row.get("summary"))
        and bool(row.get("category"))
        and len(row["article"].encode()) <= MAX_ARTICLE_BYTES
    )


def main(shared: Path, out: Path) -> None:
    rng = random.Random(13)
    used: set[str] = set()
    for name, (split, sports_cap, other_cap) in PLAN.items():
        rows = [json.loads(line) for line in (shared / f"{split}.jsonl").open(encoding="utf-8")]
        by_topic: dict[str, list[dict]] = defaultdict(list)
        for row in rows:
            if eligible(row) and row["id"] not in used:
                by_topic[row["category"]].append(row)
        chosen = []
        for topic in sorted(by_topic):
            cap = sports_cap if topic == "sports" else other_cap
            chosen += rng.sample(by_topic[topic], min(cap, len(by_topic[topic])))
        rng.shuffle(chosen)
        used.update(row["id"] for row in chosen)
        with (out / name).open("w", encoding="utf-8") as f:
            for row in chosen:
                f.write(json.dumps({k: row[k] for k in FIELDS}, ensure_ascii=False) + "\n")
        print(f"{name}: {len(chosen)} rows")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(__file__).resolve().parent.parent / "data" / "sample")

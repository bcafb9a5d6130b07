"""``khabar merge`` joins the shards of one run only: parts of runs with other inputs or models are refused.

Each shard's run file notes its input, models and settings; merging two jobs' parts used to mix two
models' answers, or rows of two inputs, in one file with exit 0.
"""

from __future__ import annotations

from pathlib import Path

from helpers import khabar_err as khabar
from helpers import one_line_error, write_articles

from inference.batch.locking import run_file


def shard(capsys, source: Path, output: Path, index: int, classifier: Path) -> Path:
    flags = ["--tasks", "topic", "--classifier", classifier, "--device", "cpu", "--backend", "torch", "--quiet"]
    code, err = khabar(capsys, "predict", source, "-o", output, "--num-shards", 2, "--shard-index", index, *flags)
    assert code == 0, err
    return output.with_name(f"{output.stem}.shard-{index}-of-2{output.suffix}")


def test_the_shards_of_one_run_merge(tmp_path, capsys, fitted_classifier_dir) -> None:
    source, output = write_articles(tmp_path / "in.jsonl", 6), tmp_path / "out.jsonl"
    parts = [shard(capsys, source, output, i, fitted_classifier_dir) for i in (0, 1)]
    assert khabar(capsys, "merge", *parts, "-o", tmp_path / "all.jsonl")[0] == 0
    assert len((tmp_path / "all.jsonl").read_text(encoding="utf-8").splitlines()) == 6


def test_shards_of_two_classifiers_are_refused(tmp_path, capsys, fitted_classifier_dir, tiny_classifier_dir) -> None:
    source, output = write_articles(tmp_path / "in.jsonl", 6), tmp_path / "out.jsonl"
    first = shard(capsys, source, output, 0, fitted_classifier_dir)
    second = shard(capsys, source, output, 1, tiny_classifier_dir)
    code, err = khabar(capsys, "merge", first, second, "-o", tmp_path / "all.jsonl")
    assert code == 2
    one_line_error(err, f"PART {second}", f"not from the same run as {first}", f"the classifier {tiny_classifier_dir}")
    assert not (tmp_path / "all.jsonl").exists()


def test_shards_of_two_inputs_are_refused_and_a_part_without_a_run_file_is_taken(
    tmp_path, capsys, fitted_classifier_dir
) -> None:
    output = tmp_path / "out.jsonl"
    first = shard(capsys, write_articles(tmp_path / "a.jsonl", 6), output, 0, fitted_classifier_dir)
    second = shard(capsys, write_articles(tmp_path / "b.jsonl", 6, tag="دیگر "), output, 1, fitted_classifier_dir)
    code, err = khabar(capsys, "merge", first, second, "-o", tmp_path / "all.jsonl")
    assert code == 2
    one_line_error(err, f"PART {second}", "another input")
    run_file(str(second)).unlink()  # copied away from its run file: nothing to check it against
    assert khabar(capsys, "merge", first, second, "-o", tmp_path / "all.jsonl")[0] == 0

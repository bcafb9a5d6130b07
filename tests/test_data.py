"""Loading users' data files with their own column names."""

from __future__ import annotations

import json

import pytest

from training.data import Columns, DataError, load_split, split_off_validation


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_loads_sample_with_mapping_and_normalizes(sample_dir) -> None:
    ds = load_split(str(sample_dir / "test.jsonl"), Columns(text="article", label="category", title="title"))
    assert ds.column_names == ["text", "label", "title"]
    assert len(ds) == 40
    assert all("ي" not in t and "ك" not in t for t in ds["text"])


def test_own_column_names_in_csv_and_tsv(tmp_path) -> None:
    (tmp_path / "d.csv").write_text("body,topic\nكتاب خوب,culture\nبازی,sports\n", encoding="utf-8")
    (tmp_path / "d.tsv").write_text("body\ttopic\nكتاب خوب\tculture\n", encoding="utf-8")
    ds = load_split(str(tmp_path / "d.csv"), Columns(text="body", label="topic"))
    assert ds["text"] == ["کتاب خوب", "بازی"] and ds["label"] == ["culture", "sports"]
    assert load_split(str(tmp_path / "d.tsv"), Columns(text="body", label="topic"))["label"] == ["culture"]


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
def test_a_byte_order_mark_is_not_part_of_the_data(tmp_path, suffix) -> None:
    # Excel's "CSV UTF-8" starts with one; so do files from Windows editors, and files joined with cat
    # carry one inside. It was read into the first column's name ("\ufeffbody": "no column body").
    if suffix == ".jsonl":
        one = json.dumps({"body": "بازی", "topic": "sports"}, ensure_ascii=False)
        text = f"\ufeff{one}\n\ufeff{one}\n"
    else:
        sep = "," if suffix == ".csv" else "\t"
        text = f"\ufeffbody{sep}topic\nبازی{sep}sports\nبازی{sep}sports\n"
    (tmp_path / f"d{suffix}").write_text(text, encoding="utf-8")

    ds = load_split(str(tmp_path / f"d{suffix}"), Columns(text="body", label="topic"))

    assert ds["text"] == ["بازی", "بازی"] and ds["label"] == ["sports", "sports"]


def test_a_line_holding_only_a_byte_order_mark_is_blank(tmp_path) -> None:
    one = json.dumps({"body": "بازی", "topic": "sports"}, ensure_ascii=False)
    (tmp_path / "d.jsonl").write_text(f"{one}\n\ufeff\n{one}\n", encoding="utf-8")
    assert len(load_split(str(tmp_path / "d.jsonl"), Columns(text="body", label="topic"))) == 2


def test_each_row_knows_the_line_it_starts_on(tmp_path) -> None:
    # A quoted CSV field spans lines and a blank line is skipped: lines are not positions.
    (tmp_path / "d.csv").write_text('body,topic\n"یک\nدو\nسه",x\n\nچهار,y\n', encoding="utf-8")
    (tmp_path / "d.jsonl").write_text('\n{"body": "یک", "topic": "x"}\n\n{"body": "دو", "topic": "y"}\n')

    assert load_split(str(tmp_path / "d.csv"), Columns(text="body", label="topic"), lines=True)["line"] == [2, 6]
    assert load_split(str(tmp_path / "d.jsonl"), Columns(text="body", label="topic"), lines=True)["line"] == [2, 4]


def test_parquet(tmp_path) -> None:
    import datasets

    datasets.Dataset.from_dict({"article": ["متن"], "summary": ["خلاصه"]}).to_parquet(str(tmp_path / "d.parquet"))
    ds = load_split(str(tmp_path / "d.parquet"), Columns(summary="summary"))
    assert ds["summary"] == ["خلاصه"]


def test_rows_without_text_or_target_are_dropped_and_logged(tmp_path, caplog) -> None:
    rows = [
        {"article": "الف", "category": "a"},
        {"article": "", "category": "a"},
        {"article": "ب", "category": None},
        {"article": "\u200c ", "category": "b"},
        {"category": "c"},
    ]
    ds = load_split(write_jsonl(tmp_path / "d.jsonl", rows), Columns(label="category"))
    assert ds["text"] == ["الف"]
    assert "dropped 4 rows" in caplog.text


def test_missing_column_names_file_column_and_existing_columns(tmp_path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"body": "x", "topic": "y"}])
    with pytest.raises(DataError, match=r"d\.jsonl:1: column 'article' not found; columns are: body, topic"):
        load_split(path, Columns(label="topic"))


def test_a_column_missing_from_a_csv_header_names_line_one(tmp_path) -> None:
    (tmp_path / "d.csv").write_text("body,topic\nبازی,sports\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"d\.csv:1: column 'article' not found; columns are: body, topic"):
        load_split(str(tmp_path / "d.csv"), Columns(label="topic"))


def test_malformed_line_names_file_and_line(tmp_path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"article": "x", "category": "y"}\n{"article": \n', encoding="utf-8")
    with pytest.raises(DataError, match=r"d\.jsonl:2: malformed JSON"):
        load_split(str(path), Columns(label="category"))


def test_missing_file_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(DataError, match="no such file"):
        load_split(str(tmp_path / "nope.jsonl"), Columns(label="category"))


def test_validation_split_is_deterministic(sample_dir) -> None:
    ds = load_split(str(sample_dir / "train.jsonl"), Columns(label="category"))
    a_train, a_val = split_off_validation(ds, 0.1, seed=1)
    b_train, b_val = split_off_validation(ds, 0.1, seed=1)
    assert a_val["text"] == b_val["text"] and len(a_train) + len(a_val) == len(ds)
    assert split_off_validation(ds, 0.1, seed=2)[1]["text"] != a_val["text"]


def test_one_training_row_cannot_hold_out_a_validation_split(tmp_path, capsys) -> None:
    from training.cli import main

    one = tmp_path / "one.jsonl"
    one.write_text(json.dumps({"article": "خبر ورزشی امروز", "category": "ورزش"}, ensure_ascii=False) + "\n")
    code = main(["configs/classifier/tiny.yaml", f"data.train_file={one}", "data.validation_file=null",
                 "data.test_file=null", "data.title_column=null", f"output_dir={tmp_path / 'out'}"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and "Traceback" not in err
    expected = "1 training row(s) are too few to hold out data.validation_fraction=0.1 and keep rows to train on"
    assert expected in err.splitlines()[-1]
    assert not (tmp_path / "out").exists()

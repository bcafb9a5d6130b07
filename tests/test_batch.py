"""The batch loop, readers, writers, resume repair, sharding and merge, with fake models (no torch)."""

from __future__ import annotations

import json
import os
import re
import signal
from collections import Counter
from pathlib import Path

import pytest
from helpers import read_jsonl
from hypothesis import given
from hypothesis import strategies as st

import inference.batch.loop as batch_loop
from inference.batch.checks import MAX_TEXT_CHARS, check_row, row_id
from inference.batch.checks import InputColumns as Columns
from inference.batch.formats import UsageError
from inference.batch.loop import Job, predict_batch, run, stop_after_batch
from inference.batch.reading import Row, csv_columns, read_rows
from inference.batch.resume import load_done
from inference.batch.shards import Shard, merge_parts, shard_from_env
from inference.batch.writing import RecordWriter

# --- fakes -------------------------------------------------------------------------------------


def fake_classify(texts: list[str]) -> list[dict]:
    """Label by text length; reject any text containing BOOM, like the real classes reject bad input."""
    for i, text in enumerate(texts):
        if "BOOM" in text:
            raise ValueError(f"text at index {i}: cannot classify")
    return [{"label": "long" if len(text) > 10 else "short", "score": 0.5} for text in texts]


def fake_summarize(texts: list[str]) -> list[str]:
    return [text.split()[0] for text in texts]


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


# --- reading input -----------------------------------------------------------------------------


def test_jsonl_reader_numbers_lines_and_reports_unreadable_ones(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(
        b'\xef\xbb\xbf{"id": "a", "article": "x"}\n\n{broken\n[1, 2]\n\xff\xfe\n{"id": "f", "article": "y"}'
    )
    rows = list(read_rows(str(path)))
    assert [(row.index, row.line) for row in rows] == [(0, 1), (1, 3), (2, 4), (3, 5), (4, 6)]
    assert rows[0].fields == {"id": "a", "article": "x"}  # the byte-order mark is not part of the key
    assert rows[1].problem.startswith("malformed JSON")
    assert rows[2].problem == "expected a JSON object, got a list"
    assert rows[3].problem.startswith("not UTF-8")
    assert rows[4].fields["id"] == "f"  # a last line without a newline is still read


def test_a_byte_order_mark_mid_file_from_joined_files_is_not_part_of_the_row(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"  # cat a.jsonl b.jsonl, each saved with a BOM
    path.write_bytes(b'\xef\xbb\xbf{"id": "a", "article": "x"}\n\xef\xbb\xbf{"id": "b", "article": "y"}\n')
    assert [row.fields["id"] for row in read_rows(str(path))] == ["a", "b"]


def test_csv_reader_gives_each_record_its_first_line(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    long_cell = "ب" * 150_000  # over the csv module's default 128 KiB field limit
    path.write_bytes(f'id,article\na,"two\nlines"\nb,ok,extra\nc\n\nd,{long_cell}\n'.encode() + b"e,\xff\nf,last\n")
    rows = list(read_rows(str(path)))
    assert [(row.line, (row.fields or {}).get("id")) for row in rows] == [
        (2, "a"),
        (4, None),
        (5, "c"),
        (7, "d"),
        (8, None),
        (9, "f"),
    ]
    assert rows[0].fields["article"] == "two\nlines"
    assert rows[1].problem == "3 fields but the header has 2"
    assert rows[2].fields == {"id": "c"}  # a short row lacks its text column
    assert len(rows[3].fields["article"]) == 150_000
    assert rows[4].problem == "not UTF-8 text"


def test_tsv_reader_splits_on_tabs(tmp_path: Path) -> None:
    path = tmp_path / "in.tsv"
    path.write_text("id\tarticle\n1\tمتن, با ویرگول\n", encoding="utf-8")
    assert next(read_rows(str(path))).fields == {"id": "1", "article": "متن, با ویرگول"}


def test_unknown_input_suffix_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"INPUT .*in\.txt: unknown format '\.txt'"):
        list(read_rows(str(tmp_path / "in.txt")))


# --- checking rows -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "columns", "reason"),
    [
        ({"id": "a"}, Columns(), "no text: field 'article' or 'text' is missing"),
        ({"body": "x"}, Columns(text="content"), "no text: field 'content' is missing"),
        ({"article": None}, Columns(), "no text: field 'article' is null"),
        ({"article": "  \n "}, Columns(), "text field 'article' is empty"),
        ({"article": ["x"]}, Columns(), "text field 'article' is a list, not a string"),
        ({"article": "ا" * (MAX_TEXT_CHARS + 1)}, Columns(), "text is 200,001 characters, over the 200,000 limit"),
        ({"article": "x", "title": 7}, Columns(title="title"), "title field 'title' is a number, not a string"),
    ],
)
def test_every_bad_row_kind_gets_a_reason(fields: dict, columns: Columns, reason: str) -> None:
    record = check_row(Row(0, 9, fields), columns)
    assert record["error"] == reason and record["line"] == 9


def test_text_falls_back_to_text_field_and_title_is_prepended() -> None:
    ready = check_row(Row(0, 1, {"text": "متن", "title": "تیتر"}), Columns(title="title"))
    assert ready.text == "متن" and ready.classifier_text == "تیتر\nمتن"
    assert check_row(Row(0, 1, {"article": "الف", "text": "ب"}), Columns()).text == "الف"
    assert check_row(Row(0, 1, {"article": "x" * MAX_TEXT_CHARS}), Columns()).text  # the limit itself is allowed


def test_row_id_falls_back_to_the_line_number() -> None:
    assert row_id(Row(0, 4, {"id": 17}), "id") == 17
    assert row_id(Row(0, 4, {"id": ""}), "id") == 4
    assert row_id(Row(0, 4, {"id": ["x"]}), "id") == 4
    assert row_id(Row(0, 4, None, "malformed JSON"), "id") == 4
    assert row_id(Row(0, 4, {"key": "k1"}), "key") == "k1"


# --- running models ----------------------------------------------------------------------------


def test_a_row_the_model_rejects_fails_alone() -> None:
    calls = []

    def classify(texts: list[str]) -> list[dict]:
        calls.append(len(texts))
        return fake_classify(texts)

    rows = [Row(i, i + 1, {"article": text}) for i, text in enumerate(["خبر اول", "BOOM", "خبر سوم طولانی"])]
    records = predict_batch(rows, Job(Columns(), classify=classify, summarize=fake_summarize))
    assert calls == [3, 1, 1, 1]  # the batch, then each row on its own
    assert records[1] == {"id": 2, "line": 2, "error": "topic: cannot classify"}
    assert [r.get("topic") for r in records] == ["short", None, "long"]
    assert [r.get("summary") for r in records] == ["خبر", None, "خبر"]


def test_failed_summary_drops_the_topic_so_records_are_all_or_nothing() -> None:
    def summarize(texts: list[str]) -> list[str]:
        raise TypeError("text at index 0: bad type")

    [record] = predict_batch([Row(0, 1, {"article": "x"})], Job(Columns(), fake_classify, summarize))
    assert record == {"id": 1, "line": 1, "error": "summary: bad type"}


def test_kept_columns_follow_the_results_and_avoid_clashes() -> None:
    row = Row(0, 1, {"id": "a", "article": "متن", "summary": "خلاصه مرجع", "source": "fars"})
    [record] = predict_batch([row], Job(Columns(keep=("source", "summary")), summarize=fake_summarize))
    assert list(record) == ["id", "line", "summary", "source", "input_summary"]
    assert record["summary"] == "متن" and record["input_summary"] == "خلاصه مرجع"


def test_run_writes_each_batch_once_and_counts() -> None:
    batches: list[list[dict]] = []
    rows = [Row(i, i + 1, {"article": "خبر" if i != 3 else ""}) for i in range(5)]
    stats = run(rows, Job(Columns(), fake_classify), batches.append, batch_size=2)
    assert [len(batch) for batch in batches] == [2, 2, 1]
    assert (stats.read, stats.written, stats.failed, stats.interrupted) == (5, 4, 1, False)


def test_memory_freed_by_each_batch_goes_back_to_the_system(monkeypatch: pytest.MonkeyPatch) -> None:
    # Flat peak RSS over long inputs depends on this (bench/rss.py measures it).
    released: list[int] = []
    written: list[dict] = []
    monkeypatch.setattr(batch_loop, "release_freed_memory", lambda: released.append(len(written)))
    rows = [Row(i, i + 1, {"article": "خبر"}) for i in range(5)]
    run(rows, Job(Columns(), fake_classify), written.extend, batch_size=2)
    assert released == [2, 4, 5]  # once after each batch is written


def test_strict_stops_at_the_first_bad_row_after_writing_the_ones_before() -> None:
    out: list[dict] = []
    rows = [Row(i, i + 1, {"article": "خبر" if i != 2 else 5}) for i in range(6)]
    stats = run(rows, Job(Columns(), fake_classify, strict=True), out.extend, batch_size=4)
    assert [r["line"] for r in out] == [1, 2]
    assert stats.fatal == "line 3: text field 'article' is a number, not a string"


def test_resume_knows_a_row_by_its_id_and_line_so_repeated_ids_skip_only_the_rows_done() -> None:
    out: list[dict] = []
    rows = [Row(i, i + 1, {"id": key, "article": "خبر"}) for i, key in enumerate(["a", "b", "a", "c"])]
    stats = run(rows, Job(Columns(), fake_classify), out.extend, done=Counter({("a", "1"): 1, ("b", "2"): 1}))
    assert [r["line"] for r in out] == [3, 4]  # the second "a" is new work
    assert stats.skipped == 2


def test_interrupt_while_waiting_for_input_stops_at_once() -> None:
    with stop_after_batch(lambda _: None) as stop, pytest.raises(KeyboardInterrupt):
        stop.reading = True
        os.kill(os.getpid(), signal.SIGINT)


def test_interrupt_in_a_busy_batch_waits_for_it_unless_repeated() -> None:
    notices: list[str] = []
    before = signal.getsignal(signal.SIGINT)  # Python's default, or SIG_IGN when run as a background job
    with stop_after_batch(notices.append) as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested and notices
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before  # restored as it was


def test_signal_in_a_batch_stops_the_run_after_writing_it() -> None:
    out: list[dict] = []

    def classify(texts: list[str]) -> list[dict]:
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while the model works
        return fake_classify(texts)

    with stop_after_batch(lambda _: None) as stop:
        rows = (Row(i, i + 1, {"article": "خبر"}) for i in range(100))
        stats = run(rows, Job(Columns(), classify), out.extend, batch_size=8, stop=stop)
    assert stats.interrupted and len(out) == 8


def test_signal_while_reading_stops_the_run_at_once() -> None:
    out: list[dict] = []

    def rows():
        for i in range(100):
            if i == 11:
                os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while waiting for a slow input
            yield Row(i, i + 1, {"article": "خبر"})

    with stop_after_batch(lambda _: None) as stop:
        stats = run(rows(), Job(Columns(), fake_classify), out.extend, batch_size=4, stop=stop)
    assert stats.interrupted and len(out) == 8


# --- writing and resuming ----------------------------------------------------------------------


def test_csv_writer_keeps_its_header_when_appending(tmp_path: Path) -> None:
    path = str(tmp_path / "out.csv")
    for batch in ([{"id": "a", "line": 1}], [{"id": "b", "line": 2}]):
        with RecordWriter(path, ["id", "line", "error"]) as out:
            out.write(batch)
    assert Path(path).read_text().splitlines() == ["id,line,error", "a,1,", "b,2,"]
    with pytest.raises(UsageError, match="differ from this run's"):
        RecordWriter(path, ["id", "line", "topic", "error"])


def test_load_done_repairs_a_cut_jsonl_line(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_text('{"id": "a", "line": 1}\n{"id": 2, "line": 2}\n{"id": "c", "li', encoding="utf-8")
    done = load_done(str(path))
    assert done.ids == Counter({("a", "1"): 1, ("2", "2"): 1}) and done.repaired_bytes == len('{"id": "c", "li')
    assert path.read_text(encoding="utf-8").endswith('"line": 2}\n')


def test_load_done_refuses_a_damaged_record_in_the_middle(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_text('{"id": "a", "line": 1}\nnot ours\n{"id": "b", "line": 3}\n', encoding="utf-8")
    with pytest.raises(UsageError, match="line 2: not a khabar record"):
        load_done(str(path))


@pytest.mark.parametrize("cut", ['c,3,"half a', "c,3,spo", 'c,3,"two\n'])
def test_load_done_repairs_a_cut_csv_record(tmp_path: Path, cut: str) -> None:
    path = tmp_path / "out.csv"
    good = 'id,line,summary\na,1,"multi\nline"\nb,2,x\n'
    path.write_text(good + cut, encoding="utf-8")
    done = load_done(str(path))
    assert done.ids == Counter({("a", "1"): 1, ("b", "2"): 1})
    assert path.read_text(encoding="utf-8") == good


def test_load_done_of_a_missing_file_is_empty(tmp_path: Path) -> None:
    assert load_done(str(tmp_path / "new.jsonl")).ids == Counter()


# --- shards and merge --------------------------------------------------------------------------


@given(count=st.integers(1, 9), rows=st.integers(0, 60))
def test_shards_cover_every_row_exactly_once(count: int, rows: int) -> None:
    shards = [Shard(count, index) for index in range(count)]
    owners = [[s.index for s in shards if s.holds(i)] for i in range(rows)]
    assert all(len(owner) == 1 for owner in owners)
    assert sum(shard.size(rows) for shard in shards) == rows


def test_shard_defaults_come_from_the_launcher(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    assert shard_from_env(None, None) == Shard(4, 3)
    assert shard_from_env(2, 0) == Shard(2, 0)  # flags win
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(UsageError, match="RANK='x'"):
        shard_from_env(None, None)
    with pytest.raises(UsageError, match="--shard-index 2: must be in 0..1"):
        Shard(2, 2)
    monkeypatch.setenv("RANK", "5")
    with pytest.raises(UsageError, match="environment RANK=5 is not in 0..3 for WORLD_SIZE=4"):
        shard_from_env(None, None)  # not "--shard-index 5", a flag nobody gave
    with pytest.raises(UsageError, match="--shard-index: give --num-shards and --shard-index together"):
        shard_from_env(None, 0)


def test_merge_restores_input_order_from_mixed_formats(tmp_path: Path) -> None:
    write_jsonl(
        tmp_path / "p0.jsonl", [{"id": "a", "line": 1, "topic": "x", "topic_score": 0.5}, {"id": "c", "line": 5}]
    )
    (tmp_path / "p1.csv").write_text("id,line,topic,topic_score,error\nb,3,y,0.25,\nd,7,,,bad\n", encoding="utf-8")
    parts = [str(tmp_path / "p1.csv"), str(tmp_path / "p0.jsonl")]
    assert merge_parts(parts, str(tmp_path / "all.jsonl")) == 4
    merged = read_jsonl(tmp_path / "all.jsonl")
    assert [r["id"] for r in merged] == ["a", "b", "c", "d"]
    assert merged[1] == {"id": "b", "line": 3, "topic": "y", "topic_score": 0.25}
    assert merged[3] == {"id": "d", "line": 7, "error": "bad"}


def test_merge_rejects_overlapping_or_unordered_parts(tmp_path: Path) -> None:
    a = write_jsonl(tmp_path / "a.jsonl", [{"id": "a", "line": 1}, {"id": "c", "line": 3}])
    b = write_jsonl(tmp_path / "b.jsonl", [{"id": "c", "line": 3}])
    with pytest.raises(UsageError, match="line 3 is in both"):
        merge_parts([str(a), str(b)], str(tmp_path / "all.jsonl"))
    c = write_jsonl(tmp_path / "c.jsonl", [{"id": "c", "line": 3}, {"id": "a", "line": 1}])
    with pytest.raises(UsageError, match="c.jsonl line 2: input line 1 comes after 3"):
        merge_parts([str(c)], str(tmp_path / "all.jsonl"))
    with pytest.raises(UsageError, match="also one of the parts"):
        merge_parts([str(a)], str(a))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"id,article\r1,a\r2,b\r", "bare carriage return (old Mac style)"),
        (b'"id,article\n1,foo\n', "a quoted field is not closed before the end of the file"),
        (b'"' + b"x" * 140_000 + b"\n1,a\n", "a quoted field is not closed"),  # past the csv module's field limit
        (b"id,article,article\n1,a,b\n", "the column 'article' appears twice"),
    ],
)
def test_a_broken_csv_header_is_one_usage_error_naming_the_file_and_line(tmp_path: Path, content, message) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(content)
    with pytest.raises(UsageError, match=re.escape(f"INPUT {path} line 1: ") + f".*{re.escape(message)}"):
        csv_columns(str(path))


def test_csv_output_writes_kept_lists_objects_and_booleans_as_json(tmp_path: Path) -> None:
    import csv

    path = str(tmp_path / "out.csv")
    with RecordWriter(path, ["id", "line", "tags", "meta", "flag", "error"]) as out:
        out.write([{"id": "a", "line": 1, "tags": ["x", "ی"], "meta": {"k": 1}, "flag": True, "error": None}])
    with open(path, encoding="utf-8", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert [json.loads(row[k]) for k in ("tags", "meta", "flag")] == [["x", "ی"], {"k": 1}, True]
    assert row["error"] == "" and row["line"] == "1"

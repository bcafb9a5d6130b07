"""The fast engines, their conversion cache and the output-vocabulary tool off the happy path."""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from inference.fast import cache, vocab

ARTICLE = {"article": "خبر امروز درباره ورزش و اقتصاد است", "summary": "خبر ورزش", "title": "ورزش"}


@pytest.fixture
def summarizer_dir(tiny_summarizer_dir, tmp_path) -> Path:
    """A private copy of the tiny summarizer, without conversions other tests left: these tests write into it."""
    return shutil.copytree(tiny_summarizer_dir, tmp_path / "summarizer", ignore=shutil.ignore_patterns(".khabar-*"))


def _jsonl(path: Path, *rows: dict) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def _run_vocab(capsys, *args) -> tuple[int, list[str]]:
    code = vocab.main([str(arg) for arg in args])
    return code, capsys.readouterr().err.splitlines()


# --- the output-vocabulary tool -------------------------------------------------------------------


def test_vocab_tool_refuses_data_without_text(summarizer_dir, tmp_path, capsys):
    # Only the special tokens would be listed, and every summary would then come out empty.
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    code, err = _run_vocab(capsys, summarizer_dir, empty)
    assert code == 2 and len(err) == 1 and str(empty) in err[0]
    assert not (summarizer_dir / vocab.OUTPUT_VOCAB_FILE).exists()


@pytest.mark.parametrize("case", ["no model dir", "model is a file", "no data file", "not utf-8", "not json", "list"])
def test_vocab_tool_mistakes_are_one_line_errors_naming_the_path(case, summarizer_dir, tmp_path, capsys):
    data = _jsonl(tmp_path / "train.jsonl", ARTICLE)
    model, named = summarizer_dir, data
    if case == "no model dir":
        model = named = tmp_path / "no-such-model"
    elif case == "model is a file":
        model = named = summarizer_dir / "config.json"
    elif case == "no data file":
        data = named = tmp_path / "missing.jsonl"
    elif case == "not utf-8":
        data.write_bytes(json.dumps(ARTICLE).encode() + b"\n" + b'{"article": "\xff\xfe"}\n')
    elif case == "not json":
        data.write_text("a plain text file\n")
    else:
        data.write_text("[1, 2]\n")
    code, err = _run_vocab(capsys, model, data)
    assert code == 2 and len(err) == 1 and str(named) in err[0], err
    assert not (summarizer_dir / vocab.OUTPUT_VOCAB_FILE).exists()


def test_vocab_tool_refuses_a_classifier(tiny_classifier_dir, tmp_path, capsys):
    classifier = shutil.copytree(tiny_classifier_dir, tmp_path / "classifier")
    code, err = _run_vocab(capsys, classifier, _jsonl(tmp_path / "train.jsonl", ARTICLE))
    assert code == 2 and len(err) == 1 and "not a sequence-to-sequence summarizer" in err[0]
    assert not (classifier / vocab.OUTPUT_VOCAB_FILE).exists()  # it would change the classifier's cache key


def test_vocab_tool_skips_blank_lines_and_byte_order_marks(summarizer_dir, tmp_path, capsys):
    data = tmp_path / "train.jsonl"
    one = json.dumps(ARTICLE, ensure_ascii=False)
    data.write_text(f"\n\ufeff{one}\n\n  \n\ufeff{one}\n", encoding="utf-8")  # two files joined with cat
    code, _ = _run_vocab(capsys, summarizer_dir, data)
    assert code == 0 and len(vocab.read_output_vocabulary(summarizer_dir)) > 3


def test_a_failed_write_keeps_the_previous_list(summarizer_dir, monkeypatch):
    before = vocab.write_output_vocabulary(summarizer_dir, [ARTICLE["article"]]).read_text()

    def disk_full(fd):  # the bytes are written, but the disk cannot hold them
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("inference.batch.atomic.os.fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        vocab.write_output_vocabulary(summarizer_dir, ["متن دیگری با واژه‌های تازه"])
    monkeypatch.undo()
    assert (summarizer_dir / vocab.OUTPUT_VOCAB_FILE).read_text() == before
    assert sorted(p.name for p in summarizer_dir.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize(
    "content, problem",
    [
        ('{"ids": [0, 1, 2', "not an output vocabulary"),  # cut short
        ("[1, 2]", "not an output vocabulary"),
        ('{"ids": [0, 1, 2, 999999]}', "made for another model"),
        ('{"ids": [0, 1, 2]}', "only special tokens"),  # what the tool once wrote for a file without text
    ],
)
def test_a_bad_output_vocabulary_is_refused_naming_it(content, problem, summarizer_dir):
    pytest.importorskip("ctranslate2")
    from inference.fast import summarizer_engine

    (summarizer_dir / vocab.OUTPUT_VOCAB_FILE).write_text(content)
    with pytest.raises(ValueError, match=problem) as caught:
        summarizer_engine(summarizer_dir, "ctranslate2", "int8")
    assert str(summarizer_dir / vocab.OUTPUT_VOCAB_FILE) in str(caught.value)


@pytest.mark.parametrize("stop", ["full disk", "ctrl-c"])
def test_vocab_tool_stopped_while_writing_names_the_list_and_keeps_it(
    stop, summarizer_dir, tmp_path, capsys, monkeypatch
):
    data = _jsonl(tmp_path / "train.jsonl", ARTICLE)
    before = vocab.write_output_vocabulary(summarizer_dir, ["خبر"]).read_bytes()

    def stopped(fd):
        raise KeyboardInterrupt if stop == "ctrl-c" else OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("inference.batch.atomic.os.fsync", stopped)
    code, err = _run_vocab(capsys, summarizer_dir, data)
    listed = summarizer_dir / vocab.OUTPUT_VOCAB_FILE
    expected = f"interrupted; {listed} is as it was" if stop == "ctrl-c" else f"error: {listed}: cannot write it"
    assert code == (130 if stop == "ctrl-c" else 2) and len(err) == 1 and expected in err[0]
    assert listed.read_bytes() == before


# --- the conversion cache -------------------------------------------------------------------------


def _model(tmp_path: Path) -> Path:
    """A stand-in model directory: the cache only reads its file names, sizes and times."""
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    return model_dir


def _write_engine(out: Path) -> None:
    (out / "engine.bin").write_text("converted")


def test_a_conversion_is_as_readable_as_the_model(tmp_path):
    # Converted once by whoever ran first (often an admin), it is read by every account using the model.
    model_dir = _model(tmp_path)
    before = os.umask(0o022)
    try:
        folder = cache.cached_conversion(model_dir, "demo-int8", {}, _write_engine)
    finally:
        os.umask(before)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    assert stat.S_IMODE((folder / "engine.bin").stat().st_mode) == 0o644


def test_a_conversion_this_account_cannot_read_is_passed_over(tmp_path, monkeypatch):
    model_dir = _model(tmp_path)
    theirs = cache.cached_conversion(model_dir, "demo-int8", {}, _write_engine)  # another account's, kept private
    real_is_file, real_writable = Path.is_file, cache._writable

    def is_file(path: Path) -> bool:
        if path.is_relative_to(theirs):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_is_file(path)

    monkeypatch.setattr(Path, "is_file", is_file)
    # ... in a model directory this account may read but not write.
    monkeypatch.setattr(cache, "_writable", lambda root: root.parent != model_dir and real_writable(root))
    monkeypatch.setenv("KHABAR_CACHE", str(tmp_path / "user"))
    mine = cache.cached_conversion(model_dir, "demo-int8", {}, _write_engine)
    assert mine.is_relative_to(tmp_path / "user") and (mine / "engine.bin").read_text() == "converted"


def test_no_home_directory_still_converts_beside_the_model(tmp_path, monkeypatch):
    # An account without a home (HOME unset, no passwd entry: containers run as an arbitrary uid).
    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.delenv("KHABAR_CACHE", raising=False)
    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    model_dir = _model(tmp_path)
    folder = cache.cached_conversion(model_dir, "demo-int8", {}, _write_engine)
    assert folder.parent == model_dir / cache.CACHE_DIRNAME


def test_nowhere_to_convert_says_how_to_fix_it(tmp_path, monkeypatch):
    model_dir = _model(tmp_path)
    (model_dir / cache.CACHE_DIRNAME).write_text("a file where the cache folder would go")
    user = tmp_path / "not-a-folder"
    user.write_text("")
    monkeypatch.setenv("KHABAR_CACHE", str(user))
    with pytest.raises(cache.NoCacheForConversion, match=f"{model_dir}.*set KHABAR_CACHE"):
        cache.cached_conversion(model_dir, "demo-int8", {}, _write_engine)


def test_khabar_cache_is_expanded_and_absolute(tmp_path, monkeypatch):
    # Set in a service file, "~" is not expanded by any shell; a relative folder would follow the working directory.
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KHABAR_CACHE", "~/conversions")
    assert cache.user_cache_dir() == tmp_path / "home" / "conversions"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KHABAR_CACHE", "relative")
    assert cache.user_cache_dir() == tmp_path / "relative"


def test_processes_starting_together_convert_once(tmp_path):
    # Each conversion holds two copies of the model in memory: ranks or workers starting together must not all convert.
    model_dir = _model(tmp_path)
    builds = []

    def slow_build(out: Path) -> None:
        builds.append(out)
        time.sleep(0.5)
        _write_engine(out)

    with ThreadPoolExecutor(3) as pool:  # threads hold separate locks, as processes do
        folders = list(pool.map(lambda _: cache.cached_conversion(model_dir, "demo-int8", {}, slow_build), range(3)))
    assert len(builds) == 1 and len(set(folders)) == 1
    assert (folders[0] / "engine.bin").read_text() == "converted"


CONVERT_FOREVER = """
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location("cache", sys.argv[1])
cache = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cache)
def build(out):
    (out / "engine.bin").write_bytes(b"x" * 100_000)
    print("converting", flush=True)
    time.sleep(60)
cache.cached_conversion(sys.argv[2], "demo-int8", {}, build)
"""


def test_what_a_killed_conversion_leaves_is_removed_by_the_next(tmp_path):
    model_dir = _model(tmp_path)
    child = subprocess.Popen(
        [sys.executable, "-c", CONVERT_FOREVER, cache.__file__, str(model_dir)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline() == "converting\n"
    finally:
        child.kill()  # SIGKILL: no cleanup code runs, as when the system runs out of memory
        child.wait()
    root = model_dir / cache.CACHE_DIRNAME
    assert [p for p in root.iterdir() if p.name.startswith(".")]  # the half-written folder is there
    folder = cache.cached_conversion(model_dir, "demo-int8", {}, _write_engine)
    assert list(root.iterdir()) == [folder]


def test_a_full_disk_names_the_folder_and_the_fix(tmp_path, monkeypatch):
    model_dir = _model(tmp_path)
    monkeypatch.setenv("KHABAR_CACHE", str(tmp_path / "user"))

    def disk_full(out: Path) -> None:
        (out / "engine.bin").write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space left") as caught:
        cache.cached_conversion(model_dir, "demo-int8", {}, disk_full)
    message = str(caught.value)
    assert str(model_dir / cache.CACHE_DIRNAME) in message and str(tmp_path / "user") in message
    assert "KHABAR_CACHE" in message and "\n" not in message
    for root in cache.cache_roots(model_dir):
        assert list(root.iterdir()) == []  # the half-written conversions are gone


def test_a_full_model_disk_falls_back_to_the_user_cache(tmp_path, monkeypatch):
    model_dir = _model(tmp_path)
    monkeypatch.setenv("KHABAR_CACHE", str(tmp_path / "user"))

    def build(out: Path) -> None:
        if out.is_relative_to(model_dir):
            raise OSError(errno.ENOSPC, "No space left on device")
        _write_engine(out)

    folder = cache.cached_conversion(model_dir, "demo-int8", {}, build)
    assert folder.is_relative_to(tmp_path / "user") and (folder / "engine.bin").read_text() == "converted"


# --- the engines ----------------------------------------------------------------------------------

EMPTY_BATCH = """
import sys, torch
from inference.fast import classifier_engine
engine = classifier_engine(sys.argv[1], "onnx", "int8")
print(tuple(engine(torch.ones(0, 4, dtype=torch.long), torch.ones(0, 4, dtype=torch.long)).shape))
try:
    engine(torch.ones(1, 0, dtype=torch.long), torch.ones(1, 0, dtype=torch.long))
except ValueError as err:
    print(err)
"""


def test_the_onnx_engine_answers_an_empty_batch(tiny_classifier_dir, tmp_path):
    # In a child process: the int8 kernels of onnxruntime end the process on an empty batch (SIGFPE).
    pytest.importorskip("onnxruntime")
    classifier = shutil.copytree(tiny_classifier_dir, tmp_path / "classifier")
    done = subprocess.run([sys.executable, "-c", EMPTY_BATCH, str(classifier)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-300:]
    labels = len(json.loads((classifier / "config.json").read_text())["id2label"])
    empty, refused = done.stdout.splitlines()
    assert empty == str((0, labels)) and refused.startswith("each row needs at least one token")


def test_a_conversion_folder_of_a_live_or_other_machines_process_is_left_alone(tmp_path):
    # Some shared file systems lock per machine only: another machine's rank may still be writing.
    model_dir = _model(tmp_path)
    root = model_dir / cache.CACHE_DIRNAME
    root.mkdir()
    alive = root / f"{cache.TMP_PREFIX}demo-@{cache._HOST}@{os.getpid()}@0000"
    elsewhere = root / f"{cache.TMP_PREFIX}demo-@another-node@12345@0000"
    dead = root / f"{cache.TMP_PREFIX}demo-@{cache._HOST}@{2**22 + 1}@0000"  # above Linux's pid limit
    stale = root / f"{cache.TMP_PREFIX}demo-@another-node@12345@0001"
    # A restarted container is process 1 again: its old folder's owner looks alive, but it is days old.
    reused = root / f"{cache.TMP_PREFIX}demo-@{cache._HOST}@{os.getpid()}@0001"
    for folder in (alive, elsewhere, dead, stale, reused):
        folder.mkdir()
    os.utime(stale, (0, 0))  # untouched since 1970
    os.utime(reused, (0, 0))

    folder = cache.cached_conversion(model_dir, "demo-int8", {}, _write_engine)

    assert sorted(p.name for p in root.iterdir()) == sorted([folder.name, alive.name, elsewhere.name])


def test_an_output_vocabulary_made_for_another_tokenizer_is_refused(summarizer_dir, tmp_path, caplog):
    pytest.importorskip("ctranslate2")
    from inference.fast import summarizer_engine

    vocab.write_output_vocabulary(summarizer_dir, [ARTICLE["article"]])
    # The same model with two tokens swapped in its tokenizer: every id of the list still exists.
    other = shutil.copytree(summarizer_dir, tmp_path / "other")
    tokenizer = json.loads((other / "tokenizer.json").read_text(encoding="utf-8"))
    pieces = tokenizer["model"]["vocab"]
    pieces[10], pieces[11] = pieces[11], pieces[10]
    (other / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(ValueError, match="made for another tokenizer") as caught:
        summarizer_engine(other, "ctranslate2", "int8")
    assert str(other / vocab.OUTPUT_VOCAB_FILE) in str(caught.value)
    summarizer_engine(summarizer_dir, "ctranslate2", "int8")  # the model it was made for

    # A list from before the tokenizer was recorded is used, with a warning.
    saved = json.loads((summarizer_dir / vocab.OUTPUT_VOCAB_FILE).read_text())
    (summarizer_dir / vocab.OUTPUT_VOCAB_FILE).write_text(json.dumps({"ids": saved["ids"]}))
    summarizer_engine(summarizer_dir, "ctranslate2", "int8")
    assert "does not say which tokenizer it was made for" in caplog.text


def test_a_conversion_folder_that_lost_its_marker_is_replaced(tmp_path):
    model_dir = _model(tmp_path)
    folder = cache.cached_conversion(model_dir, "demo-int8", {}, _write_engine)
    (folder / cache.DONE_FILE).unlink()  # an interrupted `rm -rf`, or a hand-made cleanup
    again = cache.cached_conversion(model_dir, "demo-int8", {}, _write_engine)
    assert again == folder and (folder / cache.DONE_FILE).is_file()


def test_a_damaged_conversion_that_cannot_be_removed_is_passed_over_for_the_user_cache(tmp_path, monkeypatch):
    model_dir = _model(tmp_path)
    beside = cache.cached_conversion(model_dir, "demo-int8", {}, _write_engine)
    (beside / "engine.bin").write_text("damaged")
    monkeypatch.setattr(cache.shutil, "rmtree", lambda path, ignore_errors=False: None)  # a read-only mount
    real_writable = cache._writable
    monkeypatch.setattr(cache, "_writable", lambda root: root.parent != model_dir and real_writable(root))
    monkeypatch.setenv("KHABAR_CACHE", str(tmp_path / "user"))

    def open_engine(folder: Path) -> Path:
        if (folder / "engine.bin").read_text() != "converted":
            raise RuntimeError("bad payload")
        return folder

    opened = cache.open_cached(model_dir, "demo-int8", {}, _write_engine, open_engine)
    assert opened.is_relative_to(tmp_path / "user")
    monkeypatch.delenv("KHABAR_CACHE")
    monkeypatch.setenv("HOME", "")  # nowhere else to convert: the error says what to delete
    with pytest.raises(ValueError, match=f"cannot open the demo-int8 conversion in {beside}: bad payload; delete it"):
        cache.open_cached(model_dir, "demo-int8", {}, _write_engine, open_engine)


def test_an_empty_home_is_no_home_not_the_root_folder(monkeypatch):
    monkeypatch.delenv("KHABAR_CACHE", raising=False)
    monkeypatch.setenv("HOME", "")
    assert [root.name for root in cache.cache_roots("/models/summarizer")] == [cache.CACHE_DIRNAME]


def test_a_wait_for_another_conversion_names_its_process(tmp_path, caplog):
    model_dir = _model(tmp_path)
    root = model_dir / cache.CACHE_DIRNAME
    root.mkdir()
    (root / f"{cache.TMP_PREFIX}demo-@node-7@4242@0000").mkdir()
    assert cache._converters(root) == " (process 4242 on node-7)"


def test_a_converter_failing_on_a_full_disk_counts_as_no_room(tmp_path, monkeypatch):
    # ONNX's native shape inference truncates its file when the disk fills; the next step fails to parse it.
    model_dir = _model(tmp_path)
    monkeypatch.setenv("KHABAR_CACHE", str(tmp_path / "user"))
    usage = shutil.disk_usage(tmp_path)

    def disk_usage(path):  # the model's disk is full, the user cache's is not
        return usage._replace(free=0 if Path(path).is_relative_to(model_dir) else 2**40)

    monkeypatch.setattr(cache.shutil, "disk_usage", disk_usage)

    def build(out: Path) -> None:
        if out.is_relative_to(model_dir):
            raise RuntimeError("Error parsing message with type 'onnx.ModelProto'")
        _write_engine(out)

    folder = cache.cached_conversion(model_dir, "demo-int8", {}, build)
    assert folder.is_relative_to(tmp_path / "user")
    (tmp_path / "roomy").mkdir()

    def fails(out: Path) -> None:
        raise RuntimeError("Error parsing message with type 'onnx.ModelProto'")

    with pytest.raises(RuntimeError, match="parsing"):  # with room left, the converter's own error stands
        cache.cached_conversion(_model(tmp_path / "roomy"), "demo-int8", {}, fails)


def test_auto_runs_on_torch_when_no_cache_can_take_a_conversion(tiny_classifier_dir, tmp_path, monkeypatch, caplog):
    pytest.importorskip("onnxruntime")
    from inference import Classifier

    model_dir = shutil.copytree(tiny_classifier_dir, tmp_path / "classifier", ignore=shutil.ignore_patterns(".*"))
    (model_dir / cache.CACHE_DIRNAME).write_text("a file where the cache folder would go")
    monkeypatch.setenv("KHABAR_CACHE", str(model_dir / "config.json"))  # a file, not a folder
    monkeypatch.setattr("inference.load_plan.auto_engine", lambda *args: "onnx")  # whatever this processor is
    model = Classifier.from_pretrained(model_dir, device="cpu")
    assert model.precision.startswith("torch") and "running on torch instead (backend=auto)" in caplog.text
    assert model.predict(["تیم ملی فوتبال برد"])[0]["label"] in model.labels
    with pytest.raises(cache.NoCacheForConversion, match="set KHABAR_CACHE"):
        Classifier.from_pretrained(model_dir, device="cpu", backend="onnx")

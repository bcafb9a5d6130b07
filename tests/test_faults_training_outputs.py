"""Training and evaluation off the happy path, second part: starting models without a tokenizer, output
folders that cannot (or must not) be written, concurrent and interrupted runs, damaged checkpoints,
non-UTF-8 configs, odd cells and hub ids.

Each refusal is checked through the real ``khabar-train`` entry point: exit code 2, one line naming
the key or file, no traceback, nothing written. Most runs name a training file that does not exist:
the refusal under test must come first, so a check that ran only after the data would fail at once
with "no such file" instead of training for seconds.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures_training import TINY_CLASSIFIER_CONFIG, classifier_overrides
from test_faults_training import TINY_SUMMARIZER_CONFIG, digest, run_train, truncated_copy, with_config

from training.cli import main
from training.config import ConfigError, load_config
from training.data import Columns, DataError, load_split, read_records
from training.output_dir import LOCK_NAME, check_output_dir, claim_output_dir
from training.tiny import sample_labels

AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def quick(model: Path, sample_dir: Path, out: Path, *extra: str) -> list[str]:
    """The tiny classifier config's overrides, with a training file that does not exist (see the module doc)."""
    return [
        str(TINY_CLASSIFIER_CONFIG),
        *classifier_overrides(model, sample_dir, out, "data.train_file=nope.jsonl"),
        *extra,
    ]


def without_tokenizer(source: Path, target: Path) -> Path:
    """A copy of a tiny model without its tokenizer files (its ``tokenizer_config.json`` stays, as after a bad copy)."""
    shutil.copytree(source, target)
    (target / "tokenizer.json").unlink()
    return target


# --- 1, 2: a starting model or an evaluated model without a tokenizer -------------------------------------


@pytest.mark.parametrize("task", ["classifier", "summarizer"])
def test_starting_model_without_tokenizer_is_refused_before_the_data(task, tiny_dir, sample_dir, tmp_path, capsys):
    model = without_tokenizer(tiny_dir / task, tmp_path / "notok")
    out = tmp_path / "out"
    config = TINY_CLASSIFIER_CONFIG if task == "classifier" else TINY_SUMMARIZER_CONFIG
    argv = [f"model.name_or_path={model}", "data.train_file=nope.jsonl", f"output_dir={out}"]
    code, error = run_train(capsys, str(config), *argv)
    assert code == 2
    assert f"model.name_or_path: {model} has no tokenizer files" in error
    assert not out.exists()


def test_fresh_model_names_the_tokenizer_key(tiny_classifier_dir, sample_dir, tmp_path, capsys):
    tokenizer = without_tokenizer(tiny_classifier_dir, tmp_path / "notok")
    fresh = [f"model.config={tiny_classifier_dir / 'config.json'}", "model.name_or_path=null"]
    argv = quick(tiny_classifier_dir, sample_dir, tmp_path / "out", *fresh, f"model.tokenizer={tokenizer}")
    code, error = run_train(capsys, *argv)
    assert code == 2 and f"model.tokenizer: {tokenizer} has no tokenizer files" in error


def test_evaluate_model_without_tokenizer_is_one_line(tiny_classifier_dir, sample_dir, tmp_path, capsys):
    model = without_tokenizer(tiny_classifier_dir, tmp_path / "notok")
    report = tmp_path / "report"
    argv = ["evaluate", "--model", str(model), "--data", str(sample_dir / "test.jsonl"), "-o", str(report)]
    code, error = run_train(capsys, *argv)
    assert code == 2 and "--model" in error and "no tokenizer files" in error
    assert not report.exists()


# --- 3: an output_dir that cannot be written -----------------------------------------------------------------


@pytest.mark.parametrize("where", ["a file", "under a file", "read-only"])
def test_unwritable_output_dir_is_refused_before_the_data(where, tiny_classifier_dir, sample_dir, tmp_path, capsys):
    if where == "read-only" and AS_ROOT:
        pytest.skip("root writes into a read-only folder")
    blocker = tmp_path / "notes.txt"
    blocker.write_text("mine", encoding="utf-8")
    out = {"a file": blocker, "under a file": blocker / "model", "read-only": tmp_path / "ro" / "model"}[where]
    if where == "read-only":
        (tmp_path / "ro").mkdir(mode=0o555)
    code, error = run_train(capsys, *quick(tiny_classifier_dir, sample_dir, out))
    assert code == 2
    assert error.startswith("khabar-train: error: output_dir: ") and str(out) in error
    assert blocker.read_text(encoding="utf-8") == "mine"


# --- 4: a config file that is not UTF-8 ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"\xff\xfet\x00a\x00s\x00k\x00", ":1: not valid UTF-8 (UTF-16 text)"),
        (b"task: classification\n# caf\xe9\n", ":2: not valid UTF-8 (byte 0xe9 at column 6)"),
    ],
)
def test_non_utf8_config_is_one_line(content, expected, tmp_path, capsys):
    config = tmp_path / "latin.yaml"
    config.write_bytes(content)
    code, error = run_train(capsys, str(config))
    assert code == 2 and f"{config}{expected}" in error


# --- 5: a list or an object in a column the model reads --------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "value", "kind"),
    [("article", ["خبر", "دوم"], "a list"), ("category", {"name": "sports"}, "an object"), ("title", [1], "a list")],
)
def test_list_or_object_cell_is_refused_not_trained_as_repr(column, value, kind, tmp_path):
    rows = [{"title": "t", "article": "خبر", "category": "sports"}] * 2
    rows.append({**rows[0], column: value})
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    with pytest.raises(DataError, match=rf"d\.jsonl:3: column '{column}' holds {kind}"):
        load_split(str(path), Columns(label="category", title="title"))


def test_summary_list_is_refused_through_the_cli(tiny_summarizer_dir, tmp_path, capsys):
    pairs = tmp_path / "pairs.jsonl"
    rows = [{"article": "خبر", "summary": "خلاصه"}, {"article": "خبر", "summary": ["خلاصه", "دیگر"]}]
    pairs.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    out = tmp_path / "out"
    argv = [f"model.name_or_path={tiny_summarizer_dir}", f"data.train_file={pairs}", f"output_dir={out}"]
    code, error = run_train(capsys, str(TINY_SUMMARIZER_CONFIG), *argv, "data.title_column=null")
    assert code == 2 and f"{pairs}:2: column 'summary' holds a list" in error
    assert not out.exists()


# --- 6: hub ids with an owner --------------------------------------------------------------------------------


def test_owner_slash_name_goes_to_the_hub(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    asked = []

    def offline(source, split):
        asked.append((source, split))
        raise ConnectionError("Couldn't reach the Hub (OfflineModeIsEnabled)\nsecond line")

    monkeypatch.setattr("training.data.datasets.load_dataset", offline)
    with pytest.raises(DataError) as error:
        read_records("HooshvareLab/pn_summary", "test")
    assert asked == [("HooshvareLab/pn_summary", "test")]
    assert str(error.value) == (
        "HooshvareLab/pn_summary: not a local file and could not be loaded from the hub "
        "(Couldn't reach the Hub (OfflineModeIsEnabled))"
    )
    for local in ("./HooshvareLab/pn_summary", str(tmp_path / "pn_summary"), "data/x/train", "data/train.jsonl"):
        with pytest.raises(DataError, match="no such file"):
            read_records(local)
    assert len(asked) == 1


# --- 7, 8: an interrupted run, and two runs into one folder ------------------------------------------------


@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_ctrl_c_is_one_line_with_the_step_and_how_to_resume(
    tiny_classifier_dir, sample_dir, tmp_path, monkeypatch, capsys, stop
):
    from transformers import Trainer

    step = Trainer.training_step

    def ctrl_c_during_step_four(self, *args, **kwargs):
        if self.state.global_step == 3:
            if stop == "ctrl-c":
                raise KeyboardInterrupt
            os.kill(os.getpid(), signal.SIGTERM)  # as a scheduler or `kill` stops a job
            signal.sigtimedwait([], 0)  # the handler runs here
        return step(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "training_step", ctrl_c_during_step_four)
    out = tmp_path / "out"
    steps = ["train.max_steps=6", "train.eval_strategy=steps", "train.eval_steps=2", "train.max_length=32"]
    argv = classifier_overrides(tiny_classifier_dir, sample_dir, out, *steps, "data.max_eval_samples=8")
    # Were SIGTERM left to this handler (not khabar-train's), the test fails here instead of killing pytest.
    before = signal.signal(signal.SIGTERM, lambda *_: pytest.fail("SIGTERM was not handled as Ctrl-C"))
    try:
        code, line = run_train(capsys, str(TINY_CLASSIFIER_CONFIG), *argv)
    finally:
        signal.signal(signal.SIGTERM, before)
    assert code == 130
    assert line == "khabar-train: interrupted at step 3; continue with train.resume=true (from checkpoint-2)"
    assert (out / "checkpoint-2").is_dir() and not (out / LOCK_NAME).exists()


def test_resume_on_other_training_data_is_refused(tiny_classifier_dir, sample_dir, tmp_path, monkeypatch, capsys):
    from transformers import Trainer

    step = Trainer.training_step

    def ctrl_c_during_step_four(self, *args, **kwargs):
        if self.state.global_step == 3:
            raise KeyboardInterrupt
        return step(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "training_step", ctrl_c_during_step_four)
    out = tmp_path / "out"
    steps = ["train.max_steps=6", "train.eval_strategy=steps", "train.eval_steps=2", "data.max_eval_samples=8"]
    argv = [str(TINY_CLASSIFIER_CONFIG), *classifier_overrides(tiny_classifier_dir, sample_dir, out, *steps)]
    assert run_train(capsys, *argv)[0] == 130
    monkeypatch.undo()
    fewer = tmp_path / "train.jsonl"
    fewer.write_text("".join((sample_dir / "train.jsonl").read_text(encoding="utf-8").splitlines(True)[:40]))
    code, line = run_train(capsys, *argv, f"data.train_file={fewer}", "train.resume=true")
    assert code == 2 and "train.resume: data.train_file is not the file checkpoint-2 was trained with" in line
    assert main([*argv, "train.resume=true"]) == 0  # the same data resumes


def test_second_run_into_a_busy_output_dir_is_refused(tiny_classifier_dir, sample_dir, tmp_path, capsys):
    out = tmp_path / "out"
    argv = quick(tiny_classifier_dir, sample_dir, out)
    with claim_output_dir(load_config(argv[0], argv[1:])):
        code, error = run_train(capsys, *argv)
        assert (out / LOCK_NAME).read_text() == str(os.getpid())
    assert code == 2
    assert f"output_dir: {out} is in use by another khabar-train run (process {os.getpid()})" in error
    assert not out.exists(), "the first run wrote nothing, so its folder goes again"


def test_lock_of_a_killed_run_does_not_block(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_AND_WAIT, str(out / LOCK_NAME)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        cfg = load_config(TINY_CLASSIFIER_CONFIG, [f"output_dir={out}"])
        with pytest.raises(ConfigError, match="in use by another khabar-train run"):
            with claim_output_dir(cfg):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (out / LOCK_NAME).exists(), "kill -9 leaves the file behind..."
    with claim_output_dir(cfg):  # ...but not the lock
        pass


LOCK_AND_WAIT = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, str(os.getpid()).encode())
print("locked", flush=True)
time.sleep(60)
"""


# --- 9: files that training would overwrite --------------------------------------------------------------


def test_output_dir_that_is_the_starting_model_is_refused(tiny_classifier_dir, sample_dir, tmp_path, capsys):
    model = tmp_path / "base"
    shutil.copytree(tiny_classifier_dir, model)
    before = digest(model)
    same = f"{os.path.relpath(model)}/../{model.name}"  # the same folder, spelled differently
    code, error = run_train(capsys, *quick(model, sample_dir, same))
    assert code == 2 and "is the starting model (model.name_or_path)" in error
    assert digest(model) == before


def test_folder_with_other_files_is_refused_unless_overwrite(tiny_classifier_dir, sample_dir, tmp_path, capsys):
    out = tmp_path / "project"
    out.mkdir()
    (out / "README.md").write_text("my notes", encoding="utf-8")
    (out / "train.jsonl").write_text("{}\n", encoding="utf-8")
    code, error = run_train(capsys, *quick(tiny_classifier_dir, sample_dir, out))
    assert code == 2
    assert "not from a khabar training run (README.md, train.jsonl)" in error and "overwrite=true" in error
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "train.jsonl"]
    check_output_dir(load_config(TINY_CLASSIFIER_CONFIG, [f"output_dir={out}", "overwrite=true"]))


def test_earlier_runs_may_be_trained_over(trained_classifier_dir, tmp_path):
    finished = load_config(TINY_CLASSIFIER_CONFIG, [f"output_dir={trained_classifier_dir}"])
    check_output_dir(finished)
    interrupted = tmp_path / "interrupted"
    (interrupted / "checkpoint-4").mkdir(parents=True)
    check_output_dir(load_config(TINY_CLASSIFIER_CONFIG, [f"output_dir={interrupted}"]))


def test_a_run_of_the_other_task_is_not_trained_over_without_overwrite(trained_classifier_dir, tmp_path):
    summarizer_into_classifier = [f"output_dir={trained_classifier_dir}"]
    with pytest.raises(ConfigError, match="holds a classification run, which this summarization run would replace"):
        check_output_dir(load_config(TINY_SUMMARIZER_CONFIG, summarizer_into_classifier))
    check_output_dir(load_config(TINY_SUMMARIZER_CONFIG, [*summarizer_into_classifier, "overwrite=true"]))


# --- 10, 11: resuming from a damaged checkpoint, or one trained on other labels ------------------------------


def fake_checkpoint(model: Path, out: Path, step: int) -> Path:
    """``out/checkpoint-STEP`` as the trainer leaves it, minus the optimizer: the model files and a trainer state."""
    checkpoint = out / f"checkpoint-{step}"
    shutil.copytree(model, checkpoint)
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": step}), encoding="utf-8")
    return checkpoint


def test_damaged_checkpoint_names_itself_and_the_one_to_use(tiny_classifier_dir, sample_dir, tmp_path, capsys):
    out = tmp_path / "out"
    fake_checkpoint(tiny_classifier_dir, out, 2)
    newest = fake_checkpoint(tiny_classifier_dir, out, 4)
    truncated_copy(tiny_classifier_dir, tmp_path / "cut")
    shutil.copy(tmp_path / "cut" / "model.safetensors", newest / "model.safetensors")
    code, error = run_train(capsys, *quick(tiny_classifier_dir, sample_dir, out, "train.resume=true"))
    assert code == 2
    assert f"train.resume: {newest} is damaged (" in error and error.endswith("delete it to resume from checkpoint-2")
    assert "model.safetensors" in error


@pytest.mark.parametrize("torn", ["empty state", "state cut short", "no data note"])
def test_a_checkpoint_killed_while_its_last_files_were_written_is_skipped(torn, tiny_classifier_dir, tmp_path):
    # The trainer writes trainer_state.json last and khabar its data note after it: a kill -9 there
    # left a checkpoint that every resume refused as damaged, or one whose data went unchecked.
    from training.checkpoints import DATA_NOTE, last_complete_checkpoint

    out = tmp_path / "out"
    for step in (2, 4):
        (fake_checkpoint(tiny_classifier_dir, out, step) / DATA_NOTE).write_text("{}", encoding="utf-8")
    newest = out / "checkpoint-4"
    if torn == "no data note":
        (newest / DATA_NOTE).unlink()
    else:
        (newest / "trainer_state.json").write_text("" if torn == "empty state" else '{"global_step": 4,')
    assert Path(last_complete_checkpoint(out)).name == "checkpoint-2"


@pytest.mark.parametrize("change", ["fewer", "renamed"])
def test_resume_with_other_labels_is_refused(change, tiny_classifier_dir, sample_dir, tmp_path, capsys):
    out = tmp_path / "out"
    checkpoint = fake_checkpoint(tiny_classifier_dir, out, 2)
    labels = sample_labels()
    trained = labels[:-1] if change == "fewer" else [f"old-{label}" for label in labels]
    with_config(checkpoint, id2label=dict(enumerate(trained)), label2id={name: i for i, name in enumerate(trained)})
    argv = classifier_overrides(tiny_classifier_dir, sample_dir, out, "train.resume=true", "train.max_length=32")
    code, error = run_train(capsys, str(TINY_CLASSIFIER_CONFIG), *argv)
    assert code == 2
    assert f"train.resume: {checkpoint} was trained on the labels {', '.join(trained)}" in error
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-2"]


# --- 12: evaluate refuses what would fail only after predicting ---------------------------------------------


@pytest.fixture
def no_model_runs(monkeypatch):
    """Fail the test if the model is asked to predict: the refusal must come first."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model ran before the refusal")

    monkeypatch.setattr("training.evaluation.cli.predict_topics", refuse)


def test_single_label_baseline_train_is_refused_before_predicting(
    no_model_runs, tiny_classifier_dir, sample_dir, tmp_path, capsys
):
    one_label = tmp_path / "one.jsonl"
    one_label.write_text(json.dumps({"article": "خبر", "category": "sports"}) + "\n", encoding="utf-8")
    report = tmp_path / "report"
    data = ["--data", str(sample_dir / "test.jsonl"), "--baseline-train", str(one_label), "-o", str(report)]
    code, error = run_train(capsys, "evaluate", "--model", str(tiny_classifier_dir), *data)
    assert code == 2 and f"{one_label}: column 'category' has 1 distinct label(s)" in error
    assert not report.exists()


@pytest.mark.parametrize("where", ["under a file", "read-only"])
def test_unwritable_report_folder_is_refused_before_predicting(
    where, no_model_runs, tiny_classifier_dir, sample_dir, tmp_path, capsys
):
    if where == "read-only" and AS_ROOT:
        pytest.skip("root writes into a read-only folder")
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    (tmp_path / "ro").mkdir(mode=0o555)
    report = tmp_path / ("notes.txt" if where == "under a file" else "ro") / "report"
    argv = [
        "evaluate",
        "--model",
        str(tiny_classifier_dir),
        "--data",
        str(sample_dir / "test.jsonl"),
        "-o",
        str(report),
    ]
    code, error = run_train(capsys, *argv)
    assert code == 2 and error.startswith("khabar-train evaluate: error: -o: ") and str(report) in error


def test_labels_that_normalize_alike_are_named_in_a_warning(caplog) -> None:
    import logging

    from training.classifier import warn_about_label_variants

    with caplog.at_level(logging.WARNING):
        warn_about_label_variants(["sports", "ورزشي", "ورزشی", "بین‌الملل"])
    assert caplog.text.count("are one label written two ways") == 1
    assert "'ورزشي' and 'ورزشی'" in caplog.text


def test_a_checkpoint_without_optimizer_state_resumes_with_a_warning(tmp_path, caplog) -> None:
    import logging

    from training.checkpoints import check_checkpoint

    checkpoint = tmp_path / "checkpoint-4"
    checkpoint.mkdir()
    (checkpoint / "trainer_state.json").write_text("{}")
    with caplog.at_level(logging.WARNING):
        check_checkpoint(checkpoint)
    assert "has no optimizer.pt" in caplog.text


# --- 9: a disk that fills up -----------------------------------------------------------------------------


def test_a_full_disk_is_one_line_with_the_checkpoint_to_continue_from(
    tiny_classifier_dir, sample_dir, tmp_path, monkeypatch, capsys
):
    from transformers import Trainer

    save = Trainer._save_checkpoint

    def disk_fills_at_step_four(self, *args, **kwargs):
        if self.state.global_step == 4:
            torn = Path(self.args.output_dir) / "checkpoint-4"
            torn.mkdir()
            (torn / "model.safetensors").write_bytes(b"\0" * 10)
            raise OSError(errno.ENOSPC, "No space left on device", str(torn / "model.safetensors"))
        return save(self, *args, **kwargs)

    out = tmp_path / "out"
    steps = ["train.max_steps=6", "train.eval_strategy=steps", "train.eval_steps=2", "train.max_length=32"]
    argv = [str(TINY_CLASSIFIER_CONFIG), *classifier_overrides(tiny_classifier_dir, sample_dir, out, *steps)]
    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "_save_checkpoint", disk_fills_at_step_four)
        code, line = run_train(capsys, *argv, "data.max_eval_samples=8")

    assert code == 1
    assert line == (
        f"khabar-train: error: no space left on device writing {out / 'checkpoint-4' / 'model.safetensors'} (step 4); "
        "free some space and continue with train.resume=true (from checkpoint-2)"
    )
    assert not (out / LOCK_NAME).exists()
    # Once there is space, the run goes on from the last complete checkpoint, past the torn one.
    assert main([*argv, "data.max_eval_samples=8", "train.resume=true"]) == 0
    assert (out / "model.safetensors").is_file()


@pytest.mark.parametrize(("free", "full"), [(0, True), (10 * 2**30, False)])
def test_a_writer_that_only_says_the_write_failed_is_a_full_disk_when_no_space_is_left(
    tmp_path, monkeypatch, free, full
):
    from training.cli import disk_full

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=free))
    torch_error = RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")

    assert disk_full(torch_error, tmp_path / "not-yet" / "made") is full
    assert disk_full(RuntimeError("Error while serializing: No space left on device (os error 28)"), tmp_path)
    assert not disk_full(RuntimeError("CUDA error: an illegal memory access"), tmp_path)
    # torch 2.13 says it in two chained errors, neither an OSError.
    try:
        try:
            raise RuntimeError("basic_ios::clear: iostream error")
        except RuntimeError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 9664 vs 9556") from None
    except RuntimeError as error:
        assert disk_full(error, tmp_path) is full


def test_a_write_past_a_file_size_limit_stops_as_a_full_disk_does(tmp_path, monkeypatch):
    import errno

    from training.cli import disk_full

    wrapped = RuntimeError("serializing failed")
    wrapped.__cause__ = OSError(errno.EFBIG, "File too large")
    assert disk_full(wrapped, tmp_path)  # ulimit -f: the OSError is the cause of what the writer raised
    monkeypatch.setattr("training.cli._file_size_limited", lambda: True)
    assert disk_full(RuntimeError("unexpected pos 576 vs 534"), tmp_path)  # torch's words, plenty of space


def test_a_file_the_system_refuses_is_one_line_naming_it(tmp_path, monkeypatch, capsys):
    # Root ignores file modes, so the refusal is simulated where the card is written.
    import training.model_card

    def refused(model_dir, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(Path(model_dir) / "README.md"))

    monkeypatch.setattr(training.model_card, "write_model_card", refused)
    code, line = run_train(capsys, "card", str(tmp_path))

    assert code == 1
    assert line == f"khabar-train: error: {tmp_path / 'README.md'}: Permission denied"


def test_a_card_that_cannot_be_written_after_training_says_the_model_is_saved(
    tiny_classifier_dir, sample_dir, tmp_path, monkeypatch, capsys
):
    import training.recipe_parts
    from training.model_card import CardError

    def refused(out, *args, **kwargs):
        raise CardError(f"{out / 'README.md'}: cannot write the card (Permission denied)")

    monkeypatch.setattr(training.recipe_parts, "write_model_card", refused)
    out = tmp_path / "out"
    steps = ["train.max_steps=2", "train.max_length=32", "data.max_eval_samples=8"]
    code, line = run_train(
        capsys, str(TINY_CLASSIFIER_CONFIG), *classifier_overrides(tiny_classifier_dir, sample_dir, out, *steps)
    )

    assert code == 1
    assert line.endswith(f"the model is saved: khabar-train card {out} writes it again")
    assert (out / "model.safetensors").is_file()


# --- retraining into a finished run's folder: the earlier model stays whole until the new one is -------------


def _retrain_argv(tiny_classifier_dir, sample_dir, out: Path) -> list[str]:
    steps = ["train.max_steps=2", "train.max_length=32", "data.max_eval_samples=8"]
    return [str(TINY_CLASSIFIER_CONFIG), *classifier_overrides(tiny_classifier_dir, sample_dir, out, *steps)]


@pytest.mark.parametrize("stop", ["full disk", "ctrl-c"])
def test_a_retrain_stopped_while_saving_leaves_the_earlier_model_whole(
    stop, trained_classifier_dir, tiny_classifier_dir, sample_dir, tmp_path, monkeypatch, capsys
):
    from training import classifier

    out = tmp_path / "model"
    shutil.copytree(trained_classifier_dir, out)
    before = digest(out)
    write_outputs = classifier.write_outputs

    def stops_halfway(stage, *args, **kwargs):
        (stage / "config.yaml").write_text("half a config")  # the new weights are written by now
        if stop == "ctrl-c":
            raise KeyboardInterrupt
        raise OSError(errno.ENOSPC, "No space left on device", str(stage / "metrics.json"))

    monkeypatch.setattr(classifier, "write_outputs", stops_halfway)
    code, line = run_train(capsys, *_retrain_argv(tiny_classifier_dir, sample_dir, out))

    assert code == (130 if stop == "ctrl-c" else 1)
    assert ("interrupted" if stop == "ctrl-c" else "no space left on device") in line
    # Not one file of the earlier model was touched, and the half-saved one is gone.
    assert {name: value for name, value in digest(out).items() if "checkpoint-" not in name} == before
    assert not (out / ".khabar-final").exists()

    monkeypatch.setattr(classifier, "write_outputs", write_outputs)
    assert main([*_retrain_argv(tiny_classifier_dir, sample_dir, out), "train.resume=true"]) == 0
    after = digest(out)
    assert after["model.safetensors"] != before["model.safetensors"] and after["README.md"] != before["README.md"]
    assert not any(name.startswith((".khabar-final", "checkpoint-")) for name in after)
    # Its time and loss are the resumed part's: the metrics and the card say since which checkpoint.
    resumed = json.loads((out / "metrics.json").read_text())["train"]["resumed_from"]
    assert resumed.startswith("checkpoint-") and f"since the resume from {resumed}" in (out / "README.md").read_text()


def test_a_trained_model_is_as_readable_as_the_umask_allows(trained_classifier_dir):
    # safetensors writes owner-only files: a model trained by one account could not be served by another.
    mask = os.umask(0)
    os.umask(mask)
    modes = {path.name: path.stat().st_mode & 0o777 for path in trained_classifier_dir.iterdir() if path.is_file()}
    assert modes["model.safetensors"] == 0o666 & ~mask
    assert set(modes.values()) == {0o666 & ~mask}


def test_a_run_that_diverged_saves_nothing_and_says_so(
    trained_classifier_dir, tiny_classifier_dir, sample_dir, tmp_path, capsys
):
    out = tmp_path / "model"
    shutil.copytree(trained_classifier_dir, out)
    before = digest(out)
    argv = [*_retrain_argv(tiny_classifier_dir, sample_dir, out), "train.learning_rate=1e30", "train.max_steps=8"]
    code, line = run_train(capsys, *argv)
    assert code == 1
    assert line.startswith("khabar-train: error: training diverged: weight ")
    assert f"was not saved (the earlier model in {out} is unchanged); delete {out}/checkpoint-*" in line
    assert "lower train.learning_rate (now 1e+30)" in line
    assert {name: value for name, value in digest(out).items() if "checkpoint-" not in name} == before


def test_a_run_stopped_while_saving_its_first_checkpoint_can_be_run_again(
    tiny_classifier_dir, sample_dir, tmp_path, capsys
):
    # Its stop message says "before the first checkpoint; run again": running again must not be refused.
    out = tmp_path / "out"
    torn = out / "checkpoint-33"
    torn.mkdir(parents=True)
    (torn / "config.json").write_text("{}")  # stopped before its trainer state was written
    assert main(_retrain_argv(tiny_classifier_dir, sample_dir, out)) == 0
    assert (out / "model.safetensors").is_file() and not list(out.glob("checkpoint-*"))


def test_a_process_reading_other_data_than_the_first_stops_the_run(monkeypatch):
    # A stale copy of the data on one machine trained silently (same row count) or aborted in gloo.
    from training import checkpoints

    note = checkpoints.DataNote(load_config(TINY_CLASSIFIER_CONFIG))
    stale = {**note.data, "data.train_file": {"size": 1, "sha256": "0" * 64}}
    monkeypatch.setattr(checkpoints, "gathered", lambda data: [data, stale])
    with pytest.raises(DataError, match="data.train_file: process 1 reads other content than process 0"):
        note.on_train_begin(None, None, None)
    monkeypatch.setattr(checkpoints, "gathered", lambda data: [data, dict(data)])
    note.on_train_begin(None, None, None)  # the same data everywhere


def test_resuming_with_another_number_of_processes_says_what_changes(tmp_path, caplog):
    from training import checkpoints

    cfg = load_config(TINY_CLASSIFIER_CONFIG)
    checkpoint = tmp_path / "checkpoint-17"
    checkpoint.mkdir()
    data = checkpoints.training_data(cfg)
    (checkpoint / checkpoints.DATA_NOTE).write_text(json.dumps({**data, checkpoints.PROCESSES: 2}))
    checkpoints._check_same_data(checkpoint, cfg)
    assert "checkpoint-17 was written by a run of 2 process(es), this one has 1" in caplog.text


def test_ctrl_c_while_the_model_is_moved_in_waits_until_it_is_whole(tmp_path, monkeypatch):
    from training import final_dir

    out = tmp_path / "out"
    stage = out / final_dir.STAGE_NAME
    stage.mkdir(parents=True)
    for i in range(4):
        (out / f"f{i}").write_text("old")
        (stage / f"f{i}").write_text("new")
    replace = os.replace

    def interrupted_replace(source, target):
        replace(source, target)
        if Path(target).name == "f1":
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C between two renames

    monkeypatch.setattr(final_dir.os, "replace", interrupted_replace)
    with pytest.raises(KeyboardInterrupt):
        final_dir.publish(stage, out)
    assert [(out / f"f{i}").read_text() for i in range(4)] == ["new"] * 4 and not stage.exists()


def test_only_the_main_process_calls_checkpoints_an_interrupted_run(tmp_path, monkeypatch):
    # In a second torchrun job into a busy folder, the other processes (no lock) would call the first
    # job's checkpoints "an interrupted run" beside the main process's "in use by another run".
    from training import checkpoints

    (tmp_path / "checkpoint-4").mkdir()
    (tmp_path / "checkpoint-4" / "trainer_state.json").write_text("{}")
    cfg = load_config(TINY_CLASSIFIER_CONFIG, [f"output_dir={tmp_path}"])
    with pytest.raises(ConfigError, match="holds checkpoint-4 of an interrupted run"):
        checkpoints.checkpoint_to_resume(cfg)
    monkeypatch.setattr(checkpoints, "is_main_process", lambda: False)
    assert checkpoints.checkpoint_to_resume(cfg) is None

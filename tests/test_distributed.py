"""Two processes on the CPU (torchrun, gloo) train one model: one writer, whole-split scores, resume, predict.

Each two-process run is compared with a one-process run on the same data and the same global
batch (2 x 8 rows against 1 x 16). Both start from an already fitted tiny model and train at a
learning rate far too small to move its weights, so both score the same model: any gap in the
scores then comes from how the processes share and gather the validation and test rows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures_training import TINY_CLASSIFIER_CONFIG, classifier_overrides
from helpers import ROOT, tiny_summarizer_run

from training.cli import main

SAMPLE = ROOT / "data" / "sample"
TINY_SUMMARIZER_CONFIG = ROOT / "configs" / "summarizer" / "tiny.yaml"
# Weights move by about this much per step: nothing, at these models' float32 precision.
STILL = "train.learning_rate=1e-9"
CLASSIFIER_FILES = ("config.yaml", "normalization.json", "metrics.json", "confusion_matrix.png", "training_log.jsonl")
SUMMARIZER_FILES = ("config.yaml", "normalization.json", "metrics.json", "samples.jsonl", "training_log.jsonl")

# Loaded by every process of a launched run (PYTHONPATH): records, per rank, each file opened for
# writing (or removed) under KHABAR_TEST_WATCH; with KHABAR_TEST_KILL_AFTER_SAVE, every process is
# killed (SIGKILL, no clean-up) once all have written the first checkpoint.
PROBE = """
import os, sys
if "RANK" in os.environ and os.environ.get("KHABAR_TEST_WATCH"):
    _watch = os.environ["KHABAR_TEST_WATCH"]
    _log = open(os.path.join(os.environ["KHABAR_TEST_WRITES"], "rank%s.txt" % os.environ["RANK"]), "a", buffering=1)

    def _record(event, args):
        if event == "open":
            path, mode, flags = args
            if mode is None:
                writing = bool((flags or 0) & (os.O_WRONLY | os.O_RDWR))
            else:
                writing = any(c in mode for c in "wax+")
        else:
            path, writing = args[0], event in ("os.remove", "os.rename", "shutil.rmtree")
        if writing and isinstance(path, (str, bytes, os.PathLike)):
            path = os.fsdecode(path)
            if path.startswith(_watch):
                _log.write(event + " " + os.path.relpath(path, _watch) + "\\n")

    sys.addaudithook(_record)

if "RANK" in os.environ and os.environ.get("KHABAR_TEST_KILL_AFTER_SAVE"):
    import signal
    from transformers import Trainer

    _save = Trainer._save_checkpoint

    def _save_then_die(self, *args, **kwargs):
        _save(self, *args, **kwargs)
        import torch.distributed as dist
        dist.barrier()
        os.kill(os.getpid(), signal.SIGKILL)

    Trainer._save_checkpoint = _save_then_die
"""


def launch(
    tmp_path: Path, module: str, *args: str | Path, watch: Path | None = None, **env: str
) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node 2 -m MODULE ARGS`` from the repository root, single-threaded, offline."""
    probe = tmp_path / "probe"
    probe.mkdir(exist_ok=True)
    (probe / "sitecustomize.py").write_text(PROBE, encoding="utf-8")
    writes = tmp_path / "writes"
    writes.mkdir(exist_ok=True)
    environ = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": os.pathsep.join([str(probe), str(ROOT)]),
        "KHABAR_TEST_WATCH": str(watch or ""),
        "KHABAR_TEST_WRITES": str(writes),
        **env,
    }
    # --standalone picks a free port, so runs started at the same time do not meet.
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    return subprocess.run(
        [*command, "-m", module, *map(str, args)], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=600
    )


def writes_by_rank(tmp_path: Path) -> dict[str, list[str]]:
    """What each process opened for writing or removed in the watched folder, outside checkpoints."""
    logs = {path.stem: path.read_text().splitlines() for path in (tmp_path / "writes").glob("rank*.txt")}
    return {rank: [line for line in lines if " checkpoint-" not in line] for rank, lines in logs.items()}


def metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text(encoding="utf-8"))


def steps(out: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (out / "training_log.jsonl").read_text().splitlines()]


def assert_one_writer(tmp_path: Path, files: tuple[str, ...]) -> None:
    writes = writes_by_rank(tmp_path)
    assert writes.get("rank1", []) == [], "only the main process writes the output directory"
    # The model is written into the staging folder, then moved in (training.final_dir).
    opened = [
        line.split(" ", 1)[1].removeprefix(".khabar-final/") for line in writes["rank0"] if line.startswith("open ")
    ]
    for name in files:
        assert opened.count(name) == 1, f"{name} written {opened.count(name)} times"


# --- classifier --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def classifier_runs(fitted_classifier_dir, tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """The same fitted classifier trained one epoch by one process and by two."""
    base = tmp_path_factory.mktemp("ddp-classifier")
    one, two = base / "one", base / "two"
    common = ["train.epochs=1", "train.max_length=64", STILL]
    overrides = classifier_overrides(fitted_classifier_dir, SAMPLE, one, *common, "train.batch_size=16")
    assert main([str(TINY_CLASSIFIER_CONFIG), *overrides]) == 0
    overrides = classifier_overrides(fitted_classifier_dir, SAMPLE, two, *common, "train.batch_size=8")
    run = launch(base, "training", TINY_CLASSIFIER_CONFIG, *overrides, watch=two)
    assert run.returncode == 0, run.stderr[-3000:]
    return one, two, run


@pytest.mark.slow
def test_two_process_classifier_has_one_writer(classifier_runs) -> None:
    _, two, run = classifier_runs
    assert run.stdout.count("topic classifier written to") == 1
    assert_one_writer(two.parent, CLASSIFIER_FILES)
    assert (two / "model.safetensors").is_file() and not list(two.glob("checkpoint-*"))


@pytest.mark.slow
def test_two_process_classifier_scores_whole_splits_like_one_process(classifier_runs) -> None:
    one, two, _ = classifier_runs
    # 257 rows in global batches of 16: 17 steps. Two processes each training alone would take 33.
    assert steps(one) == steps(two) == [17]
    single, double = metrics(one), metrics(two)
    for split, rows in (("validation", 39), ("test", 40)):
        assert double[split]["rows"] == single[split]["rows"] == rows
        assert double[split]["confusion_matrix"] == single[split]["confusion_matrix"]
        for name in ("accuracy", "macro_f1", "weighted_f1"):
            assert double[split][name] == pytest.approx(single[split][name], abs=1e-9), (split, name)
        assert double[split]["per_class"] == single[split]["per_class"]
        # The loss averages per-batch means, and an uneven last batch is padded with repeated rows.
        assert double[split]["loss"] == pytest.approx(single[split]["loss"], rel=0.05)
    assert 0 < single["test"]["accuracy"] < 1, "a model that predicts varied topics, so the comparison means something"


@pytest.mark.slow
def test_two_process_run_killed_mid_way_resumes(fitted_classifier_dir, tmp_path) -> None:
    out = tmp_path / "model"
    overrides = classifier_overrides(fitted_classifier_dir, SAMPLE, out, "train.epochs=2", "train.batch_size=8")
    killed = launch(tmp_path, "training", TINY_CLASSIFIER_CONFIG, *overrides, KHABAR_TEST_KILL_AFTER_SAVE="1")
    assert killed.returncode != 0 and "topic classifier written to" not in killed.stdout
    assert [path.name for path in out.glob("checkpoint-*")] == ["checkpoint-17"]
    # A kill during the next save leaves a checkpoint without its trainer state: resume skips it.
    (out / "checkpoint-34").mkdir()
    (out / "checkpoint-34" / "config.json").write_text("{}")

    resumed = launch(tmp_path, "training", TINY_CLASSIFIER_CONFIG, *overrides, "train.resume=true")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stderr and "checkpoint-17" in resumed.stderr
    assert resumed.stdout.count("topic classifier written to") == 1
    assert steps(out) == [17, 34], "the log covers the epoch before the kill and the one after"
    assert not list(out.glob("checkpoint-*")) and metrics(out)["test"]["rows"] == 40


# --- summarizer --------------------------------------------------------------------------------


def summarizer_overrides(model_dir: Path, out: Path, *extra: str) -> list[str]:
    """The tiny summarizer config at toy size: short inputs, greedy 16-token summaries."""
    toy = ["train.max_target_length=32", "train.epochs=1", "generation.num_beams=1", "generation.max_new_tokens=16"]
    return tiny_summarizer_run(model_dir, out, *toy, *extra)


@pytest.fixture(scope="module")
def fitted_summarizer_dir(tiny_summarizer_dir, tmp_path_factory) -> Path:
    """The tiny summarizer after two quick epochs: its leads share some words with the references."""
    out = tmp_path_factory.mktemp("ddp-fitted") / "summarizer"
    fit = ["train.epochs=2", "train.batch_size=16", "train.learning_rate=2e-2", "data.max_eval_samples=4"]
    assert main([str(TINY_SUMMARIZER_CONFIG), *summarizer_overrides(tiny_summarizer_dir, out, *fit)]) == 0
    return out


@pytest.fixture(scope="module")
def summarizer_runs(fitted_summarizer_dir, tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """The same fitted summarizer trained one epoch by one process and by two (5 rows scored each epoch)."""
    base = tmp_path_factory.mktemp("ddp-summarizer")
    one, two = base / "one", base / "two"
    # One loss log, at the last step: the mean training loss must still cover both processes.
    common = [STILL, "train.generation_eval_samples=5", "train.logging_steps=100"]
    overrides = summarizer_overrides(fitted_summarizer_dir, one, *common, "train.batch_size=16")
    assert main([str(TINY_SUMMARIZER_CONFIG), *overrides]) == 0
    overrides = summarizer_overrides(fitted_summarizer_dir, two, *common, "train.batch_size=8")
    run = launch(base, "training", TINY_SUMMARIZER_CONFIG, *overrides, watch=two)
    assert run.returncode == 0, run.stderr[-3000:]
    return one, two, run


@pytest.mark.slow
def test_two_process_summarizer_has_one_writer(summarizer_runs) -> None:
    _, two, run = summarizer_runs
    assert run.stdout.count("summarizer written to") == 1
    assert_one_writer(two.parent, SUMMARIZER_FILES)
    assert (two / "generation_config.json").is_file() and not list(two.glob("checkpoint-*"))


@pytest.mark.slow
def test_two_process_summarizer_scores_whole_splits_like_one_process(summarizer_runs) -> None:
    one, two, _ = summarizer_runs
    single, double = metrics(one), metrics(two)
    # Generated summaries are gathered with every row once, in order: ROUGE pairs each with its reference.
    for split, rows in (("validation", 39), ("test", 40)):
        assert double[split]["rows"] == single[split]["rows"] == rows
        for name in ("rouge1", "rouge2", "rougeL", "gen_len", "gen_words"):
            assert double[split][name] == pytest.approx(single[split][name], abs=1e-9), (split, name)
        assert double[split]["loss"] == pytest.approx(single[split]["loss"], rel=0.05)
    assert single["test"]["rouge1"] > 0, "summaries that share words with the references"
    assert double["train"]["best_validation_rougeL"] == pytest.approx(single["train"]["best_validation_rougeL"])
    # The same weights throughout; batches and dropout differ, a sum over one process more than doubles it.
    assert double["train"]["train_loss"] == pytest.approx(single["train"]["train_loss"], rel=0.1)
    assert (two / "samples.jsonl").read_text() == (one / "samples.jsonl").read_text()


# --- inference and evaluation --------------------------------------------------------------------


@pytest.mark.slow
def test_predict_under_torchrun_covers_every_row_once(fitted_classifier_dir, tmp_path) -> None:
    rows = [json.loads(line) for line in (SAMPLE / "test.jsonl").read_text(encoding="utf-8").splitlines()][:11]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    flags = ["--tasks", "topic", "--classifier", fitted_classifier_dir, "--device", "cpu", "--quiet"]
    run = launch(tmp_path, "inference.cli", "predict", source, "-o", out, *flags)
    assert run.returncode == 0, run.stderr[-3000:]
    parts = sorted(tmp_path.glob("out.shard-*-of-2.jsonl"))
    assert [part.name for part in parts] == ["out.shard-0-of-2.jsonl", "out.shard-1-of-2.jsonl"]
    lines = [json.loads(line)["line"] for part in parts for line in part.read_text().splitlines()]
    assert sorted(lines) == list(range(1, len(rows) + 1))


def test_evaluate_refuses_to_run_under_a_launcher(tmp_path, monkeypatch, capsys) -> None:
    from training.evaluation import main as evaluate

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    args = ["--model", str(tmp_path), "--data", str(SAMPLE / "test.jsonl"), "-o", str(tmp_path / "r")]
    assert evaluate(args) == 2
    [message] = capsys.readouterr().err.splitlines()
    assert "runs as one process" in message and "WORLD_SIZE=2" in message
    assert not (tmp_path / "r").exists()
    monkeypatch.setenv("RANK", "1")
    assert evaluate(args) == 2 and capsys.readouterr().err == "", "the message is printed once, by the main process"


def test_training_warns_when_accelerate_started_one_of_several(tmp_path, monkeypatch, caplog) -> None:
    # What `accelerate launch --cpu --num_processes 2` hands its one process (checked with accelerate 1.15).
    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    overrides = [f"model.name_or_path={tmp_path / 'no-model'}", f"output_dir={tmp_path / 'out'}"]
    assert main([str(TINY_CLASSIFIER_CONFIG), *overrides]) == 2  # stops at the missing model, after the warning
    assert "accelerate launch started ONE process" in caplog.text
    assert "torchrun --nproc_per_node N" in caplog.text

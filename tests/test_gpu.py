"""Every GPU path the README promises, on the tiny models: ``pytest -m gpu`` on a CUDA machine.

bf16 training of both tasks (with the GPU-only speed settings), the float16 refusal for mT5,
``accelerate launch`` of a short run, ``khabar predict --device cuda`` and ``cuda:N`` selection.
Skipped without a CUDA device; each runs in seconds.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fixtures_training import TINY_CLASSIFIER_CONFIG, classifier_overrides
from helpers import ROOT, tiny_summarizer_run

from training.cli import main as train_main

TINY_SUMMARIZER_CONFIG = ROOT / "configs" / "summarizer" / "tiny.yaml"
SAMPLE = ROOT / "data" / "sample"

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
bf16_gpu = pytest.mark.skipif(
    not (torch.cuda.is_available() and torch.cuda.is_bf16_supported()), reason="needs a GPU with bfloat16"
)


def summarizer_overrides(model_dir: Path, out: Path, *extra: str) -> list[str]:
    """The tiny summarizer recipe at toy size: a few steps, short generations."""
    toy = ["data.max_train_samples=32", "data.max_eval_samples=4", "train.epochs=1", "train.max_target_length=16"]
    short = ["train.generation_eval_samples=2", "generation.max_new_tokens=8"]
    return tiny_summarizer_run(model_dir, out, *toy, *short, *extra, splits=("train", "validation"))


def losses(model_dir: Path) -> list[float]:
    rows = [json.loads(line) for line in (model_dir / "training_log.jsonl").read_text().splitlines()]
    return [row.get("loss", row.get("train_loss")) for row in rows if row.get("loss", row.get("train_loss"))]


@bf16_gpu
def test_the_classifier_trains_in_bf16_on_a_gpu(tiny_classifier_dir, sample_dir, tmp_path) -> None:
    out = tmp_path / "classifier"
    extra = ("train.bf16=true", "train.epochs=1", "data.max_train_samples=64")
    assert (
        train_main([str(TINY_CLASSIFIER_CONFIG), *classifier_overrides(tiny_classifier_dir, sample_dir, out, *extra)])
        == 0
    )

    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["test"]["accuracy"] <= 1.0
    assert losses(out) and all(math.isfinite(loss) for loss in losses(out))


@bf16_gpu
def test_the_summarizer_trains_in_bf16_on_a_gpu(tiny_summarizer_dir, tmp_path) -> None:
    out = tmp_path / "summarizer"
    assert (
        train_main([str(TINY_SUMMARIZER_CONFIG), *summarizer_overrides(tiny_summarizer_dir, out, "train.bf16=true")])
        == 0
    )

    log = [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines()]
    train_losses = [row["train_loss"] for row in log if row.get("train_loss") is not None]
    assert train_losses and all(math.isfinite(loss) for loss in train_losses)  # no float16-style overflow
    assert (out / "generation_config.json").is_file()


def test_float16_training_is_refused_for_mt5_on_a_gpu(tiny_summarizer_dir, tmp_path, capsys) -> None:
    code = train_main(
        [str(TINY_SUMMARIZER_CONFIG), *summarizer_overrides(tiny_summarizer_dir, tmp_path / "m", "train.fp16=true")]
    )

    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "train.fp16" in err and "overflow to NaN" in err and err.count("\n") == 0


def test_the_gpu_batch_probe_keeps_the_effective_batch(tiny_classifier_dir, sample_dir, tmp_path, caplog) -> None:
    out = tmp_path / "probed"
    extra = ("train.batch_size=2", "train.gradient_accumulation_steps=4", "train.max_steps=2", "train.epochs=1")
    with caplog.at_level("WARNING", logger="training.batch_probe"):
        assert (
            train_main(
                [str(TINY_CLASSIFIER_CONFIG), *classifier_overrides(tiny_classifier_dir, sample_dir, out, *extra)]
            )
            == 0
        )

    assert "training at batch 8 x 1 accumulation (config: 2 x 4)" in caplog.text


def test_accelerate_launch_runs_a_short_training(tiny_classifier_dir, sample_dir, tmp_path) -> None:
    if shutil.which("accelerate") is None and not (Path(sys.executable).parent / "accelerate").exists():
        pytest.skip("accelerate's launcher is not installed")
    out = tmp_path / "launched"
    overrides = classifier_overrides(tiny_classifier_dir, sample_dir, out, "train.max_steps=2", "train.epochs=1")
    launcher = str(Path(sys.executable).parent / "accelerate")
    command = [
        launcher,
        "launch",
        "--num_processes",
        "1",
        "--mixed_precision",
        "no",
        "-m",
        "training",
        str(TINY_CLASSIFIER_CONFIG),
        *overrides,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)

    assert done.returncode == 0, done.stderr[-2000:]
    assert (out / "model.safetensors").is_file() and (out / "metrics.json").is_file()


def test_khabar_predict_runs_on_the_gpu(tiny_classifier_dir, tiny_summarizer_dir, tmp_path, capsys) -> None:
    from inference.cli import main as khabar

    rows = [json.loads(line) for line in (SAMPLE / "test.jsonl").read_text(encoding="utf-8").splitlines()][:6]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    flags = [
        "--classifier",
        tiny_classifier_dir,
        "--summarizer",
        tiny_summarizer_dir,
        "--device",
        "cuda",
        "--num-beams",
        "2",
        "--max-new-tokens",
        "4",
    ]

    assert khabar(["predict", str(source), "-o", str(out), *map(str, flags)]) == 0
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(records) == 6 and all("topic" in r and isinstance(r["summary"], str) for r in records)


def test_cuda_n_puts_the_models_on_that_gpu(tiny_classifier_dir, tiny_summarizer_dir) -> None:
    from inference import Classifier, Summarizer

    last = torch.cuda.device_count() - 1
    classifier = Classifier.from_pretrained(tiny_classifier_dir, device=f"cuda:{last}")
    summarizer = Summarizer.from_pretrained(tiny_summarizer_dir, device=f"cuda:{last}")

    assert next(classifier.forward.model.parameters()).device == torch.device("cuda", last)
    assert next(summarizer.generate.model.parameters()).device == torch.device("cuda", last)
    assert classifier("تیم ملی فوتبال ایران برد.")["label"] in classifier.labels
    assert isinstance(summarizer("تیم ملی فوتبال ایران برد.", num_beams=1, max_new_tokens=4), str)


# The fitted tiny classifier in bfloat16 against float32, measured on the CPU (the whole model cast,
# as on a GPU) over five fitted models (the tiny tokenizers differ from build to build): logits
# within +-3.7, top scores moved by 0.0012-0.0135, no label changed, batched or one at a time.
BF16_SCORE_ERROR = 0.0135
# Room for a GPU's other kernels and summation order.
MARGIN = 4


def _scores(classifier, texts: list[str], one_at_a_time: bool = False) -> torch.Tensor:
    from inference.inputs import prepare_texts

    prepared, _ = prepare_texts(texts, classifier.digits)
    if one_at_a_time:
        logits = torch.cat([classifier.logits([text]) for text in prepared])
    else:
        logits = classifier.logits(prepared)
    return logits.softmax(-1)


def test_on_a_gpu_float32_matches_the_cpu(fitted_classifier_dir, sample_articles) -> None:
    from inference import Classifier

    on_cpu = Classifier.from_pretrained(fitted_classifier_dir, device="cpu", dtype="float32")
    on_gpu = Classifier.from_pretrained(fitted_classifier_dir, device="cuda", dtype="float32")

    assert _scores(on_gpu, sample_articles) == pytest.approx(_scores(on_cpu, sample_articles), abs=1e-4)


@bf16_gpu
def test_on_a_gpu_bf16_scores_do_not_depend_on_padding(fitted_classifier_dir, sample_articles) -> None:
    """Tells a padding or attention-kernel fault (batched differs from alone) from bf16 rounding."""
    from inference import Classifier

    on_gpu = Classifier.from_pretrained(fitted_classifier_dir, device="cuda", dtype="bfloat16")

    batched, alone = _scores(on_gpu, sample_articles), _scores(on_gpu, sample_articles, one_at_a_time=True)
    assert (batched - alone).abs().max().item() <= MARGIN * BF16_SCORE_ERROR


@bf16_gpu
def test_on_a_gpu_bf16_alone_stays_within_the_measured_rounding(fitted_classifier_dir, sample_articles) -> None:
    from inference import Classifier

    on_cpu = Classifier.from_pretrained(fitted_classifier_dir, device="cpu", dtype="float32")
    on_gpu = Classifier.from_pretrained(fitted_classifier_dir, device="cuda", dtype="bfloat16")

    alone, expected = _scores(on_gpu, sample_articles, one_at_a_time=True), _scores(on_cpu, sample_articles)
    assert (alone - expected).abs().max().item() <= MARGIN * BF16_SCORE_ERROR

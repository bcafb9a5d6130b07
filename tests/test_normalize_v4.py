"""Version 4: a hamza above after Persian heh or yeh is the letter it is written for (the ezafe ۀ, ئ)."""

from __future__ import annotations

import json

import pytest

from inference.normalize import NORMALIZER_VERSION, normalize

HAMZA = "\u0654"


def test_new_models_get_version_4() -> None:
    assert NORMALIZER_VERSION == 4


@pytest.mark.parametrize(
    ("typed", "written"),
    [
        ("خانه" + HAMZA + " ما", "خانۀ ما"),  # the ezafe as a Persian keyboard types it
        ("مسی" + HAMZA + "له", "مسئله"),
        ("مسى" + HAMZA + "له", "مسئله"),  # alef maksura, read as yeh
    ],
)
def test_a_hamza_above_heh_or_yeh_reads_as_the_letter(typed: str, written: str) -> None:
    assert normalize(typed) == normalize(written) == written
    assert normalize(typed, version=3) != written  # version 3 dropped the hamza, and keeps doing so


def test_other_text_reads_exactly_as_in_version_3(sample_dir) -> None:
    for line in (sample_dir / "train.jsonl").open(encoding="utf-8"):
        article = json.loads(line)["article"]
        if HAMZA not in article:
            assert normalize(article) == normalize(article, version=3)


def test_a_model_trained_with_version_3_is_served_with_it(tiny_classifier_dir, tmp_path) -> None:
    import shutil

    from inference import Classifier
    from inference.normalize import save_normalization

    model = tmp_path / "model"
    shutil.copytree(tiny_classifier_dir, model, ignore=shutil.ignore_patterns(".khabar-cache"))
    save_normalization(model, "persian", 3)
    classifier = Classifier.from_pretrained(model, device="cpu", backend="torch")
    assert classifier.prepare("خانه" + HAMZA + " ما")[0] == ["خانه ما"]


@pytest.mark.parametrize(
    ("text", "version_3"),
    [
        ("شبکه ای بی سی نیوز", "شبکه\u200cای بی سی نیوز"),  # the ABC network, not "a network, B C"
        ("ترانه ام کلثوم", "ترانه\u200cام کلثوم"),  # Umm Kulthum, not "my song"
        ("مکه ام القری", "مکه\u200cام القری"),
    ],
)
def test_spelled_letters_and_a_kunya_are_not_joined_as_enclitics(text: str, version_3: str) -> None:
    assert normalize(text) == text
    assert normalize(text, version=3) == version_3  # version 3 keeps its rules for its models


@pytest.mark.parametrize("text", ["خانه ای بی نظیر", "نامه ای که رسید", "دوره ای سی ساله", "خانه ام"])
def test_an_enclitic_before_a_word_that_is_not_a_spelled_acronym_is_still_joined(text: str) -> None:
    assert normalize(text) == normalize(text, version=3) != text

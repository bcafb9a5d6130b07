"""Persian ROUGE: right on Persian text, offline, with hand-checked values."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.metrics import rouge
from training.metrics.rouge import ROUGE_TYPES, rouge_per_example

PERSIAN_WORDS = ["تیم", "ملی", "فوتبال", "ایران", "برد", "بازار", "ارز", "دولت", "مجلس", "قیمت"]


def test_identical_persian_summaries_score_100() -> None:
    summary = "تیم ملی فوتبال ایران در بازی دوستانه برد. سرمربی از بازیکنان تشکر کرد."
    assert rouge([summary], [summary]) == {name: 100.0 for name in ROUGE_TYPES}


def test_disjoint_persian_summaries_score_0() -> None:
    assert rouge(["قیمت دلار در بازار ارز کاهش یافت"], ["تیم ملی فوتبال برد"]) == {name: 0.0 for name in ROUGE_TYPES}


def test_hand_computed_reordered_pair() -> None:
    # prediction «ایران تیم ملی برد», reference «تیم ملی ایران برد»:
    # unigrams 4/4 -> 100; bigrams {تیم ملی} 1 of 3 each side -> 33.33; LCS «تیم ملی برد» 3/4 -> 75.
    scores = rouge(["ایران تیم ملی برد"], ["تیم ملی ایران برد"])
    assert scores["rouge1"] == pytest.approx(100.0)
    assert scores["rouge2"] == pytest.approx(100 / 3)
    assert scores["rougeL"] == pytest.approx(75.0)
    assert scores["rougeLsum"] == pytest.approx(75.0)  # one sentence each: same as rougeL


def test_hand_computed_partial_overlap() -> None:
    # 5 predicted words, 4 reference words, 4 shared: P=4/5, R=1 -> F1=8/9.
    # bigrams: 2 shared of 4 predicted and 3 reference: P=1/2, R=2/3 -> F1=4/7.
    scores = rouge(["تیم ملی فوتبال ایران برد"], ["تیم ملی ایران برد"])
    assert scores["rouge1"] == pytest.approx(800 / 9)
    assert scores["rouge2"] == pytest.approx(400 / 7)
    assert scores["rougeL"] == pytest.approx(800 / 9)


def test_rouge_lsum_uses_persian_sentences() -> None:
    # Swapping two sentences breaks the whole-text LCS (3 of 5 words -> 60) but every
    # reference sentence is still found whole among the predicted sentences (-> 100).
    scores = rouge(["فوتبال ایران. تیم ملی برد؟"], ["تیم ملی برد؟ فوتبال ایران."])
    assert scores["rougeL"] == pytest.approx(60.0)
    assert scores["rougeLsum"] == pytest.approx(100.0)


def test_text_is_normalized_before_scoring() -> None:
    # Arabic yeh and kaf, Latin and Arabic-Indic digits, a ZWNJ where the other side has a space.
    prediction = "كاهش ۲۰ درصدي قيمت می‌شود"
    reference = "کاهش 20 درصدی قیمت می شود"
    assert rouge([prediction], [reference])["rouge1"] == pytest.approx(100.0)


def test_punctuation_is_not_a_word() -> None:
    assert rouge(["«تیم ملی» برد!"], ["تیم ملی برد"])["rouge2"] == pytest.approx(100.0)


def test_per_example_scores_keep_order_and_average_to_corpus_score() -> None:
    predictions = ["تیم ملی برد", "بازار ارز", "دولت مجلس قیمت"]
    references = ["تیم ملی برد", "قیمت طلا", "دولت و مجلس"]
    per_example = rouge_per_example(predictions, references)
    assert per_example["rouge1"][:2] == [100.0, 0.0]
    assert per_example["rouge1"][2] == pytest.approx(200 / 3)  # 2 of 3 words each side
    corpus = rouge(predictions, references)
    for name in ROUGE_TYPES:
        assert len(per_example[name]) == 3
        assert corpus[name] == pytest.approx(sum(per_example[name]) / 3)


def test_mismatched_or_bad_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        rouge(["الف", "ب"], ["الف"])
    with pytest.raises(TypeError, match="lists of strings"):
        rouge("تیم ملی", "تیم ملی")
    with pytest.raises(ValueError, match="no predictions"):
        rouge([], [])


sentences = st.lists(st.sampled_from(PERSIAN_WORDS), min_size=1, max_size=8).map(" ".join)


@settings(max_examples=40, deadline=None)
@given(prediction=sentences, reference=sentences)
def test_scores_are_bounded_and_f1_is_symmetric(prediction: str, reference: str) -> None:
    forward = rouge([prediction], [reference])
    backward = rouge([reference], [prediction])
    for name in ROUGE_TYPES:
        assert 0.0 <= forward[name] <= 100.0
        assert forward[name] == pytest.approx(backward[name])

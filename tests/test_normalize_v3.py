"""Version 3: decomposed text (a letter plus a combining madda or hamza) reads as precomposed text does."""

from __future__ import annotations

import json
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.normalize import NORMALIZER_VERSION, normalize

# Words whose precomposed letters decompose into a base letter and a mark the harakat rule deletes.
WORDS = ["آمریکا", "مسئله", "مؤسسه", "خانۀ", "أحمد", "إیران", "رئیس‌جمهور"]


def test_new_models_get_version_3_or_later() -> None:
    assert NORMALIZER_VERSION >= 3


@pytest.mark.parametrize("word", WORDS)
def test_decomposed_input_normalizes_as_the_precomposed_word_does(word: str) -> None:
    decomposed = unicodedata.normalize("NFD", word)
    assert decomposed != word  # the case is real: the word has a mark to lose
    assert normalize(decomposed, version=3) == normalize(word, version=3)


@pytest.mark.parametrize("word", ["آمریکا", "مسئله"])
def test_version_2_is_unchanged_for_models_trained_with_it(word: str) -> None:
    assert normalize(unicodedata.normalize("NFD", word), version=2) != normalize(word, version=2)


def test_text_already_composed_reads_exactly_as_in_version_2(sample_dir) -> None:
    for line in (sample_dir / "train.jsonl").open(encoding="utf-8"):
        article = json.loads(line)["article"]
        if unicodedata.is_normalized("NFC", article):
            assert normalize(article, version=3) == normalize(article, version=2)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([*WORDS, " ", "\u200c", "\u064e", "\u0654", "\u0653", "ی", "ه"]), max_size=12))
def test_canonically_equivalent_texts_normalize_alike(parts: list[str]) -> None:
    text = "".join(parts)
    for version in (3, 4):
        nfd, nfc = unicodedata.normalize("NFD", text), unicodedata.normalize("NFC", text)
        assert normalize(nfd, version=version) == normalize(nfc, version=version)

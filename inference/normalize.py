"""Persian text normalization shared by training and inference.

The same function runs on every training example and on every text a user sends for
prediction, so a model never sees text in a form it was not trained on. The policy:

* Arabic yeh/alef maksura (``ي`` ``ى``) become Persian yeh ``ی``; Arabic kaf ``ك`` becomes ``ک``.
* Digits are unified to **Persian digits** (``۰``-``۹``) by default: Latin and Arabic-Indic
  digits both become Persian ones, which is how Persian news is written and read. Pass
  ``digits="latin"`` for ASCII digits or ``digits="keep"`` to leave them as they are.
* Harakat (diacritics, U+064B-U+065F, U+0670) and tatweel (``ـ``) are removed.
* Zero-width and other invisible format characters are removed, except a single ZWNJ
  (U+200C, نیم‌فاصله) between two letters; a ZWNJ next to a space or repeated is dropped.
* Control characters are removed; compatibility forms (Arabic presentation forms,
  full-width letters, no-break spaces) are folded with NFKC.
* Runs of spaces and tabs collapse to one space; line breaks are kept, and blank lines
  collapse to a single paragraph break (``"\\n\\n"``).

Version 2 (``version=1`` gives the first policy exactly, for models trained with it):

* An LRM, RLM or soft hyphen (U+200E, U+200F, U+00AD) between two Persian letters becomes a
  ZWNJ instead of being deleted, so ``رسانه‎های`` does not become ``رسانههای`` (a ZWJ, which
  asks letters to join, is still deleted).
* Half-spaces typed as spaces are repaired by the conservative rules of
  :mod:`inference.half_space` (``می گردد`` -> ``می‌گردد``, ``رسانه ها`` -> ``رسانه‌ها``).

Version 3 is version 2 on the text's composed form (Unicode NFC): decomposed
input (a letter followed by a combining madda or hamza, as macOS and some web pages write it)
reads as the precomposed text does, instead of losing the mark with the harakat (``آمریکا``
stayed ``امریکا``, ``مسئله`` became ``مسیله``). Text already in NFC, which is nearly all news text
(24 of the 21,419 texts of the shared corpus were not), normalizes exactly as in version 2.

Version 4 (the default) is version 3 with a hamza above after Persian heh or yeh written as the
letter it stands for: NFC leaves ``ه`` + ◌ٔ (the ezafe as Persian keyboards type it) and ``ی`` + ◌ٔ
apart, so version 3 lost the hamza (``خانهٔ`` read ``خانه``, ``مسیٔله`` read ``مسیله``); now they
read ``خانۀ`` and ``مسئله``. Its half-space repair also leaves ``ای`` before two spelled letters
(``شبکه ای بی سی``, the ABC network) and ``ام`` before an Arabic kunya (``ترانه ام کلثوم``) apart.

``normalize`` is idempotent and never raises on any ``str``. A model directory records the
version it was trained with in ``normalization.json``; a record without one is version 1.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Literal

from inference.half_space import RULES, RULES_V4, Rule, repair_half_spaces, repair_zwnj_gaps

DigitPolicy = Literal["persian", "latin", "keep"]

NORMALIZER_NAME = "khabar"
NORMALIZER_VERSION = 4
"""The version new models are trained with and ``normalize`` applies by default."""
NORMALIZER_VERSIONS = (1, 2, 3, 4)
NORMALIZATION_FILE = "normalization.json"

ZWNJ = "\u200c"
_PERSIAN_DIGITS = "۰۱۲۳۴۵۶۷۸۹"
_ARABIC_DIGITS = "٠١٢٣٤٥٦٧٨٩"
_LATIN_DIGITS = "0123456789"
_HARAKAT = [*range(0x064B, 0x0660), 0x0670]
_TATWEEL = 0x0640
_LINE_BREAKS = {"\r\n": "\n", "\r": "\n", "\v": "\n", "\f": "\n", "\x85": "\n", "\u2028": "\n", "\u2029": "\n\n"}


# Planes that can hold control, format or surrogate characters: 0-3, and 14 (tags, variation
# selectors). Planes 4-13 are unassigned and 15-16 private use, so scanning only these planes
# finds the same characters as scanning all 1.1 million, in a third of the import time.
_PLANES_WITH_CONTROLS = (range(0x40000), range(0xE0000, 0xF0000))


def _invisible_codepoints(planes: tuple[range, ...] = _PLANES_WITH_CONTROLS) -> list[int]:
    """Control (Cc), format (Cf) and lone-surrogate (Cs) characters, except ZWNJ and whitespace."""
    keep = {ord(ZWNJ), ord("\n"), ord("\t")}
    return [
        cp for plane in planes for cp in plane if cp not in keep and unicodedata.category(chr(cp)) in ("Cc", "Cf", "Cs")
    ]


_DELETE = dict.fromkeys([*_invisible_codepoints(), *_HARAKAT, _TATWEEL])
_LETTER_MAP = {ord("ي"): "ی", ord("ى"): "ی", ord("ك"): "ک"}


def _digit_map(policy: DigitPolicy) -> dict[int, str]:
    if policy == "keep":
        return {}
    target = _PERSIAN_DIGITS if policy == "persian" else _LATIN_DIGITS
    sources = (_LATIN_DIGITS + _ARABIC_DIGITS + _PERSIAN_DIGITS).replace(target, "")
    return {ord(src): target[i % 10] for i, src in enumerate(sources)}


_TABLES = {policy: {**_DELETE, **_LETTER_MAP, **_digit_map(policy)} for policy in ("persian", "latin", "keep")}
_LINE_BREAK_RE = re.compile("|".join(map(re.escape, _LINE_BREAKS)))
_LETTER = r"[^\W\d_]"
# A ZWNJ survives only between two letters; runs of ZWNJ first collapse to one.
_ZWNJ_RUN_RE = re.compile(ZWNJ + "{2,}")
_STRAY_ZWNJ_RE = re.compile(f"(?<!{_LETTER}){ZWNJ}|{ZWNJ}(?!{_LETTER})")
_V2_STRAY_ZWNJ_RE = re.compile(f"{ZWNJ}(?:(?<!{_LETTER}{ZWNJ})|(?!{_LETTER}))")  # the same, literal first (faster)
_SPACES_RE = re.compile(r"[^\S\n]+")
_SPACE_AROUND_NEWLINE_RE = re.compile(r" ?\n ?")
_BLANK_LINES_RE = re.compile(r"\n{3,}")


# v2: LRM, RLM and soft hyphen are kept through the first pass so that a run of them (with or
# without a ZWNJ) between two Arabic-script letters, presentation forms included, can become one
# ZWNJ; anywhere else they are deleted as in v1. ZWJ is still deleted: it asks for the letters to
# join, and in the shared news corpus 5 of its 7 uses between letters sit inside a word (ویژه, پیش).
_JOINERS = "\u200e\u200f\u00ad"
_ARABIC_SCRIPT_LETTER = (
    "[\u0620-\u063f\u0641-\u064a\u066e\u066f\u0671-\u06d3\u06d5\u06ee\u06ef\u06fa-\u06fc\u06ff"
    "\u0750-\u077f\ufb50-\ufdff\ufe70-\ufefc]"  # Arabic, Arabic Supplement, presentation forms
)
_JOINER_RE = re.compile(f"[{_JOINERS}]")
# ZWNJs, the first joiner, then any of both: one way to match a run, so a long run that is not
# followed by a letter fails in linear time ("[J Z]*[J][J Z]*" tried every split: 32,000 LRMs took 16 s).
_JOINER_AS_ZWNJ_RE = re.compile(
    f"(?<={_ARABIC_SCRIPT_LETTER}){ZWNJ}*[{_JOINERS}][{_JOINERS}{ZWNJ}]*(?={_ARABIC_SCRIPT_LETTER})"
)


def _char_class(codepoints) -> re.Pattern:
    """One regex character class for ``codepoints``, written as ranges."""
    ranges: list[list[int]] = []
    for cp in sorted(codepoints):
        if ranges and cp == ranges[-1][1] + 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    return re.compile("[" + "".join(f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in ranges) + "]")


# v2 applies v1's translation table as one deletion regex plus a few ``str.replace`` calls: the
# same result (no mapped character is deleted or produced by another mapping) at several times
# the speed of ``str.translate`` with a 2,300-entry table on Persian text.
_V2_DELETE_RE = _char_class(_DELETE)
_V2_DELETE_KEEPING_JOINERS_RE = _char_class(cp for cp in _DELETE if chr(cp) not in _JOINERS)
_V2_REPLACEMENTS = {
    policy: [(chr(cp), target) for cp, target in {**_LETTER_MAP, **_digit_map(policy)}.items()]
    for policy in ("persian", "latin", "keep")
}
# Whitespace that survives the table and NFKC besides the plain space (tab, ogham space mark, ...).
_ODD_SPACES = [
    c
    for c in map(chr, range(0x3001))
    if c.isspace() and c not in " \n" and c not in _LINE_BREAKS and unicodedata.normalize("NFKC", c) == c
]


def _translate_v2(text: str, digits: DigitPolicy, delete: re.Pattern) -> str:
    text = delete.sub("", text)
    for source, target in _V2_REPLACEMENTS[digits]:
        if source in text:
            text = text.replace(source, target)
    return text


def normalize(text: str, digits: DigitPolicy = "persian", version: int = NORMALIZER_VERSION) -> str:
    """Return the canonical form of Persian ``text`` used at training and inference time.

    ``version`` selects the policy (see the module docstring); a model is served with the
    version it was trained with (:func:`load_normalization`).

    Example:
        >>> normalize("كتاب‌هاي  عربي ١٢٣")
        'کتاب‌های عربی ۱۲۳'
        >>> normalize("سلام\\u200c \\u200cدنیا")
        'سلام دنیا'
        >>> normalize("رسانه\\u200eها می گویند") == "رسانه\\u200cها می\\u200cگویند"
        True
        >>> normalize("رسانه\\u200eها می گویند", version=1)
        'رسانهها می گویند'
        >>> normalize(None)
        Traceback (most recent call last):
        ...
        TypeError: normalize() takes a string, got NoneType
    """
    if not isinstance(text, str):  # else unicodedata's message names neither normalize nor the argument
        raise TypeError(f"normalize() takes a string, got {type(text).__name__}")
    if not isinstance(digits, str) or digits not in _TABLES:  # a list is unhashable: "in" would raise
        raise ValueError(f"digits must be one of {sorted(_TABLES)}, got {digits!r}")
    if isinstance(version, bool):  # True == 1 would pick version 1 silently
        raise ValueError(f"normalization version must be one of {NORMALIZER_VERSIONS}, got {version!r}")
    if version == 1:
        return _normalize_v1(text, digits)
    if version == 2:
        return _normalize_v2(text, digits)
    if version == 3:
        return _normalize_v2(_composed(text), digits)
    if version == 4:
        return _normalize_v2(_with_hamza_letters(_composed(text)), digits, rules=RULES_V4)
    raise ValueError(f"normalization version must be one of {NORMALIZER_VERSIONS}, got {version!r}")


def _composed(text: str) -> str:
    """``text`` in NFC, so a letter and a combining mark that make one letter are one before marks are deleted."""
    return text if unicodedata.is_normalized("NFC", text) else unicodedata.normalize("NFC", text)


# Hamza above after Persian heh or yeh: NFC composes it only after Arabic yeh and the letter ae, so
# the ezafe typed on a Persian keyboard (ه + ◌ٔ) and ی + ◌ٔ lost the hamza with the harakat in v3.
_HAMZA_LETTERS = {"\u0647\u0654": "\u06c0", "\u06cc\u0654": "\u0626", "\u0649\u0654": "\u0626"}
_HAMZA_LETTER_RE = re.compile("|".join(_HAMZA_LETTERS))


def _with_hamza_letters(text: str) -> str:
    """``هٔ`` as ``ۀ`` and ``یٔ`` as ``ئ``: the letters they are written for (version 4).

    Example:
        >>> _with_hamza_letters("خانه\u0654 ما") == "خانۀ ما"
        True
    """
    return _HAMZA_LETTER_RE.sub(lambda m: _HAMZA_LETTERS[m.group()], text) if "\u0654" in text else text


def count_repairs(text: str, digits: DigitPolicy = "persian") -> Counter:
    """How many times each v2 rule changed ``text`` (``joiner_to_zwnj`` and the half-space rules).

    Example:
        >>> sorted(count_repairs("سفره\\u200fی ما، می کنند").items())
        [('joiner_to_zwnj', 1), ('verb_prefix', 1)]
    """
    counts: Counter = Counter()
    _normalize_v2(text, digits, counts)
    return counts


def _normalize_v1(text: str, digits: DigitPolicy) -> str:
    table = _TABLES[digits]
    text = _LINE_BREAK_RE.sub(lambda m: _LINE_BREAKS[m.group()], text)
    # Delete invisibles before NFKC so removed characters cannot hide a composition,
    # then translate again: NFKC can unfold presentation forms into Arabic yeh or harakat.
    text = unicodedata.normalize("NFKC", text.translate(table)).translate(table)
    if ZWNJ in text:
        text = _STRAY_ZWNJ_RE.sub("", _ZWNJ_RUN_RE.sub(ZWNJ, text))
    text = _SPACES_RE.sub(" ", text)
    text = _SPACE_AROUND_NEWLINE_RE.sub("\n", text)
    text = _BLANK_LINES_RE.sub("\n\n", text).strip()
    # Deleting a mark or a ZWNJ can leave a base letter next to a combining mark it composes with.
    return unicodedata.normalize("NFC", text)


def _normalize_v2(
    text: str, digits: DigitPolicy, counts: Counter | None = None, rules: tuple[Rule, ...] = RULES
) -> str:
    # v1's steps in the same order; each costly regex pass runs only when a cheap test finds work for it.
    if _LINE_BREAK_RE.search(text):
        text = _LINE_BREAK_RE.sub(lambda m: _LINE_BREAKS[m.group()], text)
    if _JOINER_RE.search(text):
        # Harakat and tatweel go first, so a joiner after a vowel mark still sits between letters.
        text = _translate_v2(text, digits, _V2_DELETE_KEEPING_JOINERS_RE)
        text, joined = _JOINER_AS_ZWNJ_RE.subn(ZWNJ, text)
        if counts is not None and joined:
            counts["joiner_to_zwnj"] += joined
    text = _translate_v2(text, digits, _V2_DELETE_RE)
    text = _translate_v2(unicodedata.normalize("NFKC", text), digits, _V2_DELETE_RE)
    if ZWNJ in text:
        text = repair_zwnj_gaps(text, counts)
        if ZWNJ * 2 in text:
            text = _ZWNJ_RUN_RE.sub(ZWNJ, text)
        text = _V2_STRAY_ZWNJ_RE.sub("", text)
    if "  " in text or any(space in text for space in _ODD_SPACES):
        text = _SPACES_RE.sub(" ", text)
    if " \n" in text or "\n " in text:
        text = _SPACE_AROUND_NEWLINE_RE.sub("\n", text)
    if "\n\n\n" in text:
        text = _BLANK_LINES_RE.sub("\n\n", text)
    # The repairs only turn a space between two Persian letters into a ZWNJ, which NFC keeps.
    return repair_half_spaces(unicodedata.normalize("NFC", text.strip()), counts, rules)


_SENTENCE_END_RE = re.compile(
    r"""(?<=[.!?؟؛…])["'»”)\]]*(?:\s+|(?=[^\W\d_]))"""  # terminator run, closing quotes, then space or a letter
    r"|\n+"  # every line break ends a sentence
)


def split_sentences(text: str) -> list[str]:
    """Split Persian text into sentences on ``. ! ? ؟ ؛`` and line breaks.

    A period between digits (``۲.۵``, ``2.5``) is part of a number, not a sentence end.

    Example:
        >>> split_sentences("قیمت ۲.۵ درصد بالا رفت. بازار آرام است؟ بله\\nپایان")
        ['قیمت ۲.۵ درصد بالا رفت.', 'بازار آرام است؟', 'بله', 'پایان']
    """
    parts = []
    start = 0
    for match in _SENTENCE_END_RE.finditer(text):
        parts.append(text[start : match.end()])
        start = match.end()
    parts.append(text[start:])
    return [part.strip() for part in parts if part.strip()]


def join_title(title: str | None, text: str) -> str:
    r"""The classifier's input when a headline is given: the title, a line break, then the article.

    Training (``data.title_column``) and inference (``--title-column``) both use this, so the
    model sees the same layout at both times.

    Example:
        >>> join_title("استقلال برد", "متن خبر")
        'استقلال برد\nمتن خبر'
        >>> join_title(None, "متن خبر")
        'متن خبر'
    """
    return f"{title.strip()}\n{text}" if title and title.strip() else text


def normalization_record(digits: DigitPolicy = "persian", version: int = NORMALIZER_VERSION) -> dict:
    """Describe the normalization applied, as saved in a model directory.

    Example:
        >>> normalization_record()["digits"], normalization_record()["version"]
        ('persian', 4)
    """
    return {"normalizer": NORMALIZER_NAME, "version": version, "digits": digits}


def save_normalization(
    model_dir: str | Path, digits: DigitPolicy = "persian", version: int = NORMALIZER_VERSION
) -> Path:
    """Record in ``model_dir`` how training text was normalized, so inference does the same.

    Example:
        >>> import tempfile
        >>> model_dir = tempfile.mkdtemp()
        >>> save_normalization(model_dir, version=1).name
        'normalization.json'
        >>> load_normalization(model_dir)["version"]
        1
    """
    path = Path(model_dir) / NORMALIZATION_FILE
    path.write_text(json.dumps(normalization_record(digits, version), indent=2) + "\n", encoding="utf-8")
    return path


def load_normalization(model_dir: str | Path | None) -> dict:
    """Read the normalization recorded in ``model_dir``; the default when none is recorded.

    A hub checkpoint or a directory trained elsewhere has no record and gets the default. A
    record without ``version`` predates versioning and is version 1, so old models keep their
    normalization. A record that cannot be read is a ``ValueError`` naming the file.

    Example:
        >>> load_normalization(None) == normalization_record()
        True
    """
    path = Path(model_dir) / NORMALIZATION_FILE if model_dir else None
    if path is None or not path.is_file():
        return normalization_record()
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:  # json's own message names neither the file nor that it is JSON
        kind = "UTF-8 text" if isinstance(exc, UnicodeDecodeError) else "valid JSON"
        raise ValueError(f"{path}: not {kind} ({exc})") from None
    if (
        not isinstance(record, dict)
        or record.get("normalizer") != NORMALIZER_NAME
        or record.get("digits") not in _TABLES
    ):
        raise ValueError(f"{path}: unknown normalization record {record!r}")
    record.setdefault("version", 1)
    if record["version"] not in NORMALIZER_VERSIONS or isinstance(record["version"], bool):
        known = ", ".join(map(str, NORMALIZER_VERSIONS))
        raise ValueError(f"{path}: unknown normalization version {record['version']!r} (known: {known})")
    return record

r"""Half-space (ZWNJ, نیم‌فاصله) repairs of normalization v2, as a few conservative rules.

Persian writes the verb prefix ``می``, plural ``ها`` and several suffixes joined to their word by
a ZWNJ (``می‌گردد``, ``رسانه‌ها``), but typists often use a plain space instead, which a
tokenizer then reads as two words. Each rule below replaces **only a space** (never a line
break) by a ZWNJ, and only where the second part cannot be a word of its own in that spot:

* ``verb_prefix``: ``می``/``نمی`` + space + a known verb form (:mod:`inference.persian_words`).
* ``plural``: ``ها``, ``های``, ``هایی`` after a word of two or more Persian letters.
* ``comparative``: ``ترین`` after a word; ``تر`` after a listed adjective or before ``از``
  (``تر`` alone also means "wet").
* ``enclitic_after_heh``: ``ام``, ``ای``, ``اش`` after a word ending in ``ه`` (``گونه ای``),
  except the interjection ``ای کاش`` and spelled-out letters (``ام آر آی``); from version 4
  also ``ای`` before two spelled letters (``شبکه ای بی سی``) and the kunya ``ام کلثوم``, ``ام ال...``.
* ``space_before_zwnj``: a space typed next to a ZWNJ inside a word (``حاشیه ‌های``) is
  dropped when the ZWNJ joins a suffix; elsewhere the ZWNJ is dropped and the space kept
  (``با ‌مدیریت`` stays two words), and ``می ‌کند`` is then joined by ``verb_prefix`` only for a
  known verb (news writes ``ماه می‌ در`` for the month of May).

Two separate words (``کادر فنی``), times (``۱۱:۲۰``), line breaks and ``سوءتعبیر`` are never
touched, and a ZWNJ is never turned into any other character.

Example:
    >>> repair_half_spaces("این رسانه ها می گویند")
    'این رسانه\u200cها می\u200cگویند'
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from inference.persian_words import BARE_FORMS, COMPARATIVE_BASES, PAST_STEMS, PRESENT_STEMS

ZWNJ = "\u200c"
# Persian/Arabic letters after normalization (no digits, punctuation, harakat or tatweel).
LETTER = "[\u0620-\u063f\u0641-\u064a\u066e\u066f\u0671-\u06d3\u06d5\u06ee\u06ef\u06fa-\u06fc\u06ff]"
# The end of a word: no letter, digit or ZWNJ follows (the start is checked with look-behinds).
_END = rf"(?![\w{ZWNJ}])"


def _alternation(words) -> str:
    # Longest first, so that ``کشان`` is tried before ``کش``.
    return "|".join(sorted(map(re.escape, words), key=lambda w: (-len(w), w)))


_VERB = (
    f"(?:(?:{_alternation(PRESENT_STEMS)})(?:یم|ید|ند|م|ی|د)"
    f"|(?:{_alternation(PAST_STEMS)})(?:یم|ید|ند|م|ی)?"
    f"|(?:{_alternation(BARE_FORMS)})){_END}"
)
_SUFFIXES_AFTER_ZWNJ = (
    "ها های هایی هایم هایت هایش هایمان هایتان هایشان تر تری ترین ام ات اش ای مان تان شان ایم اید اند"
).split()
# Letter names read out in acronyms (ام آر آی = MRI, ام اس = MS): there ام is a word.
_SPELLED_LETTER = "پی|آر|اس|بی|جی|سی|ال|اف|تی|دی|ای"
# Space (not a line break) and ZWNJ mixed, with at least one of each: a half-space typed with a space.
# Each part matches one way (no two neighbouring runs share a character), so a long run of spaces
# that is not followed by a suffix fails in linear time; "[^\S\n]*[^\S\n{ZWNJ}]*" tried every split.
_SPACE_ZWNJ_GAP = rf"(?:[^\S\n]+{ZWNJ}+[^\S\n]*|{ZWNJ}+[^\S\n]+)"


@dataclass(frozen=True)
class Rule:
    r"""One repair: ``pattern`` matches the gap to replace, ``replacement`` fills it.

    ``trigger`` is a substring that every match contains, checked first so that text without
    it costs one ``in`` test (keeps normalization fast).

    Example:
        >>> RULES[0].name, RULES[0].apply("نمی دانم")[0]
        ('verb_prefix', 'نمی\u200cدانم')
    """

    name: str
    pattern: re.Pattern
    replacement: str
    trigger: str

    def apply(self, text: str) -> tuple[str, int]:
        r"""The repaired text and how many gaps were replaced.

        Example:
            >>> RULES[1].apply("آن ها و این ها")
            ('آن\u200cها و این\u200cها', 2)
        """
        if self.trigger not in text:
            return text, 0
        return self.pattern.subn(self.replacement, text)


# Patterns start with a literal (``می``, `` ها``) and check the context behind it afterwards:
# the regex engine then jumps from one occurrence of the literal to the next instead of
# trying a look-behind at every character, which keeps v2 above 5 MB/s.
_MI_STARTS_WORD = rf"(?:(?<![\w{ZWNJ}]می)|(?<=(?<![\w{ZWNJ}])نمی))"  # after ``می``: it began a word, or ``نمی`` did
_WORD_BEFORE_SPACE = rf"(?<={LETTER}{LETTER} "  # a word of two or more letters, then the space; closed by callers


def _after_base(literal: str) -> str:
    """Look-behind: ``literal`` follows a whole word of COMPARATIVE_BASES (one group per length)."""
    by_length: dict[int, list[str]] = {}
    for word in COMPARATIVE_BASES:
        by_length.setdefault(len(word), []).append(word)
    return (
        "(?:"
        + "|".join(rf"(?<=(?<![\w{ZWNJ}])(?:{_alternation(words)}){literal})" for words in by_length.values())
        + ")"
    )


# Applied before stray ZWNJs are dropped (the ZWNJ is the writer's signal that a word continues).
ZWNJ_GAP_RULES: tuple[Rule, ...] = (
    Rule(
        "space_before_zwnj",
        re.compile(rf"(?<={LETTER}){_SPACE_ZWNJ_GAP}(?=(?:{_alternation(_SUFFIXES_AFTER_ZWNJ)}){_END})"),
        ZWNJ,
        ZWNJ,
    ),
)

# Applied last, on text whose spaces are already single and whose ZWNJs sit between letters.
RULES: tuple[Rule, ...] = (
    Rule("verb_prefix", re.compile(rf"می{_MI_STARTS_WORD} (?={_VERB})"), f"می{ZWNJ}", "می "),
    Rule("plural", re.compile(rf" ها{_WORD_BEFORE_SPACE}ها)(?=(?:یی|ی)?{_END})"), f"{ZWNJ}ها", " ها"),
    Rule("comparative", re.compile(rf" ترین{_WORD_BEFORE_SPACE}ترین){_END}"), f"{ZWNJ}ترین", " ترین"),
    Rule("comparative", re.compile(rf" تر{_after_base(' تر')}{_END}"), f"{ZWNJ}تر", " تر"),
    Rule("comparative", re.compile(rf" تر{_WORD_BEFORE_SPACE}تر)(?= از{_END})"), f"{ZWNJ}تر", " تر از"),
    Rule(
        "enclitic_after_heh",
        re.compile(rf" ا(?<={LETTER}{LETTER}ه ا)(?=[مشی]{_END})(?!ی کاش|م (?:{_SPELLED_LETTER}){_END})"),
        f"{ZWNJ}ا",
        "ه ا",
    ),
)


# Version 4's rules: ``ای`` before two spelled letters is a word too (شبکه ای بی سی = the ABC
# network), and so is ``ام`` before an Arabic kunya (ام کلثوم, ام القری, ام البنین).
RULES_V4: tuple[Rule, ...] = (
    *RULES[:-1],
    Rule(
        "enclitic_after_heh",
        re.compile(
            rf" ا(?<={LETTER}{LETTER}ه ا)(?=[مشی]{_END})"
            rf"(?!ی کاش|م (?:{_SPELLED_LETTER}){_END}|ی (?:{_SPELLED_LETTER}) (?:{_SPELLED_LETTER}){_END}"
            rf"|م کلثوم{_END}|م ال{LETTER})"
        ),
        f"{ZWNJ}ا",
        "ه ا",
    ),
)


def _run(rules: tuple[Rule, ...], text: str, counts: Counter | None) -> str:
    for rule in rules:
        text, changed = rule.apply(text)
        if counts is not None and changed:
            counts[rule.name] += changed
    return text


def repair_zwnj_gaps(text: str, counts: Counter | None = None) -> str:
    r"""Drop a space typed beside a ZWNJ when the ZWNJ joins a suffix.

    Example:
        >>> repair_zwnj_gaps("حاشیه \u200cهای فراوان، با \u200cمدیریت") == "حاشیه\u200cهای فراوان، با \u200cمدیریت"
        True
    """
    return _run(ZWNJ_GAP_RULES, text, counts)


def repair_half_spaces(text: str, counts: Counter | None = None, rules: tuple[Rule, ...] = RULES) -> str:
    r"""Replace a space by a ZWNJ where a prefix or suffix was written apart (see the module rules).

    ``counts``, when given, is increased by the number of repairs of each rule. ``rules`` are
    :data:`RULES` (normalization versions 2 and 3) or :data:`RULES_V4`.

    Example:
        >>> counts = Counter()
        >>> repair_half_spaces("بزرگ ترین نامه ای که کادر فنی نمی داند", counts)
        'بزرگ\u200cترین نامه\u200cای که کادر فنی نمی\u200cداند'
        >>> sorted(counts.items())
        [('comparative', 1), ('enclitic_after_heh', 1), ('verb_prefix', 1)]
    """
    return _run(rules, text, counts)

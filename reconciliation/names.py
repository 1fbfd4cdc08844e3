"""Script-aware name folding and comparison (Vietnamese diacritics, Arabic letter variants)."""

from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass
from typing import Literal

from rapidfuzz import fuzz
from rapidfuzz.distance import OSA

NameKind = Literal["same", "script_only", "word_order", "typo", "different"]

# Edits (insert, delete, substitute, swap adjacent) a folded name may differ by and still be
# a typo. A similarity threshold alone is not used: names sharing a common family and
# middle name (Nguyen Van An / Nguyen Van Binh) score ~0.86 yet are different people.
TYPO_MAX_EDITS = 1
TYPO_MAX_EDITS_LONG = 2
TYPO_LONG_NAME = 16  # folded length from which TYPO_MAX_EDITS_LONG applies

# Spelled joined or spaced (عبد الله / عبدالله, ابو بكر / ابوبكر, نور الدين / نورالدين):
# a prefix is joined to the next word and a suffix to the previous one.
_COMPOUND_PREFIXES = frozenset({"عبد", "ابو"})
_COMPOUND_SUFFIXES = frozenset({"الله", "الدين"})

_APOSTROPHES = "'`\u2018\u2019\u02bc\u02b9"  # O'Brien == OBrien
_MARK_RANGES = (
    (0x0300, 0x036F),  # combining diacriticals (Vietnamese tones, accents after NFKD)
    (0x1AB0, 0x1AFF),
    (0x1DC0, 0x1DFF),
    (0x20D0, 0x20FF),
    (0xFE20, 0xFE2F),
    (0x0610, 0x061A),  # Arabic honorific marks
    (0x064B, 0x065F),  # tashkeel (harakat, shadda, sukun) and hamza above/below
    (0x0670, 0x0670),  # superscript alef
    (0x06D6, 0x06ED),  # Quranic annotation marks
    (0x08D3, 0x08FF),
)
_LETTERS = {
    "đ": "d",  # NFD does not decompose đ
    "ð": "d",  # eth, typed for Đ by legacy Vietnamese encodings
    "أ": "ا",
    "إ": "ا",
    "آ": "ا",
    "ٱ": "ا",
    "ة": "ه",
    "ى": "ي",
    "ی": "ي",  # Farsi yeh from Persian keyboards
    "ک": "ك",  # keheh
    "ؤ": "و",
    "ئ": "ي",
}


def _build_fold_table() -> list[int | str | None]:
    """Map punctuation and symbols to spaces; delete marks, tatweel and format characters.

    A list indexed by code point (BMP) rather than a dict: ``str.translate`` then never
    pays for a missed lookup, which halves the cost per name.
    """
    table: list[int | str | None] = list(range(0x10000))
    for cp in range(0x10000):
        category = unicodedata.category(chr(cp))
        if category[0] in "PS" or category == "Cc":
            table[cp] = " "
        elif category == "Cf":  # ZWJ/ZWNJ, directional marks, soft hyphen
            table[cp] = None
    for low, high in _MARK_RANGES:
        for cp in range(low, high + 1):
            if unicodedata.category(chr(cp)).startswith("M"):
                table[cp] = None
    for apostrophe in _APOSTROPHES:
        table[ord(apostrophe)] = None
    table[0x0640] = None  # tatweel
    for i in range(10):
        table[0x0660 + i] = str(i)  # Arabic-Indic digits
        table[0x06F0 + i] = str(i)  # Eastern Arabic-Indic digits
    for letter, replacement in _LETTERS.items():
        table[ord(letter)] = replacement
    return table


_FOLD_TABLE = _build_fold_table()


def fold(name: str | None) -> str:
    """Reduce a name to the form compared for equality: lower case, no diacritics or
    punctuation, canonical Arabic letters and compounds, single spaces; ``None`` → ``""``."""
    if not name:
        return ""
    return _fold(name)


@functools.lru_cache(maxsize=1 << 16)
def _fold(name: str) -> str:
    # Cached: names repeat a lot (a population has far fewer distinct full names than
    # people), and the registry side of every comparison is folded again per record.
    if name.isascii():
        return " ".join(name.lower().translate(_FOLD_TABLE).split())
    # NFKD before casefold catches compatibility forms that fold to upper case (ℌ → H);
    # after it, splits what casefold composed so the marks can be dropped.
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", name).casefold())
    words = decomposed.translate(_FOLD_TABLE).split()
    if not _COMPOUND_PREFIXES.isdisjoint(words) or not _COMPOUND_SUFFIXES.isdisjoint(words):
        words = _join_compounds(words)
    return unicodedata.normalize("NFC", " ".join(words))


def _join_compounds(words: list[str]) -> list[str]:
    joined: list[str] = []
    join_next = False
    for word in words:
        if joined and (join_next or word in _COMPOUND_SUFFIXES):
            joined[-1] += word
        else:
            joined.append(word)
        join_next = word in _COMPOUND_PREFIXES
    return joined


@functools.lru_cache(maxsize=1 << 16)
def _plain(name: str | None) -> str:
    """Only case, spacing and Unicode composition removed: what ``strict_script`` compares."""
    return " ".join(unicodedata.normalize("NFC", name or "").casefold().split())


@dataclass(frozen=True, slots=True)
class NameComparison:
    """How two names differ: ``equal`` says whether it is a mismatch at all, ``kind`` how,
    ``score`` (0..1) the similarity of the folded names with their words sorted."""

    equal: bool
    kind: NameKind
    score: float


def compare(a: str | None, b: str | None, *, strict_script: bool = False) -> NameComparison:
    """Compare two names; a difference only in what :func:`fold` removes is ``script_only``,
    which is equal unless ``strict_script``."""
    if _plain(a) == _plain(b):
        return NameComparison(equal=True, kind="same", score=1.0)
    folded_a, folded_b = fold(a), fold(b)
    if folded_a == folded_b:
        return NameComparison(equal=not strict_script, kind="script_only", score=1.0)
    if not folded_a or not folded_b:
        return NameComparison(equal=False, kind="different", score=0.0)
    sorted_a = " ".join(sorted(folded_a.split()))
    sorted_b = " ".join(sorted(folded_b.split()))
    if sorted_a == sorted_b:
        return NameComparison(equal=False, kind="word_order", score=1.0)
    score = fuzz.ratio(sorted_a, sorted_b) / 100.0
    longest = max(len(folded_a), len(folded_b))
    budget = TYPO_MAX_EDITS_LONG if longest >= TYPO_LONG_NAME else TYPO_MAX_EDITS
    edits = min(
        OSA.distance(folded_a, folded_b, score_cutoff=budget + 1),
        OSA.distance(sorted_a, sorted_b, score_cutoff=budget + 1),
    )
    kind: NameKind = "typo" if edits <= budget else "different"
    return NameComparison(equal=False, kind=kind, score=score)


_SEVERITY: dict[NameKind, str] = {
    "script_only": "low",
    "word_order": "low",
    "typo": "medium",
    "different": "high",
}


def name_severity(cmp: NameComparison) -> str | None:
    """Severity of ``NAME_MISMATCH`` for a comparison (SPEC §5); ``None`` when names match."""
    return None if cmp.equal else _SEVERITY[cmp.kind]

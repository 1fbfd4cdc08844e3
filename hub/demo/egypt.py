"""Egyptian names, governorates and national numbers for ``hub demo --scheme eg``.

Registry names are written the official way (hamza on alef, taa marbuta, alef maqsura,
``عبد الله`` spaced); sector files carry the variants SPEC §5 says are the same name:
bare alef, ``ه`` for ``ة``, ``ي`` for ``ى``, tashkeel, tatweel, joined compounds — and IDs
in Arabic-Indic digits. :func:`fold_arabic` is this module's own statement of when two
spellings are one name, written from SPEC §5 and independent of the reconciler's.
"""

from __future__ import annotations

import random
from datetime import date

from hub.idschemes.eg import GOVERNORATE_CODES, MAX_SERIAL, EgyptNationalNumber, make_id

SCHEME = EgyptNationalNumber()

GOVERNORATES_AR: dict[str, str] = {
    "01": "القاهرة", "02": "الإسكندرية", "03": "بورسعيد", "04": "السويس", "11": "دمياط",
    "12": "الدقهلية", "13": "الشرقية", "14": "القليوبية", "15": "كفر الشيخ", "16": "الغربية",
    "17": "المنوفية", "18": "البحيرة", "19": "الإسماعيلية", "21": "الجيزة", "22": "بني سويف",
    "23": "الفيوم", "24": "المنيا", "25": "أسيوط", "26": "سوهاج", "27": "قنا", "28": "أسوان",
    "29": "الأقصر", "31": "البحر الأحمر", "32": "الوادي الجديد", "33": "مطروح",
    "34": "شمال سيناء", "35": "جنوب سيناء",
}  # fmt: skip
"""Governorates of residence (code → Arabic name); 88 (born abroad) is a birth code only."""

assert set(GOVERNORATES_AR) | {"88"} == set(GOVERNORATE_CODES)

GOVERNORATES = tuple(sorted(GOVERNORATES_AR))
GOVERNORATE_WEIGHTS = {
    "01": 10.0, "21": 9.0, "02": 5.5, "13": 7.5, "12": 6.8, "14": 5.9, "18": 6.5, "24": 6.0,
    "26": 5.3, "25": 4.8, "16": 5.3, "17": 4.5, "15": 3.6, "23": 3.9, "22": 3.5, "27": 3.5,
}  # fmt: skip
BORN_ABROAD_SHARE = 0.02
UNKNOWN_GOVERNORATES = tuple(f"{i:02d}" for i in range(100) if f"{i:02d}" not in GOVERNORATE_CODES)

MALE = (
    "محمد", "أحمد", "محمود", "مصطفى", "إبراهيم", "إسماعيل", "علي", "حسن", "حسين", "عمر",
    "خالد", "يوسف", "طارق", "كريم", "أسامة", "حمزة", "يحيى", "عيسى", "موسى", "سامح", "شريف",
    "هشام", "وليد", "عمرو", "أيمن", "أشرف", "إيهاب", "عادل", "عماد", "ياسر", "تامر", "هاني",
    "مجدي", "جمال", "سعيد", "فتحي", "رمضان", "أنور", "مرتضى", "عبد الله", "عبد الرحمن",
    "عبد العزيز", "عبد الحميد", "عبد الفتاح", "عبد المنعم", "عبد الرحيم", "نور الدين",
    "صلاح الدين", "أبو بكر",
)  # fmt: skip
FEMALE = (
    "فاطمة", "عائشة", "خديجة", "مريم", "زينب", "نور", "سارة", "هدى", "منى", "سلمى", "ليلى",
    "نادية", "سعاد", "أمل", "إيمان", "آمال", "أسماء", "إسراء", "آية", "هبة", "رحاب", "شيماء",
    "دعاء", "سماح", "ياسمين", "رانيا", "منة الله", "هالة", "نجلاء", "عزة", "رشا", "مها",
    "نهى", "غادة", "سلوى", "أميرة",
)  # fmt: skip
FAMILY = (
    "المصري", "الشافعي", "النجار", "السيد", "الشربيني", "البنا", "الجمال", "منصور",
    "سليمان", "عثمان", "رضوان", "الحسيني", "الدسوقي", "الطنطاوي", "أبو زيد", "أبو العلا",
    "عطية", "سلامة", "شحاتة", "فرج", "بدوي", "عبد الله", "إبراهيم", "حسن", "مرسي",
    "الشناوي", "عبد الغني", "زكي", "حجازي", "الأنصاري",
)  # fmt: skip
STREETS = (
    "التحرير", "رمسيس", "الهرم", "فيصل", "جامعة الدول العربية", "شبرا", "الجيش", "بورسعيد",
    "طلعت حرب", "محمد فريد", "الثورة", "النصر", "الجلاء", "سعد زغلول", "الجمهورية",
    "أحمد عرابي", "مصطفى النحاس", "عباس العقاد",
)  # fmt: skip

# -- what is one name (SPEC §5) ------------------------------------------------------------

_HAMZA_ALEFS = "أإآٱ"
TASHKEEL = "\u064e\u064f\u0650\u064b\u064c\u064d\u0651\u0652"
TATWEEL = "\u0640"
COMPOUND_PREFIXES = ("عبد", "أبو")
COMPOUND_SUFFIXES = ("الله", "الدين")
_LETTER_FOLD = str.maketrans(
    {**{c: "ا" for c in _HAMZA_ALEFS}, "ة": "ه", "ى": "ي", "ؤ": "و", "ئ": "ي",
     **{c: None for c in TASHKEEL + TATWEEL + "\u0670"}}
)  # fmt: skip
_FOLDED_PREFIXES = tuple(p.translate(_LETTER_FOLD) for p in COMPOUND_PREFIXES)


def fold_arabic(name: str) -> str:
    """The form in which two spellings of an Arabic name are the same name: alef forms,
    taa marbuta, alef maqsura, ؤ/ئ, tashkeel, tatweel and compound spacing removed."""
    words = name.translate(_LETTER_FOLD).split()
    out: list[str] = []
    join_next = False
    for word in words:
        if out and (join_next or word in COMPOUND_SUFFIXES):
            out[-1] += word
        else:
            out.append(word)
        join_next = word in _FOLDED_PREFIXES
    return " ".join(out)


def plain(name: str) -> str:
    """How many bank systems store an Arabic name: bare alef, ``ه`` for ``ة``, ``ي`` for
    ``ى`` (the same name, SPEC §5)."""
    return name.translate(str.maketrans({**{c: "ا" for c in _HAMZA_ALEFS}, "ة": "ه", "ى": "ي"}))


ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


def arabic_indic(value: str) -> str:
    """``29001011234567`` → ``٢٩٠٠١٠١١٢٣٤٥٦٧`` (other characters kept)."""
    return value.translate(ARABIC_INDIC)


def variant_kinds(variant: str, official: str) -> list[str]:
    """Which SPEC §5 variants tell ``variant`` from the ``official`` spelling (for the noise
    figures the demo prints); empty when they are equal."""
    if variant == official:
        return []
    kinds = []
    if any(c in variant for c in TASHKEEL):
        kinds.append("tashkeel")
    if TATWEEL in variant:
        kinds.append("tatweel")
    bare = variant.translate({ord(c): None for c in TASHKEEL + TATWEEL})
    if bare.count(" ") != official.count(" "):
        kinds.append("compound_spacing")
    squeezed, ref = bare.replace(" ", ""), official.replace(" ", "")
    if len(squeezed) == len(ref):
        pairs = [(a, b) for a, b in zip(squeezed, ref, strict=True) if a != b]
        if any(b in _HAMZA_ALEFS for _, b in pairs):
            kinds.append("hamza")
        if any(b == "ة" for _, b in pairs):
            kinds.append("taa_marbuta")
        if any(b == "ى" for _, b in pairs):
            kinds.append("alef_maqsura")
    return kinds


# -- generation ---------------------------------------------------------------------------


def full_name(sex: str, rng: random.Random) -> str:
    """Given name, father's, grandfather's, family name: ``محمد أحمد عبد الرحمن المصري``."""
    given = rng.choice(MALE if sex == "M" else FEMALE)
    father = rng.choice(MALE)
    grandfather = rng.choice(MALE)
    while grandfather == father:
        grandfather = rng.choice(MALE)
    family = rng.choice(FAMILY)
    return " ".join((given, father, grandfather, family))


def address(governorate: str, rng: random.Random) -> str:
    return f"{rng.randint(1, 250)} شارع {rng.choice(STREETS)}، {GOVERNORATES_AR[governorate]}"


def new_id(birth: date, governorate: str, sex: str, rng: random.Random) -> str:
    """A valid national number (random serial and check digit)."""
    return make_id(birth, governorate, sex, rng.randint(0, MAX_SERIAL), rng.randrange(10))


def invalid_id(cid: str, rng: random.Random) -> str:
    """A mistyped national number that fails the eg structure check."""
    while True:
        variant = rng.randrange(7)
        if variant == 0:  # a digit dropped
            i = rng.randrange(14)
            bad = cid[:i] + cid[i + 1 :]
        elif variant == 1:  # a digit doubled
            i = rng.randrange(14)
            bad = cid[: i + 1] + cid[i:]
        elif variant == 2:  # a letter for a look-alike digit
            i = rng.randrange(1, 14)
            bad = cid[:i] + rng.choice("OIlSBZ") + cid[i + 1 :]
        elif variant == 3:  # a century digit that does not exist
            bad = rng.choice("14567890") + cid[1:]
        elif variant == 4:  # an impossible birth date
            month, day = rng.choice((("13", cid[5:7]), ("00", cid[5:7]), (cid[3:5], "32")))
            bad = cid[:3] + month + day + cid[7:]
        elif variant == 5:  # a governorate code that does not exist
            bad = cid[:7] + rng.choice(UNKNOWN_GOVERNORATES) + cid[9:]
        else:  # the last digits cut off
            bad = cid[: rng.choice((9, 12, 13))]
        info = SCHEME.inspect(bad)
        if info is not None and info.kind == "invalid":
            return bad


def benign_spelling(name: str, rng: random.Random) -> str:
    """The same name as a sector file might store it: one SPEC §5 variant that applies."""
    words = name.split(" ")
    options = []
    if any(c in name for c in _HAMZA_ALEFS):
        options.append("hamza")
    if "ة" in name:
        options.append("taa_marbuta")
    if "ى" in name:
        options.append("alef_maqsura")
    if any(w in COMPOUND_PREFIXES for w in words[:-1]) or any(
        w in COMPOUND_SUFFIXES for w in words[1:]
    ):
        options.append("compound_spacing")
    options += ["tashkeel", "tatweel"]
    kind = rng.choice(options)
    if kind == "hamza":
        return "".join("ا" if c in _HAMZA_ALEFS else c for c in name)
    if kind == "taa_marbuta":
        return name.replace("ة", "ه")
    if kind == "alef_maqsura":
        return name.replace("ى", "ي")
    if kind == "compound_spacing":
        out: list[str] = []
        for w in words:
            if out and (out[-1] in COMPOUND_PREFIXES or w in COMPOUND_SUFFIXES):
                out[-1] += w
            else:
                out.append(w)
        return " ".join(out)
    if kind == "tashkeel":
        return " ".join(_with_tashkeel(w, rng) for w in words)
    return " ".join(_with_tatweel(w, rng) for w in words)


# Letters that join the next one: tatweel may follow them (not ا د ذ ر ز و ة ى and hamzas).
_JOINING = set("بتثجحخسشصضطظعغفقكلمنهيئ")


def _with_tatweel(word: str, rng: random.Random) -> str:
    spots = [i for i in range(len(word) - 1) if word[i] in _JOINING]
    if not spots:
        return word
    i = rng.choice(spots)
    return word[: i + 1] + TATWEEL * rng.randint(1, 3) + word[i + 1 :]


def _with_tashkeel(word: str, rng: random.Random) -> str:
    out = []
    for i, c in enumerate(word):
        out.append(c)
        if "\u0621" <= c <= "\u064a" and (i == 0 or rng.random() < 0.4):
            out.append(rng.choice(TASHKEEL[:3] + TASHKEEL[6:]))
    return "".join(out)


# Typos use letters that are no variant of another letter (never ا ه ي و or their forms).
_TYPO_LETTERS = "بتثجحخدذرزسشصضطظعغفقكلمن"


def other_name(name: str, sex: str, rng: random.Random) -> str:
    """A name that is not the same name: another given name, a typo, or words reordered."""
    folded = fold_arabic(name)
    words = name.split(" ")
    while True:
        variant = rng.randrange(3)
        if variant == 0:
            first = rng.choice(MALE if sex == "M" else FEMALE)
            candidate = " ".join([first, *_after_given(words)])
        elif variant == 1:
            w = rng.randrange(len(words))
            word = words[w]
            i = rng.randrange(len(word))
            op = rng.randrange(2)
            if op == 0 and len(word) > 2:
                word = word[:i] + word[i + 1 :]
            else:
                word = word[:i] + rng.choice(_TYPO_LETTERS) + word[i + 1 :]
            candidate = " ".join([*words[:w], word, *words[w + 1 :]])
        else:
            candidate = " ".join([*words[1:], words[0]])
        if candidate.strip() and fold_arabic(candidate) != folded:
            return candidate


def _after_given(words: list[str]) -> list[str]:
    """The words after the given name (a compound given name is two words)."""
    if words[0] in COMPOUND_PREFIXES or (len(words) > 1 and words[1] in COMPOUND_SUFFIXES):
        return words[2:]
    return words[1:]

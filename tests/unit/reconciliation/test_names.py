"""Script-aware name folding and comparison."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciliation.names import NameComparison, compare, fold, name_severity

VIETNAMESE_LETTERS = (
    "abcdefghijklmnopqrstuvwxyzàáảãạăằắẳẵặâầấẩẫậđèéẻẽẹêềếểễệìíỉĩịòóỏõọôồốổỗộơờớởỡợùúủũụưừứửữựỳýỷỹỵ"
)
vietnamese_names = st.text(alphabet=VIETNAMESE_LETTERS + " ", max_size=40)
arabic_names = st.text(alphabet="ابتثجحخدذرسشصضطظعغفقكلمنهويءأإآٱةىؤئـًٌٍَُِّْ ", max_size=40)
any_names = st.one_of(vietnamese_names, arabic_names, st.text(max_size=40))


def assert_not_a_mismatch(a: str, b: str) -> None:
    result = compare(a, b)
    assert result.equal, result
    assert result.kind in ("same", "script_only")
    assert name_severity(result) is None


def test_unaccented_bank_spelling_is_not_a_mismatch():
    assert_not_a_mismatch("NGUYEN VAN AN", "Nguyễn Văn An")
    assert fold("NGUYEN VAN AN") == fold("Nguyễn Văn An") == "nguyen van an"


def test_d_with_stroke_folds_to_d():
    assert_not_a_mismatch("Đặng", "DANG")
    assert fold("Đỗ Đức") == "do duc"


def test_tone_mark_placement_variants_fold_equal():
    assert fold("hòa") == fold("hoà") == "hoa"
    assert_not_a_mismatch("Nguyễn Thị Hòa", "Nguyễn Thị Hoà")


def test_decomposed_and_composed_vietnamese_fold_equal():
    assert fold("Nguye\u0302\u0303n") == fold("Nguyễn")


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("عبدالله", "عبد الله"),
        ("ابو بكر", "ابوبكر"),
        ("أبو بكر", "ابوبكر"),
        ("نور الدين", "نورالدين"),
    ],
)
def test_arabic_compound_spacing_is_not_a_mismatch(a, b):
    assert_not_a_mismatch(a, b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("أحمد", "احمد"),
        ("إيمان", "ايمان"),
        ("آمنة", "امنه"),
        ("فاطمة", "فاطمه"),
        ("مصطفى", "مصطفي"),
        ("ٱلله", "الله"),
    ],
)
def test_arabic_letter_variants_are_not_a_mismatch(a, b):
    assert_not_a_mismatch(a, b)


def test_tashkeel_and_tatweel_are_ignored():
    assert fold("مُحَمَّد") == fold("محـــمد") == fold("محمد")
    assert_not_a_mismatch("مُحَمَّد عَلِيّ", "محمد علي")


def test_arabic_indic_digits_fold_to_ascii():
    assert fold("محمد ٢") == fold("محمد ۲") == "محمد 2"


def test_case_spacing_and_punctuation_are_ignored():
    assert fold("  O'Brien,   MARY-Ann ") == "obrien mary ann"


def test_fold_of_nothing_is_empty():
    assert fold(None) == fold("") == ""


def test_strict_script_counts_a_diacritic_difference_as_a_low_mismatch():
    result = compare("NGUYEN VAN AN", "Nguyễn Văn An", strict_script=True)
    assert (result.equal, result.kind) == (False, "script_only")
    assert name_severity(result) == "low"


def test_strict_script_still_ignores_case_and_spacing():
    assert compare("nguyễn  văn an", "NGUYỄN VĂN AN", strict_script=True).kind == "same"


def test_word_order_is_a_low_mismatch():
    result = compare("Nguyễn Văn An", "AN NGUYEN VAN")
    assert result == NameComparison(equal=False, kind="word_order", score=1.0)
    assert name_severity(result) == "low"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Nguyễn Văn An", "Nguyen Van Anh"),
        ("Ahmed Ali", "Ahmad Ali"),
        ("عبدالرحمن محمد", "عبد الرحمان محمد"),
    ],
)
def test_one_letter_typo_is_a_medium_mismatch(a, b):
    result = compare(a, b)
    assert (result.equal, result.kind) == (False, "typo")
    assert 0.0 < result.score < 1.0
    assert name_severity(result) == "medium"


def test_transposed_letters_are_a_typo():
    assert compare("Mohamed Ahmed", "Mohamed Ahmde").kind == "typo"


def test_two_typos_in_a_long_name_are_still_a_typo():
    assert compare("Mohamed Ahmed Ali Hassan", "Mohamad Ahmed Aly Hassan").kind == "typo"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Nguyễn Văn An", "Trần Thị Bình"),
        ("Nguyễn Văn An", "Nguyễn Văn Bình"),  # shared family and middle name
        ("محمد احمد", "فاطمة حسن"),
    ],
)
def test_a_different_name_is_a_high_mismatch(a, b):
    result = compare(a, b)
    assert (result.equal, result.kind) == (False, "different")
    assert result.score < 1.0
    assert name_severity(result) == "high"


def test_a_missing_name_differs_from_a_present_one():
    result = compare(None, "Nguyễn Văn An")
    assert result == NameComparison(equal=False, kind="different", score=0.0)


def test_scores_rank_closer_names_higher():
    assert (
        compare("Nguyen Van An", "Nguyen Van Anh").score
        > compare("Nguyen Van An", "Tran Thi Binh").score
    )


@given(any_names)
def test_fold_is_idempotent(name):
    assert fold(fold(name)) == fold(name)


@given(vietnamese_names)
def test_fold_ignores_case_of_vietnamese_names(name):
    assert fold(name) == fold(name.upper())


@given(vietnamese_names)
def test_folded_vietnamese_is_plain_ascii(name):
    assert fold(name).isascii()


@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=40))
def test_ascii_fast_path_agrees_with_the_general_path(name):
    zero_width_joiner = "\u200d"  # non-ASCII, folds to nothing: forces the general path
    assert fold(name) == fold(name + zero_width_joiner)


@given(any_names)
def test_a_name_compared_with_itself_is_the_same(name):
    assert compare(name, name) == NameComparison(equal=True, kind="same", score=1.0)


@given(any_names, any_names)
def test_compare_is_symmetric(a, b):
    ab, ba = compare(a, b), compare(b, a)
    assert (ab.kind, ab.equal) == (ba.kind, ba.equal)
    assert ab.score == pytest.approx(ba.score)
    assert 0.0 <= ab.score <= 1.0

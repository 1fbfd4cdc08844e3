"""Vietnamese names, provinces and CCCD numbers: the default demo population (``--scheme vn``).

Registry names are written the official way; sector files carry spellings that fold equal
(old tone placement, NFD, upper case, double spaces) and banks store upper-case ASCII.
:func:`fold_name` is this module's own statement of when two spellings are one name.
"""

from __future__ import annotations

import random
import unicodedata

from hub.idschemes.vn import PROVINCE_CODES, VietnamPersonalId

SCHEME = VietnamPersonalId()

FAMILY = (
    ("Nguyễn", 38), ("Trần", 11), ("Lê", 9.5), ("Phạm", 7), ("Hoàng", 4), ("Huỳnh", 3.5),
    ("Phan", 4.5), ("Vũ", 2.5), ("Võ", 2.5), ("Đặng", 2.1), ("Bùi", 2), ("Đỗ", 1.4),
    ("Hồ", 1.3), ("Ngô", 1.3), ("Dương", 1), ("Lý", 0.5), ("Trương", 0.8), ("Đinh", 0.7),
    ("Mai", 0.5), ("Lâm", 0.5), ("Cao", 0.4), ("Lương", 0.4), ("Trịnh", 0.5), ("Đoàn", 0.5),
    ("Hà", 0.4), ("Tạ", 0.3), ("Tô", 0.2), ("Châu", 0.2), ("Lưu", 0.3), ("Kiều", 0.1),
)  # fmt: skip
MIDDLE = {
    "M": (
        ("Văn", 30), ("Hữu", 6), ("Đức", 8), ("Minh", 8), ("Quốc", 6), ("Thanh", 6),
        ("Công", 5), ("Quang", 6), ("Hoàng", 4), ("Ngọc", 3), ("Xuân", 3), ("Anh", 3),
        ("Gia", 3), ("Trọng", 3), ("Đình", 4), ("Tiến", 2), ("Thành", 3), ("Bảo", 2),
    ),
    "F": (
        ("Thị", 40), ("Ngọc", 8), ("Thu", 6), ("Thanh", 6), ("Kim", 5), ("Minh", 4),
        ("Bích", 3), ("Mỹ", 4), ("Phương", 4), ("Hồng", 5), ("Thùy", 4), ("Khánh", 3),
        ("Bảo", 3), ("Quỳnh", 3), ("Hoài", 2), ("Diệu", 2), ("Tuyết", 2), ("Thúy", 2),
    ),
}  # fmt: skip
GIVEN = {
    "M": (
        "An", "Bảo", "Bình", "Cường", "Chiến", "Dũng", "Duy", "Đạt", "Đông", "Đức", "Giang",
        "Hải", "Hào", "Hiếu", "Hòa", "Hoàng", "Hùng", "Huy", "Khang", "Khánh", "Khoa", "Kiên",
        "Lâm", "Long", "Lộc", "Minh", "Nam", "Nghĩa", "Nhân", "Phát", "Phong", "Phúc", "Quân",
        "Quang", "Sơn", "Tài", "Tâm", "Thắng", "Thành", "Thịnh", "Toàn", "Trí", "Trung",
        "Tuấn", "Tùng", "Việt", "Vinh", "Vũ", "Thủy", "Khải",
    ),
    "F": (
        "Anh", "Châu", "Chi", "Diệp", "Dung", "Duyên", "Giang", "Hà", "Hạnh", "Hằng", "Hiền",
        "Hoa", "Hòa", "Hồng", "Hương", "Huyền", "Lan", "Liên", "Linh", "Loan", "Mai", "My",
        "Nga", "Ngân", "Ngọc", "Nhung", "Oanh", "Phương", "Quyên", "Quỳnh", "Tâm", "Thảo",
        "Thủy", "Thúy", "Trang", "Trâm", "Trinh", "Tuyết", "Uyên", "Vân", "Vy", "Xuân", "Yến",
    ),
}  # fmt: skip
# Spellings from before the 1980s tone-placement reform: same name, folds equal.
OLD_TONE = {"Hòa": "Hoà", "Thủy": "Thuỷ", "Thúy": "Thuý", "Thùy": "Thuỳ", "Khỏe": "Khoẻ"}
STREETS = (
    "Lê Lợi", "Trần Hưng Đạo", "Nguyễn Trãi", "Hai Bà Trưng", "Lý Thường Kiệt", "Quang Trung",
    "Hùng Vương", "Điện Biên Phủ", "Phan Đình Phùng", "Nguyễn Huệ", "Lê Duẩn", "Võ Văn Tần",
    "Cách Mạng Tháng Tám", "Nguyễn Văn Cừ", "Bạch Đằng", "Trường Chinh", "Lạc Long Quân",
    "Pasteur", "Hoàng Diệu", "Tôn Đức Thắng", "Phạm Văn Đồng", "Nguyễn Thị Minh Khai",
)  # fmt: skip
# Population weights of the largest provinces (others weigh 1).
PROVINCE_WEIGHTS = {
    "079": 9.0, "001": 8.5, "038": 3.7, "040": 3.4, "075": 3.2, "074": 2.6, "031": 2.1,
    "030": 1.9, "036": 1.8, "089": 1.9, "091": 1.7, "034": 1.9, "024": 1.8, "066": 1.9,
}  # fmt: skip
PROVINCES = tuple(sorted(PROVINCE_CODES))
UNKNOWNPROVINCES = tuple(f"{i:03d}" for i in range(100) if f"{i:03d}" not in PROVINCE_CODES)


def _fold_table() -> dict[int, str | None]:
    table: dict[int, str | None] = {ord("đ"): "d", ord("Đ"): "D"}
    for cp in range(0x00C0, 0x1F00):
        ch = chr(cp)
        if unicodedata.combining(ch):
            table[cp] = None
            continue
        base = "".join(c for c in unicodedata.normalize("NFD", ch) if not unicodedata.combining(c))
        if base != ch and base.isascii():
            table[cp] = base
    return table


_FOLD = _fold_table()


def fold_name(name: str) -> str:
    """Upper-case ASCII, single-spaced (``Đặng  Thị Hoà`` → ``DANG THI HOA``): how bank files
    store names, and the form in which two names are the same name."""
    return " ".join(name.translate(_FOLD).upper().split())


def invalid_id(cid: str, rng: random.Random) -> str:
    """A mistyped CCCD number that fails the vn structure check (never a 9-digit legacy
    look-alike)."""
    while True:
        variant = rng.randrange(5)
        if variant == 0:  # a digit dropped
            i = rng.randrange(12)
            bad = cid[:i] + cid[i + 1 :]
        elif variant == 1:  # a digit doubled
            i = rng.randrange(12)
            bad = cid[: i + 1] + cid[i:]
        elif variant == 2:  # letters for look-alike digits
            i = rng.randrange(3, 12)
            bad = cid[:i] + rng.choice("OIlSBZ") + cid[i + 1 :]
        elif variant == 3:  # a province code that does not exist
            bad = rng.choice(UNKNOWNPROVINCES) + cid[3:]
        else:  # the last digits cut off
            bad = cid[: rng.choice((8, 10, 11))]
        info = SCHEME.inspect(bad)
        if info is not None and info.kind == "invalid":
            return bad


def other_name(name: str, sex: str, rng: random.Random) -> str:
    """A name that differs after folding: another given name, a typo, or words reordered."""
    words = name.split(" ")
    folded = fold_name(name)
    while True:
        variant = rng.randrange(3)
        if variant == 0:
            other = [*words[:-1], rng.choice(GIVEN[sex])]
        elif variant == 1:
            other = list(words)
            w = rng.randrange(len(other))
            other[w] = typo(other[w], rng)
        else:
            other = [*words[1:], words[0]]  # given-name-first order
        candidate = " ".join(other)
        if fold_name(candidate) != folded and candidate.strip():
            return candidate


def typo(word: str, rng: random.Random) -> str:
    """The word with one letter dropped, two swapped or one replaced (maybe by itself)."""
    i = rng.randrange(len(word))
    op = rng.randrange(3)
    if op == 0 and len(word) > 2:
        return word[:i] + word[i + 1 :]
    if op == 1 and i + 1 < len(word):
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    return word[:i] + rng.choice("aeinhtgu") + word[i + 1 :]


def benign_spelling(name: str, rng: random.Random) -> str:
    """The same name as a sector might store it: folds equal to the registry's."""
    words = name.split(" ")
    old = [OLD_TONE.get(w, w) for w in words]
    if old != words and rng.random() < 0.7:
        return " ".join(old)
    variant = rng.randrange(3)
    if variant == 0:
        return unicodedata.normalize("NFD", name)
    if variant == 1:
        return name.upper()
    return "  ".join(words)

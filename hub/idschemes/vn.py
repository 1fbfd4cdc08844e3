"""Vietnam's 12-digit personal identification number (CCCD) and the legacy 9-digit CMND."""

from __future__ import annotations

from typing import ClassVar

from hub.idschemes.base import SEX_WORDS, IdInfo, IdPart, IdScheme, digits_at

# Province of birth registration, Circular 07/2016/TT-BCA appendix (63 provinces).
PROVINCE_CODES: dict[str, str] = {
    "001": "Hà Nội",
    "002": "Hà Giang",
    "004": "Cao Bằng",
    "006": "Bắc Kạn",
    "008": "Tuyên Quang",
    "010": "Lào Cai",
    "011": "Điện Biên",
    "012": "Lai Châu",
    "014": "Sơn La",
    "015": "Yên Bái",
    "017": "Hòa Bình",
    "019": "Thái Nguyên",
    "020": "Lạng Sơn",
    "022": "Quảng Ninh",
    "024": "Bắc Giang",
    "025": "Phú Thọ",
    "026": "Vĩnh Phúc",
    "027": "Bắc Ninh",
    "030": "Hải Dương",
    "031": "Hải Phòng",
    "033": "Hưng Yên",
    "034": "Thái Bình",
    "035": "Hà Nam",
    "036": "Nam Định",
    "037": "Ninh Bình",
    "038": "Thanh Hóa",
    "040": "Nghệ An",
    "042": "Hà Tĩnh",
    "044": "Quảng Bình",
    "045": "Quảng Trị",
    "046": "Thừa Thiên Huế",
    "048": "Đà Nẵng",
    "049": "Quảng Nam",
    "051": "Quảng Ngãi",
    "052": "Bình Định",
    "054": "Phú Yên",
    "056": "Khánh Hòa",
    "058": "Ninh Thuận",
    "060": "Bình Thuận",
    "062": "Kon Tum",
    "064": "Gia Lai",
    "066": "Đắk Lắk",
    "067": "Đắk Nông",
    "068": "Lâm Đồng",
    "070": "Bình Phước",
    "072": "Tây Ninh",
    "074": "Bình Dương",
    "075": "Đồng Nai",
    "077": "Bà Rịa - Vũng Tàu",
    "079": "Hồ Chí Minh",
    "080": "Long An",
    "082": "Tiền Giang",
    "083": "Bến Tre",
    "084": "Trà Vinh",
    "086": "Vĩnh Long",
    "087": "Đồng Tháp",
    "089": "An Giang",
    "091": "Kiên Giang",
    "092": "Cần Thơ",
    "093": "Hậu Giang",
    "094": "Sóc Trăng",
    "095": "Bạc Liêu",
    "096": "Cà Mau",
}

FIRST_BIRTH_YEAR = 1900
LAST_BIRTH_YEAR = 2399  # century digit 9 = female born 2300–2399
LEGACY_LENGTH = 9
CURRENT_LENGTH = 12


class VietnamPersonalId(IdScheme):
    """``PPP G YY NNNNNN``: birth province, century+sex, birth year, serial; no check digit.

    Birth year = 1900 + 100·⌊G/2⌋ + YY; an even G means male. A 9-digit number is a
    legacy CMND, recognised as ``legacy`` without decoding.
    """

    name: ClassVar[str] = "vn"

    def parse(self, normalized: str) -> IdInfo:
        """Check a normalized ID's structure and decode province, birth year and sex."""
        if not (normalized.isascii() and normalized.isdigit()):
            return IdInfo.invalid("contains characters other than digits")
        if len(normalized) == LEGACY_LENGTH:
            return IdInfo(kind="legacy", reason="legacy 9-digit ID number (CMND)")
        if len(normalized) != CURRENT_LENGTH:
            return IdInfo.invalid(
                f"expected {CURRENT_LENGTH} digits (or {LEGACY_LENGTH} for a legacy ID), "
                f"got {len(normalized)}"
            )
        province = normalized[:3]
        if province not in PROVINCE_CODES:
            return IdInfo.invalid(f"unknown province code {province!r}")
        century_sex = int(normalized[3])
        return IdInfo(
            kind="current",
            birth_year=FIRST_BIRTH_YEAR + 100 * (century_sex // 2) + int(normalized[4:6]),
            sex="M" if century_sex % 2 == 0 else "F",
            region_code=province,
        )

    def explain(self, normalized: str) -> tuple[IdPart, ...]:
        """Province (digits 1–3), century and sex (digit 4), birth year (5–6), serial (7–12)."""
        info = self.parse(normalized)
        if info.kind == "legacy":
            return (
                IdPart(
                    digits_at(1, LEGACY_LENGTH),
                    "legacy CMND number",
                    normalized,
                    "encodes nothing about the person; the registry maps it to a current ID",
                ),
            )
        if info.kind != "current" or info.sex is None or info.birth_year is None:
            return ()
        province = normalized[:3]
        century = FIRST_BIRTH_YEAR + 100 * (int(normalized[3]) // 2)
        return (
            IdPart(
                digits_at(1, 3),
                "province",
                province,
                PROVINCE_CODES[province],
                "province_code",
                province,
            ),
            IdPart(
                digits_at(4, 4),
                "century and sex",
                normalized[3],
                f"{SEX_WORDS[info.sex]}, born {century}–{century + 99}",
                "sex",
                info.sex,
            ),
            IdPart(
                digits_at(5, 6),
                "birth year",
                normalized[4:6],
                str(info.birth_year),
                "date_of_birth",
                str(info.birth_year),
            ),
            IdPart(digits_at(7, 12), "serial number", normalized[6:], "a running number"),
        )


def make_id(province_code: str, birth_year: int, sex: str, serial: int) -> str:
    """Build a current 12-digit ID (for generators and tests); raises ``ValueError`` on bad input."""
    if province_code not in PROVINCE_CODES:
        raise ValueError(f"unknown province code {province_code!r}")
    if not FIRST_BIRTH_YEAR <= birth_year <= LAST_BIRTH_YEAR:
        raise ValueError(f"birth year {birth_year} outside {FIRST_BIRTH_YEAR}–{LAST_BIRTH_YEAR}")
    if sex not in ("M", "F"):
        raise ValueError(f"sex must be 'M' or 'F', got {sex!r}")
    if not 0 <= serial <= 999_999:
        raise ValueError(f"serial {serial} outside 0–999999")
    century, year = divmod(birth_year - FIRST_BIRTH_YEAR, 100)
    century_sex = 2 * century + (0 if sex == "M" else 1)
    return f"{province_code}{century_sex}{year:02d}{serial:06d}"

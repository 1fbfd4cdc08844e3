"""Egypt's 14-digit national number (الرقم القومي)."""

from __future__ import annotations

from datetime import date
from typing import ClassVar

from hub.idschemes.base import SEX_WORDS, IdInfo, IdPart, IdScheme, digits_at

# Governorate of birth registration; 88 = born abroad.
GOVERNORATE_CODES: dict[str, str] = {
    "01": "Cairo",
    "02": "Alexandria",
    "03": "Port Said",
    "04": "Suez",
    "11": "Damietta",
    "12": "Dakahlia",
    "13": "Sharqia",
    "14": "Qalyubia",
    "15": "Kafr El Sheikh",
    "16": "Gharbia",
    "17": "Monufia",
    "18": "Beheira",
    "19": "Ismailia",
    "21": "Giza",
    "22": "Beni Suef",
    "23": "Fayoum",
    "24": "Minya",
    "25": "Asyut",
    "26": "Sohag",
    "27": "Qena",
    "28": "Aswan",
    "29": "Luxor",
    "31": "Red Sea",
    "32": "New Valley",
    "33": "Matrouh",
    "34": "North Sinai",
    "35": "South Sinai",
    "88": "Born abroad",
}

CENTURIES: dict[str, int] = {"2": 1900, "3": 2000}
LENGTH = 14
MAX_SERIAL = 4999  # per sex: the 4-digit serial's last digit carries the sex


class EgyptNationalNumber(IdScheme):
    """``C YYMMDD GG SSSS K``: century, birth date, governorate, serial (last digit odd = male), check.

    The check digit's algorithm is not published, so it is never used to reject an ID.
    There is no legacy form.
    """

    name: ClassVar[str] = "eg"

    def parse(self, normalized: str) -> IdInfo:
        """Check a normalized ID's structure and decode birth date, governorate and sex."""
        if not (normalized.isascii() and normalized.isdigit()):
            return IdInfo.invalid("contains characters other than digits")
        if len(normalized) != LENGTH:
            return IdInfo.invalid(f"expected {LENGTH} digits, got {len(normalized)}")
        century = CENTURIES.get(normalized[0])
        if century is None:
            return IdInfo.invalid(f"unknown century digit {normalized[0]!r} (expected 2 or 3)")
        yymmdd = normalized[1:7]
        try:
            birth_date = date(century + int(yymmdd[:2]), int(yymmdd[2:4]), int(yymmdd[4:6]))
        except ValueError:
            return IdInfo.invalid(f"impossible birth date {yymmdd!r} (YYMMDD)")
        governorate = normalized[7:9]
        if governorate not in GOVERNORATE_CODES:
            return IdInfo.invalid(f"unknown governorate code {governorate!r}")
        return IdInfo(
            kind="current",
            birth_year=birth_date.year,
            birth_date=birth_date,
            sex="M" if int(normalized[12]) % 2 == 1 else "F",
            region_code=governorate,
        )

    def explain(self, normalized: str) -> tuple[IdPart, ...]:
        """Century (digit 1), birth date (2–7), governorate (8–9), serial with the sex in its
        last digit (10–13), check digit (14)."""
        info = self.parse(normalized)
        if info.kind != "current" or info.birth_date is None or info.sex is None:
            return ()
        century = CENTURIES[normalized[0]]
        governorate = normalized[7:9]
        born = info.birth_date.isoformat()
        return (
            IdPart(digits_at(1, 1), "century", normalized[0], f"born {century}–{century + 99}"),
            IdPart(
                digits_at(2, 7), "birth date (YYMMDD)", normalized[1:7], born, "date_of_birth", born
            ),
            IdPart(
                digits_at(8, 9),
                "governorate",
                governorate,
                GOVERNORATE_CODES[governorate],
                "province_code",
                governorate,
            ),
            IdPart(
                digits_at(10, 13),
                "serial (its last digit: odd = male, even = female)",
                normalized[9:13],
                SEX_WORDS[info.sex],
                "sex",
                info.sex,
            ),
            IdPart(digits_at(14, 14), "check digit", normalized[13], "not verified (unpublished)"),
        )


def make_id(birth_date: date, governorate: str, sex: str, serial: int, check: int = 0) -> str:
    """Build a 14-digit ID (for generators and tests); raises ``ValueError`` on bad input.

    ``serial`` (0–4999) numbers people of one sex born that day in that governorate; it is
    encoded as the 4-digit serial whose last digit has the sex's parity, so distinct
    serials give distinct IDs.
    """
    century = next(
        (c for c, start in CENTURIES.items() if start <= birth_date.year < start + 100), None
    )
    if century is None:
        raise ValueError(f"birth year {birth_date.year} outside 1900–2099")
    if governorate not in GOVERNORATE_CODES:
        raise ValueError(f"unknown governorate code {governorate!r}")
    if sex not in ("M", "F"):
        raise ValueError(f"sex must be 'M' or 'F', got {sex!r}")
    if not 0 <= serial <= MAX_SERIAL:
        raise ValueError(f"serial {serial} outside 0–{MAX_SERIAL}")
    if not 0 <= check <= 9:
        raise ValueError(f"check digit {check} outside 0–9")
    head, rank = divmod(serial, 5)
    serial_digits = head * 10 + 2 * rank + (1 if sex == "M" else 0)
    return f"{century}{birth_date:%y%m%d}{governorate}{serial_digits:04d}{check}"

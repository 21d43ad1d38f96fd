"""Identity rules, pure: no I/O. Rule IDs from ../shared/DOMAIN.md."""
from __future__ import annotations

import re

_DIGITS13 = re.compile(r"^[0-9]{13}$")


def corporate_number_check_digit(base12: str) -> int:
    """R-ID-02: check = 9 − (Σ Pn·Qn mod 9), Pn the n-th digit from the right, Qn = 1 (odd n) or 2 (even n)."""
    total = sum(int(d) * (1 if n % 2 else 2) for n, d in enumerate(reversed(base12), start=1))
    return 9 - total % 9


def corporate_number_problem(number: str) -> str | None:
    """Why `number` is not a valid corporate number (法人番号), or None if it is (R-ID-02)."""
    if not _DIGITS13.match(number):
        return "a corporate number has exactly 13 digits (0-9), with no spaces or hyphens"
    if int(number[0]) != corporate_number_check_digit(number[1:]):
        return "the check digit (first digit) does not match the other 12 digits; please re-check the number"
    return None


def business_id_for(corporate_number: str | None, new_id: str) -> str:
    """Corporations are identified by their corporate number; sole proprietors and founders get a new id."""
    return f"corp-{corporate_number}" if corporate_number else f"biz-{new_id}"

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


# --- accounts (R-ID-01, R-ID-06) ---------------------------------------------------------------
ACTOR_KINDS = {"business", "founder", "expert", "institution", "bureau", "agency", "operator"}
MAX_FAILED_LOGINS = 5
LOCKOUT_SECONDS = 15 * 60


def password_problem(password: str) -> str | None:
    if len(password) < 12:
        return "a password needs at least 12 characters"
    if password.isdigit() or password.isalpha():
        return "a password needs both letters and other characters"
    return None


def login_refusal(status: str, failed: int, locked_until: float | None, now: float) -> str | None:
    """Why an account may not log in now, or None."""
    if status == "revoked":
        return "this account has been revoked"
    if locked_until and now < locked_until:
        return "too many failed attempts; the account is locked for a while"
    return None


def after_failed_login(failed: int, now: float) -> tuple[int, float | None]:
    """(new failure count, locked-until) after one more wrong password."""
    failed += 1
    return (0, now + LOCKOUT_SECONDS) if failed >= MAX_FAILED_LOGINS else (failed, None)


# --- OAuth 2.0 / OIDC ------------------------------------------------------------------------
def pkce_matches(verifier: str, challenge: str, method: str) -> bool:
    """RFC 7636 S256 (plain is refused: public clients must not send the verifier in the clear)."""
    import base64
    import hashlib

    if method != "S256" or not 43 <= len(verifier) <= 128:
        return False
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == challenge


def granted_scopes(requested: str | None, allowed: list[str]) -> list[str] | None:
    """The scopes to grant: all allowed if none requested; None if any requested scope is not allowed."""
    if not requested:
        return list(allowed)
    wanted = requested.split()
    return None if set(wanted) - set(allowed) else wanted

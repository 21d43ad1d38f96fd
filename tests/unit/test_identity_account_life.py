"""Account life rules (R-ID-10), pure: login steps, mail throttling, TOTP (RFC 6238) and recovery codes."""
import base64

import pytest

from identity_service import domain
from identity_service.domain import (is_recovery_code, login_next_step, mail_allowed, mail_history, totp_code,
                                     totp_match, totp_required)

# RFC 6238 Appendix B: the SHA-1 test key is the ASCII string "12345678901234567890"
RFC_SECRET = base64.b32encode(b"12345678901234567890").decode()


@pytest.mark.parametrize("t,expected", [(59, "94287082"), (1111111109, "07081804"), (1111111111, "14050471"),
                                        (1234567890, "89005924"), (2000000000, "69279037"), (20000000000, "65353130")])
def test_R_ID_10_totp_matches_the_rfc_6238_test_vectors(t, expected):
    assert totp_code(RFC_SECRET, t // 30, digits=8) == expected


def test_R_ID_10_totp_accepts_the_current_step_and_one_either_side_only():
    now = 1_700_000_000.0
    step = int(now // 30)
    for s in (step - 1, step, step + 1):
        assert totp_match(RFC_SECRET, totp_code(RFC_SECRET, s), now, None) == s
    for s in (step - 2, step + 2):
        assert totp_match(RFC_SECRET, totp_code(RFC_SECRET, s), now, None) is None


def test_R_ID_10_a_totp_code_works_once_and_older_steps_never_after_a_newer_one():
    now = 1_700_000_000.0
    step = int(now // 30)
    code = totp_code(RFC_SECRET, step)
    assert totp_match(RFC_SECRET, code, now, last_step=step - 1) == step
    assert totp_match(RFC_SECRET, code, now, last_step=step) is None  # replayed
    assert totp_match(RFC_SECRET, totp_code(RFC_SECRET, step - 1), now, last_step=step) is None


@pytest.mark.parametrize("typed", ["", "12345", "1234567", "abcdef", "12 34 5x"])
def test_R_ID_10_malformed_codes_never_match(typed):
    assert totp_match(RFC_SECRET, typed, 1_700_000_000.0, None) is None


def test_R_ID_10_codes_are_read_as_typed_with_spaces_and_hyphens():
    now = 1_700_000_000.0
    code = totp_code(RFC_SECRET, int(now // 30))
    assert totp_match(RFC_SECRET, f" {code[:3]} {code[3:]} ", now, None) is not None
    assert is_recovery_code("1A2B-3C4D-5E6F-7A8B") and is_recovery_code("1a2b3c4d5e6f7a8b")
    assert not is_recovery_code("123456") and not is_recovery_code("1a2b-3c4d-5e6f-7a8") \
        and not is_recovery_code("1a2b-3c4d-5e6f-7a8g")


@pytest.mark.parametrize("roles,required", [(["agency"], True), (["bureau"], True), (["operator"], True),
                                            (["business"], False), (["expert"], False), (["institution"], False),
                                            (["founder"], False), (["business", "operator"], True)])
def test_R_ID_10_totp_is_required_for_agency_bureau_and_operator_accounts(roles, required):
    assert totp_required(roles) is required


@pytest.mark.parametrize("verified,federated,enrolled,roles,step", [
    (False, False, False, ["business"], "verify_email"),
    (False, False, True, ["operator"], "verify_email"),   # the address first, then the second factor
    (False, True, False, ["business"], "done"),           # the upstream provider vouched for the person
    (True, False, False, ["business"], "done"),
    (True, False, True, ["business"], "totp"),            # enrolled by choice: asked too
    (True, False, False, ["bureau"], "enrol_totp"),       # required and missing: no login before enrolment
    (True, False, True, ["agency"], "totp"),
    (False, True, False, ["operator"], "enrol_totp"),     # federated sign-in does not skip the second factor
])
def test_R_ID_10_login_steps_after_the_first_factor(verified, federated, enrolled, roles, step):
    assert login_next_step(email_verified=verified, federated=federated, totp_enrolled=enrolled, roles=roles) == step


def test_R_ID_10_mails_of_one_kind_are_throttled_per_minute_and_per_day():
    now = 1_000_000.0
    assert mail_allowed([], now)
    assert not mail_allowed([now - 30], now)
    assert mail_allowed([now - 61], now)
    day = [now - 3600 * h for h in range(1, domain.MAIL_DAILY_LIMIT + 1)]
    assert not mail_allowed(day, now)
    assert mail_allowed([t - 24 * 3600 for t in day], now)  # yesterday's do not count
    assert mail_history([now - 25 * 3600, now - 100], now) == [now - 100, now]


def test_R_ID_10_links_expire():
    assert domain.expired(100.0, 100.0) and domain.expired(None, 0.0) and not domain.expired(100.0, 99.9)
    assert domain.VERIFICATION_TTL == 24 * 3600 and domain.RESET_TTL <= 3600

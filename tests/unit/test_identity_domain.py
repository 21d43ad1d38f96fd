"""Identity domain rules (pure, no I/O)."""
import pytest

from identity_service.domain import business_id_for, corporate_number_check_digit, corporate_number_problem

PUBLISHED = ["7000012050002", "4000012090001", "5010401089998"]  # National Tax Agency examples / real numbers


@pytest.mark.parametrize("number", PUBLISHED)
def test_R_ID_02_accepts_published_corporate_numbers(number):
    assert corporate_number_problem(number) is None
    assert corporate_number_check_digit(number[1:]) == int(number[0])


@pytest.mark.parametrize("number", PUBLISHED)
def test_R_ID_02_rejects_every_one_digit_change(number):
    """Every single-digit change is caught except 0<->9: a mod-9 check digit cannot see a change of 9."""
    for i in range(13):
        for d in "0123456789":
            if d != number[i] and {d, number[i]} != {"0", "9"}:
                changed = number[:i] + d + number[i + 1:]
                assert corporate_number_problem(changed) is not None, changed


@pytest.mark.parametrize("bad", ["", "700001205000", "70000120500021", "7000-1205-0002", "７０００012050002", "abcdefghijklm"])
def test_R_ID_02_rejects_malformed_numbers_with_a_clear_reason(bad):
    assert "13 digits" in corporate_number_problem(bad)


def test_R_ID_03_business_id_is_the_corporate_number_or_new_for_sole_proprietors():
    assert business_id_for("7000012050002", "x") == "corp-7000012050002"
    assert business_id_for(None, "abc") == "biz-abc"


def test_R_ID_02_the_mod_9_blind_spot_is_real_and_documented():
    # 7000012050002 with its 2nd digit 0 -> 9 keeps the same check digit: the NTA rule itself allows it.
    assert corporate_number_problem("7900012050002") is None


def test_R_EXT_02_audience_per_service():
    """The portal's tokens are for every service; a third party's for the one service its scopes open (RFC 8707)."""
    from identity_service.domain import audience

    assert audience(["openid", "portal"], True) == "smeportal"
    assert audience(["openid", "prefill:read"], False) == "urn:smeportal:identity"
    assert audience(["audit:read"], False, "urn:smeportal:identity") == "urn:smeportal:identity"
    with pytest.raises(ValueError, match="resource must be one of"):
        audience(["prefill:read"], False, "urn:smeportal:dispatch")  # a resource its scopes do not open
    with pytest.raises(ValueError):
        audience(["portal"], True, "urn:smeportal:dispatch")  # the portal's tokens are not narrowed

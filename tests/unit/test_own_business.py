"""R-ID-07: one rule for every service — the business a caller acts for comes from its token, never from a typed-in id.

`Principal.own_business` (servicekit.auth) is what dispatch, community, recommend's intake and the worklists call."""
import pytest

from servicekit.auth import Principal
from servicekit.refusals import Rejected


def who(*businesses: str) -> Principal:
    return Principal(subject="acc-1", roles=frozenset({"business"}), businesses={b: "prime" for b in businesses})


def test_R_ID_07_the_only_bound_business_is_taken_from_the_token():
    assert who("biz-1").own_business() == "biz-1"
    assert who("biz-1", "biz-2").own_business("biz-2") == "biz-2"


def test_R_ID_07_a_typed_in_business_the_token_does_not_bind_is_refused():
    with pytest.raises(Rejected) as e:
        who("biz-1").own_business("biz-9")
    assert e.value.kind == "forbidden" and "biz-9" in e.value.detail


def test_R_ID_07_no_binding_yet_is_refused_with_what_to_do():
    with pytest.raises(Rejected) as e:
        who().own_business()
    assert e.value.kind == "forbidden" and "not bound to a business" in e.value.detail


def test_R_ID_07_several_bindings_ask_which_one():
    with pytest.raises(Rejected) as e:
        who("biz-2", "biz-1").own_business()
    assert e.value.kind == "invalid" and "biz-1, biz-2" in e.value.detail

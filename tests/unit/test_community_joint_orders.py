"""R-POR-04 regional joint ordering (共同受発注), pure: the order's area lies within the platform's support area, lots
are numbered, only businesses of the area apply while the order is open, and awards go to applicants only."""
import pytest

from community_service import domain
from servicekit.refusals import Rejected

ORDER = {"status": domain.ORDER_OPEN, "deadline": "2026-12-20", "area_prefectures": ["熊本県", "福岡県"],
         "lots": [{"lot_id": "lot-1"}, {"lot_id": "lot-2"}]}


def test_R_POR_04_an_order_is_open_to_the_platform_area_or_part_of_it_never_beyond():
    assert domain.order_area(None, ["福岡県", "熊本県"]) == ["熊本県", "福岡県"]
    assert domain.order_area(["熊本県"], ["福岡県", "熊本県"]) == ["熊本県"]
    with pytest.raises(Rejected) as e:
        domain.order_area(["熊本県", "東京都"], ["福岡県", "熊本県"])
    assert "東京都" in e.value.detail and e.value.extra["outside"] == ["東京都"]
    with pytest.raises(Rejected) as e:
        domain.order_area(None, [])  # a platform without a registered area cannot post
    assert e.value.kind == "conflict"


def test_R_POR_04_lots_are_numbered_one_to_fifty_and_distinct():
    assert domain.check_lots(["弁当 500食", "配送"]) == ["lot-1", "lot-2"]
    for bad in ([], ["a"] * 2, [f"lot {i}" for i in range(domain.LOTS_MAX + 1)]):
        with pytest.raises(Rejected):
            domain.check_lots(bad)


def test_R_POR_04_a_business_outside_the_area_is_refused_with_the_reason():
    domain.may_apply(ORDER, "lot-1", "熊本県", "2026-12-01")  # in the area, before the deadline: fine
    with pytest.raises(Rejected) as e:
        domain.may_apply(ORDER, "lot-1", "東京都", "2026-12-01")
    assert e.value.kind == "forbidden" and "東京都" in e.value.detail and "熊本県" in e.value.detail
    for order, lot, pref, today in ((ORDER, "lot-9", "熊本県", "2026-12-01"),            # no such lot
                                    (ORDER, "lot-1", "熊本県", "2026-12-21"),            # after the deadline
                                    ({**ORDER, "status": domain.ORDER_AWARDED}, "lot-1", "熊本県", "2026-12-01"),
                                    (ORDER, "lot-1", None, "2026-12-01")):              # place not known yet
        with pytest.raises(Rejected):
            domain.may_apply(order, lot, pref, today)


def test_R_POR_04_lots_go_only_to_their_applicants_once_and_each_applicant_learns_its_result():
    applied = {"lot-1": {"biz-a", "biz-b"}, "lot-2": {"biz-b"}}
    awards = domain.award(ORDER, {"lot-2": "biz-b", "lot-1": "biz-a"}, applied)
    assert awards == {"lot-1": "biz-a", "lot-2": "biz-b"}
    assert domain.award(ORDER, {}, applied) == {}  # every lot may stay unawarded
    with pytest.raises(Rejected):
        domain.award(ORDER, {"lot-2": "biz-a"}, applied)  # biz-a did not apply for lot-2
    with pytest.raises(Rejected):
        domain.award(ORDER, {"lot-3": "biz-a"}, applied)
    with pytest.raises(Rejected):
        domain.award({**ORDER, "status": domain.ORDER_AWARDED}, {"lot-1": "biz-a"}, applied)
    assert domain.result_for("biz-b", awards) == ["lot-2"] and domain.result_for("biz-c", awards) == []

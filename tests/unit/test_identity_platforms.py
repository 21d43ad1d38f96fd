"""Platform registration rules, the R-PF-04 rights table and least privilege by place (R-PF-05), pure (identity domain)."""
import pytest

from contracts.vocab import MemberRole, Right
from identity_service.domain import (Org, PlatformRules, bureau_may, member_role_for, memberships_claim, place_problem,
                                     platform_problems, removal_problem, renewal_problem, review_due, rights_of)

SHOKOKAI = Org("o1", "institution", 1)       # ① 商工会
CHAMBER = Org("o2", "institution", 2)        # ② 商工会議所
BANK = Org("o3", "institution", 8)           # ⑧ 信用金庫
BANK2 = Org("o4", "institution", 8)
NPO_PLAIN = Org("o5", "institution", None)   # broad SME support, not dispatch-capable
CORP = Org("o6", "body")
PERSON = Org("o7", "individual")


def test_R_PF_01_four_institutions_with_two_dispatch_types_register():
    assert platform_problems([SHOKOKAI, CHAMBER, BANK, NPO_PLAIN], "o1") == []


def test_R_PF_01_fewer_than_four_institutions_are_refused_bodies_and_individuals_do_not_count():
    problems = platform_problems([SHOKOKAI, CHAMBER, BANK, CORP, PERSON], "o1")
    assert len(problems) == 1 and "at least 4 member institutions" in problems[0] and "it has 3" in problems[0]


def test_R_PF_01_dispatch_capable_members_of_only_one_type_are_refused():
    problems = platform_problems([BANK, BANK2, NPO_PLAIN, Org("o8", "institution")], "o3")
    assert len(problems) == 1 and "at least 2 different types" in problems[0]


def test_R_PF_01_the_minimum_is_a_parameter():
    rules = PlatformRules(min_member_institutions=2, min_dispatch_types=1)
    assert platform_problems([BANK, BANK2], "o3", rules) == []


def test_R_PF_02_representative_must_be_dispatch_capable_and_a_member():
    assert any("R-PF-02" in p for p in platform_problems([SHOKOKAI, CHAMBER, BANK, NPO_PLAIN], "o5"))
    assert any("must be one of the members" in p for p in platform_problems([SHOKOKAI, CHAMBER, BANK, NPO_PLAIN], "zz"))


def test_R_PF_01_a_member_listed_twice_is_refused():
    assert any("twice" in p for p in platform_problems([SHOKOKAI, CHAMBER, BANK, NPO_PLAIN, BANK], "o1"))


def test_R_PF_04_member_role_follows_from_the_organisation():
    assert member_role_for(SHOKOKAI, "o1") is MemberRole.REPRESENTATIVE
    assert member_role_for(CHAMBER, "o1") is MemberRole.DISPATCH_MEMBER
    assert member_role_for(NPO_PLAIN, "o1") is MemberRole.INSTITUTION
    assert member_role_for(CORP, "o1") is MemberRole.BODY
    assert member_role_for(PERSON, "o1") is MemberRole.INDIVIDUAL


@pytest.mark.parametrize("role,manage,request_dispatch,recommend,joint", [
    ("representative", True, True, True, True),
    ("dispatch_member", True, True, True, True),   # manage: only its share (the budget service enforces the share)
    ("institution", False, False, True, True),
    ("body", False, False, True, True),
    ("individual", False, False, False, True),
])
def test_R_PF_04_rights_table(role, manage, request_dispatch, recommend, joint):
    rights = set(rights_of(role))
    assert (Right.MANAGE_BUDGET in rights, Right.REQUEST_DISPATCH in rights, Right.RECOMMEND_EXPERTS in rights,
            Right.JOINT_ACTIVITIES in rights) == (manage, request_dispatch, recommend, joint)


def test_R_PF_04_token_claim_has_one_entry_per_membership_registered_this_fiscal_year():
    platforms = [
        {"platform_id": "pf-a", "fiscal_years": [2026], "members": [{"org_id": "o5", "member_role": "institution"}]},
        {"platform_id": "pf-b", "fiscal_years": [2026], "members": [{"org_id": "o1", "member_role": "representative"},
                                                                    {"org_id": "o5", "member_role": "institution"}]},
        {"platform_id": "pf-old", "fiscal_years": [2024, 2025], "members": [{"org_id": "o5", "member_role": "body"}]},
    ]
    claim = memberships_claim("o5", platforms, 2026)
    assert claim == [
        {"org_id": "o5", "platform_id": "pf-a", "member_role": "institution", "rights": ["joint_activities", "recommend_experts"]},
        {"org_id": "o5", "platform_id": "pf-b", "member_role": "institution", "rights": ["joint_activities", "recommend_experts"]},
    ]


def test_R_PF_03_renewal_is_yearly_for_a_later_year():
    assert renewal_problem([2025], None, 2026, None) is None
    assert "already registered" in renewal_problem([2025, 2026], None, 2026, None)
    assert "after FY2026" in renewal_problem([2025, 2026], None, 2024, None)


def test_R_PF_03_after_three_years_renewal_needs_a_favourable_review():
    years = [2023, 2024, 2025]
    assert not review_due([2023, 2024], None, 2025)
    assert review_due(years, None, 2026)
    assert "needs a review" in renewal_problem(years, None, 2026, None)
    assert "against renewal" in renewal_problem(years, None, 2026, False)
    assert renewal_problem(years, None, 2026, True) is None
    # after a review in 2026, the next review is due three years later
    assert renewal_problem(years + [2026], 2026, 2027, None) is None
    assert review_due(years + [2026, 2027, 2028], 2026, 2029)


def test_R_PF_01_a_member_may_leave_only_if_the_platform_still_qualifies():
    members = [SHOKOKAI, CHAMBER, BANK, NPO_PLAIN, CORP]
    assert removal_problem(members, "o1", "o6") is None
    assert "at least 4" in removal_problem(members, "o1", "o5")
    assert "representative" in removal_problem(members, "o1", "o1")


# --- R-PF-05: least privilege by place ------------------------------------------------------------------
def test_R_PF_05_a_bureau_may_act_only_on_platforms_of_its_own_block():
    assert bureau_may("bureau-kanto", "bureau-kanto")
    assert not bureau_may("bureau-kanto", "bureau-kyushu")
    assert not bureau_may(None, "bureau-kanto")      # a bureau account without a block: nowhere
    assert not bureau_may("bureau-kanto", None)      # a platform of no known block: no bureau's
    assert not bureau_may(None, None) and not bureau_may("", "")


def test_R_PF_05_place_problem_names_the_blocks_and_leaves_national_roles_alone():
    assert place_problem({"bureau"}, "bureau-kanto", ["bureau-kanto"]) is None
    assert place_problem({"bureau"}, "bureau-kanto") is None  # nothing of a block concerned (e.g. a new organisation)
    other = place_problem({"bureau"}, "bureau-kanto", ["bureau-kanto", "bureau-kyushu"])
    assert "block bureau-kyushu" in other and "block bureau-kanto acts only on its own" in other
    assert "no known block" in place_problem({"bureau"}, "bureau-kanto", [None])
    for blocks in ([], ["bureau-kanto"]):
        assert "carries no block (bureau_id)" in place_problem({"bureau"}, None, blocks)
    for roles in ({"operator"}, {"agency"}, {"operator", "bureau"}, {"institution"}):
        assert place_problem(roles, None, ["bureau-kyushu"]) is None

"""The community's rules (R-POR-02) and matching's (R-POR-03), pure: no Kafka, no MongoDB."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from community_service import domain
from community_service.domain import Party
from servicekit.refusals import Rejected

BIZ, OTHER = Party("business", "corp-1"), Party("business", "corp-2")
EXPERT = Party("account", "acc-expert")


def thread(status="visible", party=BIZ):
    return {"_id": "th-1", "status": status, "party": party.doc(), "category": "sales"}


def post(status="visible", party=EXPERT, thread_id="th-1"):
    return {"_id": f"{thread_id}.1.a", "thread_id": thread_id, "status": status, "party": party.doc()}


# --- R-POR-02 community --------------------------------------------------------------------------------------------
def test_R_POR_02_business_expert_senior_owner_and_founder_take_part_with_their_label():
    assert domain.author_kind({"business"}, mentor=False) == "business"
    assert domain.author_kind({"business"}, mentor=True) == "senior_owner"
    assert domain.author_kind({"expert"}, mentor=False) == "expert"
    assert domain.author_kind({"founder"}, mentor=False) == "founder"
    for roles in ({"institution"}, {"bureau"}, {"agency"}, set()):
        with pytest.raises(Rejected) as e:
            domain.author_kind(roles, mentor=False)
        assert e.value.kind == "forbidden"


def test_R_POR_02_a_thread_has_a_known_category_a_title_and_a_body():
    t = domain.new_thread("succession", "  後継者の探し方  ", "親族以外への承継を考えています。")
    assert t == {"category": "succession", "title": "後継者の探し方", "body": "親族以外への承継を考えています。",
                 "status": "visible"}
    with pytest.raises(Rejected):
        domain.new_thread("gossip", "title", "body")
    with pytest.raises(Rejected):
        domain.new_thread("sales", "  ", "body")
    with pytest.raises(Rejected):
        domain.new_thread("sales", "title", "x" * (domain.BODY_MAX + 1))


def test_R_POR_02_replies_only_in_a_thread_in_view():
    assert domain.new_post(thread(), "販路は…")["status"] == "visible"
    for status in ("held", "hidden"):
        with pytest.raises(Rejected) as e:
            domain.new_post(thread(status), "reply")
        assert e.value.kind == "conflict"


def test_R_POR_02_moderation_hold_hide_restore_each_needs_a_reason():
    assert domain.moderate("visible", "hold", "要確認: 個人情報の可能性") == ("held", "要確認: 個人情報の可能性")
    assert domain.moderate("held", "hide", "個人情報を含むため")[0] == "hidden"
    assert domain.moderate("visible", "hide", "spam advertising")[0] == "hidden"
    assert domain.moderate("hidden", "restore", "確認の結果問題なし")[0] == "visible"
    assert domain.moderate("held", "restore", "no issue found")[0] == "visible"
    for reason in ("", "   ", "ok"):
        with pytest.raises(Rejected) as e:
            domain.moderate("visible", "hold", reason)
        assert e.value.kind == "invalid"


def test_R_POR_02_moderation_applies_only_from_the_right_state():
    for status, action in (("held", "hold"), ("hidden", "hold"), ("hidden", "hide"), ("visible", "restore")):
        with pytest.raises(Rejected) as e:
            domain.moderate(status, action, "a good reason")
        assert e.value.kind == "conflict"
    with pytest.raises(Rejected):
        domain.moderate("visible", "delete", "a good reason")


def test_R_POR_02_moderated_content_shows_its_reason_to_its_author_and_the_agency_only():
    doc = {"_id": "th-1", "thread_id": "th-1", "status": "held", "title": "t", "body": "b", "author_kind": "business",
           "author_account_id": "acc-1", "party": BIZ.doc(), "created_at": datetime.now(UTC),
           "moderation": {"status": "held", "action": "hold", "reason": "確認中です", "at": datetime.now(UTC)},
           "_outbox": []}
    for who in ({"author": True, "moderator": False}, {"author": False, "moderator": True}):
        seen = domain.shown(doc, **who)
        assert seen["body"] == "b" and seen["moderation"]["reason"] == "確認中です" and "_outbox" not in seen
    other = domain.shown(doc, author=False, moderator=False)
    assert other["status"] == "held" and other["body"] is None and other["title"] is None
    assert other["moderation"] is None and other["author_account_id"] is None
    # restored: in view for everyone; the moderation record stays the author's and the agency's
    restored = {**doc, "status": "visible"}
    assert domain.shown(restored, author=False, moderator=False)["body"] == "b"
    assert "moderation" not in domain.shown(restored, author=False, moderator=False)
    assert domain.shown(restored, author=True, moderator=False)["moderation"]["reason"] == "確認中です"


def test_R_POR_02_only_the_asker_marks_an_answer_never_its_own_nor_one_out_of_view():
    domain.may_mark(thread(), post(), caller_is_asker=True, mark="accepted")
    domain.may_mark(thread(), post(party=OTHER), caller_is_asker=True, mark="helpful")
    cases = [(dict(caller_is_asker=False, mark="accepted"), thread(), post(), "forbidden"),
             (dict(caller_is_asker=True, mark="accepted"), thread(), post(party=BIZ), "conflict"),
             (dict(caller_is_asker=True, mark="accepted"), thread(), post(status="hidden"), "conflict"),
             (dict(caller_is_asker=True, mark="accepted"), thread("held"), post(), "conflict"),
             (dict(caller_is_asker=True, mark="accepted"), thread(), post(thread_id="th-2"), "not_found")]
    for kw, t, pst, kind in cases:
        with pytest.raises(Rejected) as e:
            domain.may_mark(t, pst, **kw)
        assert e.value.kind == kind, (kw, pst)


def test_R_POR_02_a_business_thread_belongs_to_everyone_acting_for_the_business():
    assert domain.is_party(BIZ, "any-account", {"corp-1": "member"})
    assert not domain.is_party(BIZ, "any-account", {"corp-2": "prime"})
    assert domain.is_party(EXPERT, "acc-expert", {})
    assert not domain.is_party(EXPERT, "acc-other", {"acc-expert": "prime"})


def test_R_POR_02_R_OPS_03_threads_are_listed_newest_first_under_all_and_their_category():
    t0 = datetime(2026, 11, 30, 1, tzinfo=UTC)
    older = domain.index_ids(domain.thread_facets({"category": "sales"}), domain.newest_first(t0), "th-a")
    newer = domain.index_ids(domain.thread_facets({"category": "sales"}),
                             domain.newest_first(t0 + timedelta(microseconds=1)), "th-b")
    assert [i.split("|")[0] for i in older] == ["*", "category=sales"]
    assert sorted([older[1], newer[1]]) == [newer[1], older[1]]


# --- R-POR-03 matching ---------------------------------------------------------------------------------------------
def test_R_POR_03_businesses_post_every_kind_experts_only_offer_expert_help():
    for kind in domain.POSTING_KINDS:
        for direction in domain.DIRECTIONS:
            domain.check_posting(direction, kind, "business", "福岡県", "製造業")
    domain.check_posting("offer", "expert_help", "expert", "福岡県", "製造業")
    for direction, kind in (("need", "expert_help"), ("offer", "partner"), ("need", "successor")):
        with pytest.raises(Rejected) as e:
            domain.check_posting(direction, kind, "expert", "福岡県", "製造業")
        assert e.value.kind == "forbidden"
    for bad in (("need", "franchise"), ("wish", "partner")):
        with pytest.raises(Rejected):
            domain.check_posting(bad[0], bad[1], "business", "福岡県", "製造業")
    with pytest.raises(Rejected):
        domain.check_posting("need", "partner", "business", "福岡県|x", "製造業")


def test_R_POR_03_interest_in_an_open_posting_of_someone_else_nobody_consented_yet():
    posting = {"status": "open"}
    assert domain.express_interest(posting, BIZ, OTHER) == {"status": "interested",
                                                            "consent": {"owner": False, "interested": False}}
    with pytest.raises(Rejected):
        domain.express_interest(posting, BIZ, BIZ)
    with pytest.raises(Rejected):
        domain.express_interest({"status": "closed"}, BIZ, OTHER)
    assert domain.match_id("pg-1", OTHER) == domain.match_id("pg-1", OTHER) != domain.match_id("pg-1", EXPERT)


def test_R_POR_03_contact_details_show_only_after_both_consent_and_only_to_the_two_sides():
    m = {"status": "interested", "consent": {"owner": False, "interested": False}}
    fields, connected = domain.consent(m, "interested")
    assert fields == {"consent.interested": True} and not connected
    m = {**m, "consent": {"owner": False, "interested": True}}
    assert domain.consent(m, "interested") == ({}, False)  # consenting twice changes nothing
    assert not any(domain.contacts_shown(m, side) for side in ("owner", "interested", None))
    fields, connected = domain.consent(m, "owner")
    assert connected and fields["status"] == "connected"
    m = {"status": "connected", "consent": {"owner": True, "interested": True}}
    assert domain.contacts_shown(m, "owner") and domain.contacts_shown(m, "interested")
    assert not domain.contacts_shown(m, None)  # a third party never
    assert domain.consent(m, "owner") == ({}, False)  # consenting again changes nothing
    with pytest.raises(Rejected):
        domain.consent(m, "someone")


def test_R_POR_03_either_side_withdraws_before_both_consent_not_after():
    m = {"status": "interested", "consent": {"owner": True, "interested": False}}
    assert domain.withdraw(m, "interested") == {"status": "withdrawn", "withdrawn_by": "interested"}
    assert domain.withdraw(m, "owner")["withdrawn_by"] == "owner"
    w = {**m, "status": "withdrawn"}
    assert not domain.contacts_shown({**w, "consent": {"owner": True, "interested": True}}, "owner")
    with pytest.raises(Rejected):
        domain.withdraw(w, "owner")
    with pytest.raises(Rejected):
        domain.consent(w, "interested")
    with pytest.raises(Rejected) as e:
        domain.withdraw({"status": "connected", "consent": {"owner": True, "interested": True}}, "owner")
    assert e.value.kind == "conflict"
    assert domain.again(w) == {"status": "interested", "consent": {"owner": False, "interested": False},
                               "withdrawn_by": None}


def test_R_POR_03_R_OPS_03_every_search_is_one_range_of_the_facet_its_filters_name():
    posting = {"direction": "need", "kind": "successor", "region": "福岡県", "industry": "製造業"}
    facets = domain.posting_facets(posting)
    assert len(facets) == 16 and len(set(facets)) == 16
    for filters in ({}, {"kind": "successor"}, {"region": "福岡県", "industry": "製造業"},
                    {"direction": "need", "kind": "successor", "region": "福岡県", "industry": "製造業"},
                    {"industry": "製造業", "direction": "need"}):
        assert domain.facet(filters) in facets
    assert domain.facet({"region": "大阪府"}) not in facets
    assert domain.facet({"industry": "製造業", "kind": None}) == "industry=製造業"


def test_R_POR_02_R_POR_03_notices_render_in_japanese_and_english_with_a_link():
    from notifications_service import domain as notif

    for template, params in (("community_reply", {"thread_id": "th-1", "title": "販路"}),
                             ("community_moderated", {"thread_id": "th-1", "target_kind": "post", "action": "hold",
                                                      "reason": "確認中です"}),
                             ("match_interest", {"posting_id": "pg-1", "title": "承継"}),
                             ("match_connected", {"posting_id": "pg-1", "match_id": "pg-1.ab"})):
        link = notif.link_param(template, params, "https://portal.example.jp")
        assert link["link"].startswith("https://portal.example.jp/api/community/"), template
        for lang in ("ja", "en"):
            subject, body, used = notif.render(template, {**params, **link}, lang)
            assert used == lang and link["link"] in body and "{" not in subject + body, (template, lang)
        assert notif.category_of(template) == "community"
    assert "確認中です" in notif.render("community_moderated", {"reason": "確認中です"}, "ja")[1]

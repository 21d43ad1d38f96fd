"""Pure rules of the notifications service: R-NOT-02 (prompts, status notices), R-RAT-03 reminders."""
from __future__ import annotations

from datetime import date

from contracts.events.dispatch import DispatchStatusChanged
from contracts.events.dispatch import STATUSES
from notifications_service.domain import (
    NEXT, ROLES, WHAT, Params, backoff_seconds, delivery_after_failure, link_param, people_of, prompt_email_key,
    render, status_audience, status_params,
)

PORTAL = "https://portal.example.jp"


def test_R_NOT_02_templates_japanese_first_english_fallback():
    subject, body, lang = render("rating_owed", {"dispatch_id": "d1"})
    assert lang == "ja" and "評価" in subject and "d1" in body
    subject, body, lang = render("rating_owed", {"dispatch_id": "d1"}, "en")
    assert lang == "en" and subject.startswith("[SME portal] Please rate")
    only_en = {"x": {"en": ("Hello {name}", "Body {missing}")}, "generic": {"en": ("{subject}", "{message}")}}
    assert render("x", {"name": "A"}, "ja", templates=only_en) == ("Hello A", "Body", "en")
    subject, body, lang = render("no_such_template", {"subject": "S", "message": "M"}, "ja")
    assert (subject, body, lang) == ("[SME portal] S", "M", "en")


def _status(status: str, **kw) -> DispatchStatusChanged:
    return DispatchStatusChanged(**{"dispatch_id": "d1", "status": status, "route": "A", "fiscal_year": 2026,
                                    "business_id": "b1", "expert_id": "x1", "institution_id": "i1", **kw})


def test_R_NOT_03_each_party_of_a_dispatch_by_its_people():
    e = _status("scheduled")
    assert status_audience(e) == [("business:b1", "business"), ("expert:x1", "expert"),
                                  ("organisation:i1", "institution")]
    assert status_audience(e.model_copy(update={"institution_id": None})) == [("business:b1", "business"),
                                                                             ("expert:x1", "expert")]
    members = {"business:b1": ["prime", "member"], "expert:x1": ["exp-acc"], "organisation:i1": ["staff", "prime"]}
    # each person once, as the first party naming them; a revoked account (R-ID-06) hears nothing
    assert people_of(status_audience(e), members, struck={"member"}) == {
        "prime": "business", "exp-acc": "expert", "staff": "institution"}


def test_R_NOT_03_status_notices_say_what_happened_and_what_to_do_next_in_japanese_and_english():
    statuses = [*STATUSES, "budget_unanswered"]
    for status in statuses:
        for role in ROLES:
            for lang in ("ja", "en"):
                subject, body, used = render("dispatch_status", status_params(_status(status, reason="理由X", fee=12500,
                                                                                    travel=1500), role, PORTAL), lang)
                assert used == lang and "d1" in subject and "{" not in subject + body, (status, role, lang)
                assert f"{PORTAL}/api/dispatch/requests/d1" in body
                assert WHAT[lang][status].split("{")[0][:10] in body
    assert set(WHAT["ja"]) == set(WHAT["en"]) == set(statuses)
    assert set(NEXT["ja"]) == set(NEXT["en"])
    # the labels say what the screening / the budget did, not that the expert decided
    subject, body, _ = render("dispatch_status", status_params(_status("accepted"), "business", PORTAL))
    assert subject.endswith("審査通過") and "専門家が受諾" not in subject
    _, body, _ = render("dispatch_status", status_params(_status("refused", reason="free_cap_reached"), "institution", PORTAL), "en")
    assert "Reason: free_cap_reached" in body and "file a new request" in body
    # the next step differs by party: the business signs the visit off, the expert files the report
    _, biz, _ = render("dispatch_status", status_params(_status("visited"), "business", PORTAL))
    _, exp, _ = render("dispatch_status", status_params(_status("visited"), "expert", PORTAL))
    assert "サインオフ" in biz and "報告書" in exp
    _, body, _ = render("dispatch_status", status_params(_status("confirmed", fee=12500, travel=1500), "business", PORTAL))
    assert "12,500円" in body and "評価" in body


def test_R_NOT_03_R_PF_03_bureau_notice_has_a_body_and_a_link():
    params = {"platform_id": "pf-1", "platform_name": "熊本PF", "org_id": "org-9", "org_name": "肥後信金",
              "institution_type": "8"}
    params |= link_param("platform_dispatch_member_added", params, PORTAL)
    subject, body, _ = render("platform_dispatch_member_added", params)
    assert "熊本PF" in subject and "肥後信金" in body and f"{PORTAL}/api/identity/platforms/pf-1" in body
    # pushed programme links point at the business's recommendations, a page that exists
    assert link_param("programme_recommended", {"business_id": "b1"}, PORTAL)["url"] == \
        f"{PORTAL}/api/recommend/businesses/b1/recommendations"


def test_R_NOT_02_R_RAT_03_one_prompt_email_per_owed_rating_per_day():
    d = date(2026, 11, 23)
    assert prompt_email_key("o1", d) == prompt_email_key("o1", d)
    assert prompt_email_key("o1", d) != prompt_email_key("o1", date(2026, 11, 24))
    assert prompt_email_key("o1", d) != prompt_email_key("o2", d)


def test_R_NOT_02_retries_with_exponential_backoff_then_failed():
    p = Params(backoff_base_seconds=2, backoff_max_seconds=30, max_attempts=4)
    assert [backoff_seconds(n, p) for n in (1, 2, 3, 4, 5, 10)] == [2, 4, 8, 16, 30, 30]
    assert [delivery_after_failure(n, p) for n in (1, 3, 4, 5)] == ["queued", "queued", "failed", "failed"]


def test_R_REC_08_the_outcome_survey_notice_says_what_to_do_and_links_to_the_dispatch():
    from notifications_service.domain import link_param, render
    params = {"dispatch_id": "dsp-1", "months": "3", **link_param("outcome_survey", {"dispatch_id": "dsp-1"},
                                                                   "https://portal.example")}
    subject, body, lang = render("outcome_survey", params)
    assert lang == "ja" and "3か月後" in subject
    assert "https://portal.example/api/dispatch/requests/dsp-1/outcomes/3" in body
    assert "3-month survey" in render("outcome_survey", params, "en")[0]

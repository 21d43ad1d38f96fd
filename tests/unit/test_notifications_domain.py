"""Pure rules of the notifications service: R-NOT-02 (prompts, status notices), R-RAT-03 reminders."""
from __future__ import annotations

from datetime import date

from contracts.events.dispatch import DispatchStatusChanged
from notifications_service.domain import (
    Params, backoff_seconds, delivery_after_failure, prompt_email_key, render, status_params, status_recipients,
)


def test_R_NOT_02_templates_japanese_first_english_fallback():
    subject, body, lang = render("rating_owed", {"dispatch_id": "d1"})
    assert lang == "ja" and "評価" in subject and "d1" in body
    subject, body, lang = render("rating_owed", {"dispatch_id": "d1"}, "en")
    assert lang == "en" and subject.startswith("[SME portal] Please rate")
    only_en = {"x": {"en": ("Hello {name}", "Body {missing}")}, "generic": {"en": ("{subject}", "{message}")}}
    assert render("x", {"name": "A"}, "ja", templates=only_en) == ("Hello A", "Body", "en")
    subject, body, lang = render("no_such_template", {"subject": "S", "message": "M"}, "ja")
    assert (subject, body, lang) == ("[SME portal] S", "M", "en")


def test_R_NOT_02_status_notice_in_words_for_each_party():
    e = DispatchStatusChanged(dispatch_id="d1", status="scheduled", route="A", fiscal_year=2026, business_id="b1",
                              expert_id="x1", institution_id="i1")
    assert status_recipients(e) == ["b1", "x1", "i1"]
    assert status_recipients(e.model_copy(update={"institution_id": None})) == ["b1", "x1"]
    subject, _, _ = render("dispatch_status", status_params(e))
    assert "日程確定" in subject and "d1" in subject
    subject, _, _ = render("dispatch_status", status_params(e), "en")
    assert "scheduled" in subject


def test_R_NOT_02_R_RAT_03_one_prompt_email_per_owed_rating_per_day():
    d = date(2026, 11, 23)
    assert prompt_email_key("o1", d) == prompt_email_key("o1", d)
    assert prompt_email_key("o1", d) != prompt_email_key("o1", date(2026, 11, 24))
    assert prompt_email_key("o1", d) != prompt_email_key("o2", d)


def test_R_NOT_02_retries_with_exponential_backoff_then_failed():
    p = Params(backoff_base_seconds=2, backoff_max_seconds=30, max_attempts=4)
    assert [backoff_seconds(n, p) for n in (1, 2, 3, 4, 5, 10)] == [2, 4, 8, 16, 30, 30]
    assert [delivery_after_failure(n, p) for n in (1, 3, 4, 5)] == ["queued", "queued", "failed", "failed"]

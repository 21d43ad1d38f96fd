"""Pure rules of R-NOT-04: preferences per category and channel, quiet hours, daily digest, one-click unsubscribe
tokens (RFC 8058), bounce reports (RFC 3464), the messaging app's webhook signature."""
from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime

from notifications_service import dsn
from notifications_service.domain import (
    Plan, Preferences, category_of, digest_text, in_quiet_hours, line_signature_ok, next_digest_at, plan,
    quiet_until, read_unsubscribe_token, unsubscribe_token,
)
from notifications_service.store import JST

ALL = frozenset({"email", "webpush", "line"})


def at(h: int, m: int = 0, day: int = 1) -> datetime:
    return datetime(2026, 12, day, h, m, tzinfo=JST)


def test_R_NOT_04_channels_per_category_and_only_where_reachable_and_not_paused():
    p = Preferences.of({"channels": ["email", "webpush", "line"], "categories": {"programme": ["email"]}})
    assert [x.channel for x in plan(p, "dispatch", at(12), ALL)] == ["email", "webpush", "line"]
    assert [x.channel for x in plan(p, "programme", at(12), ALL)] == ["email"]
    assert [x.channel for x in plan(p, "dispatch", at(12), frozenset({"email"}))] == ["email"]  # no push subscription
    paused = Preferences.of({"channels": ["email", "line"], "paused": {"email": {"reason": "bounce"}}})
    assert [x.channel for x in plan(paused, "dispatch", at(12), ALL)] == ["line"]
    # a category opted out of everywhere goes to no channel (the inbox still has it)
    off = Preferences.of({"channels": ["email"], "categories": {"programme": []}})
    assert plan(off, "programme", at(12), ALL) == []
    assert Preferences.of({"email_enabled": False}).channels == frozenset()
    assert category_of("dispatch_status") == "dispatch" and category_of("nothing_known") == "other"


def test_R_NOT_04_quiet_hours_defer_to_their_end_also_across_midnight():
    p = Preferences.of({"quiet_hours": {"start": "22:00", "end": "07:00"}})
    assert in_quiet_hours(p, at(23)) and in_quiet_hours(p, at(6, 59)) and not in_quiet_hours(p, at(7))
    assert quiet_until(p, at(23, 30)) == at(7, day=2)
    assert quiet_until(p, at(3)) == at(7)
    assert quiet_until(p, at(12)) == at(12)
    day = Preferences.of({"quiet_hours": {"start": "12:00", "end": "13:00"}})
    assert quiet_until(day, at(12, 30)) == at(13) and not in_quiet_hours(day, at(13))
    assert plan(p, "dispatch", at(23, 30), ALL)[0] == Plan("email", at(7, day=2))
    assert not in_quiet_hours(Preferences.of({"quiet_hours": {"start": "22:00", "end": "22:00"}}), at(22))


def test_R_NOT_04_digest_categories_gather_into_one_daily_email():
    p = Preferences.of({"channels": ["email", "webpush"], "digest": ["programme"], "digest_hour": 8})
    assert plan(p, "programme", at(12), ALL) == [Plan("email", None), Plan("webpush", at(12))]
    assert plan(p, "dispatch", at(12), ALL)[0] == Plan("email", at(12))
    assert next_digest_at(p, at(12)) == at(8, day=2) and next_digest_at(p, at(7)) == at(8)
    quiet = Preferences.of({"digest": ["programme"], "digest_hour": 6, "quiet_hours": {"start": "22:00", "end": "07:00"}})
    assert next_digest_at(quiet, at(12)) == at(7, day=2)
    subject, body = digest_text([{"subject": "A", "body": "a"}, {"subject": "B", "body": "b"}], "ja")
    assert "2件" in subject and body.index("A") < body.index("B")


def test_R_NOT_04_one_click_unsubscribe_token_cannot_be_forged():
    secret = b"s" * 32
    t = unsubscribe_token(secret, "acc-1", "programme")
    assert read_unsubscribe_token(secret, t) == ("acc-1", "programme")
    assert read_unsubscribe_token(b"x" * 32, t) is None
    forged = base64.urlsafe_b64encode(b"acc-2|programme|" + b"0" * 16).decode()
    assert read_unsubscribe_token(secret, forged) is None
    assert read_unsubscribe_token(secret, "not base64 !") is None


def test_R_NOT_04_messaging_webhook_signature():
    body = b'{"events":[]}'
    good = base64.b64encode(hmac.new(b"chsecret", body, hashlib.sha256).digest()).decode()
    assert line_signature_ok("chsecret", body, good)
    assert not line_signature_ok("chsecret", body + b" ", good) and not line_signature_ok("chsecret", body, "")


DSN = b"""From: MAILER-DAEMON@mx.example.jp
To: no-reply@smeportal.example.jp
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="BOUND"

--BOUND
Content-Type: text/plain

The mail system could not deliver your message.

--BOUND
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.jp
Arrival-Date: Mon, 30 Nov 2026 10:00:00 +0900

Final-Recipient: rfc822; Gone@Example.jp
Original-Recipient: rfc822;gone@example.jp
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <gone@example.jp>:
    Recipient address rejected: User unknown

Final-Recipient: rfc822; full@example.jp
Action: delayed
Status: 4.2.2
Diagnostic-Code: smtp; 452 4.2.2 Mailbox full

--BOUND
Content-Type: text/rfc822-headers

From: no-reply@smeportal.example.jp
To: gone@example.jp
Subject: test
Message-ID: <inbox.ev-1.acc-1@smeportal>

--BOUND--
"""


def test_R_NOT_04_bounce_report_parsed_per_recipient_hard_or_soft():
    got = dsn.parse(DSN)
    assert [(b.address, b.action, b.status, b.permanent) for b in got] == [
        ("gone@example.jp", "failed", "5.1.1", True), ("full@example.jp", "delayed", "4.2.2", False)]
    assert got[0].message_id == "<inbox.ev-1.acc-1@smeportal>" and "User unknown" in got[0].diagnostic
    assert dsn.parse(b"Subject: hello\n\nnot a report") == []


# --- saved searches and reminders (R-NOT-04, R-EX-04) -------------------------------------------------------------
from datetime import date  # noqa: E402

from notifications_service.domain import (  # noqa: E402
    AlertParams, deadline_reminder_due, expert_matches, expert_terms, programme_matches, programme_terms,
    renewal_reminder_due, render, search_anchors,
)

PROGRAMME = {"_id": "p1", "name": "IT導入補助金", "purpose": "ITツール導入の支援", "target": "中小企業",
             "tags": {"prefectures": ["熊本県"], "industries": [], "keywords": ["デジタル化"]}}


def test_R_NOT_04_saved_programme_search_matches_and_is_reached_through_its_anchors():
    search = {"prefectures": ["熊本県"], "keywords": ["デジタル"]}
    assert programme_matches(search, PROGRAMME)
    assert not programme_matches({"prefectures": ["福岡県"]}, PROGRAMME)
    assert not programme_matches({"keywords": ["事業承継"]}, PROGRAMME)
    nationwide = {**PROGRAMME, "tags": {"prefectures": [], "industries": ["製造業"]}}
    assert programme_matches({"prefectures": ["福岡県"]}, nationwide)  # nationwide covers every prefecture
    assert not programme_matches({"industries": ["小売業"]}, nationwide)
    # a new programme reads only the searches anchored on one of its terms
    assert set(search_anchors("programme", search)) & set(programme_terms(PROGRAMME["tags"]))
    assert set(search_anchors("programme", {"prefectures": ["福岡県"]})) & set(programme_terms(nationwide["tags"]))
    assert not set(search_anchors("programme", {"prefectures": ["福岡県"]})) & set(programme_terms(PROGRAMME["tags"]))
    assert search_anchors("programme", {"keywords": ["x"]}) == ["all"] and "all" in programme_terms({})


def test_R_NOT_04_saved_expert_search_matches_registered_experts_only():
    expert = {"status": "registered", "name": "山田", "fields": ["sales_channels"], "regions": ["熊本県"],
              "qualifications": ["中小企業診断士"]}
    crit = {"fields": ["sales_channels"], "qualifications": ["中小企業診断士"]}
    assert expert_matches(crit, expert) and not expert_matches(crit, {**expert, "status": "portal"})
    assert not expert_matches({"regions": ["北海道"]}, expert)
    assert set(search_anchors("expert", crit)) & set(expert_terms(expert))


def test_R_NOT_04_R_EX_04_reminders_before_deadlines_and_renewals():
    p = AlertParams(deadline_days=7, renewal_days=30)
    assert deadline_reminder_due(date(2026, 12, 1), date(2026, 12, 8), p)
    assert not deadline_reminder_due(date(2026, 12, 1), date(2026, 12, 9), p)
    assert not deadline_reminder_due(date(2026, 12, 9), date(2026, 12, 8), p)  # past
    assert renewal_reminder_due(date(2027, 3, 1), 2026, p) and not renewal_reminder_due(date(2027, 2, 27), 2026, p)
    assert not renewal_reminder_due(date(2027, 3, 1), 2025, p) and not renewal_reminder_due(date(2027, 3, 1), None, p)
    _, body, _ = render("renewal_reminder", {"fiscal_year": "2026", "year_end": "2027-03-31", "link": "L"})
    assert "2026年度" in body and "更新" in body and "L" in body


def test_R_NOT_04_one_plan_of_deliveries_and_digest_entries_for_the_single_and_the_batch_path():
    """`domain.outgoing`: what one message makes (used by `store.send_out` and `store.notify_many` alike)."""
    from notifications_service.domain import outgoing, read_unsubscribe_token, wants_subscriptions

    sub = {"_id": "s1", "account_id": "a1", "endpoint": "https://push.example/1", "keys": {"p256dh": "k", "auth": "x"}}
    contact = {"email": "a@example.jp", "channels": ["email", "webpush", "line"], "line_user_id": "U1",
               "digest": ["programme"], "quiet_hours": {"start": "22:00", "end": "07:00"}}
    kw = dict(key="inbox:n1", recipient_id="a1", params={"title": "T", "url": "https://x/p"}, contact=contact,
              subscriptions=[sub], portal_url="https://portal", unsubscribe_secret=b"s")
    out = outgoing(template="dispatch_status", at=at(23, 30), **kw)
    # one delivery per channel under the dedupe key, deferred to the end of the quiet hours
    assert [(d["_id"], d["channel"]) for d in out.deliveries] == [
        ("inbox:n1", "email"), ("inbox:n1:webpush:s1", "webpush"), ("inbox:n1:line", "line")]
    assert {d["next_at"] for d in out.deliveries} == {at(7, day=2)} and out.digest is None
    email = out.deliveries[0]
    assert email["message_id"] == "<inbox.n1@smeportal>" and email["to"] == "a@example.jp"
    assert read_unsubscribe_token(b"s", email["unsubscribe"].rsplit("/", 1)[1]) == ("a1", "dispatch")
    assert outgoing(template="dispatch_status", at=at(23, 30), **kw) == out  # the same message twice: same ids
    # a digest category: the e-mail goes into the day's digest (once per key), the other channels as usual
    out = outgoing(template="programme_recommended", at=at(12), **kw)
    assert [d["channel"] for d in out.deliveries] == ["webpush", "line"]
    assert (out.digest.digest_id, out.digest.key, out.digest.due_at) == ("a1:2026-12-02", "inbox:n1", at(8, day=2))
    # a sender naming the address asks for e-mail only; subscriptions are needed only for web push
    named = outgoing(template="dispatch_status", at=at(12), **{**kw, "params": {"email": "o@example.jp"}})
    assert [(d["channel"], d["to"]) for d in named.deliveries] == [("email", "o@example.jp")]
    assert wants_subscriptions(contact, {}) and not wants_subscriptions(contact, {"email": "o@example.jp"})
    assert not wants_subscriptions({}, {})

"""The notifications service on real Kafka + MongoDB with a real SMTP server (aiosmtpd) on loopback:
rating prompts (R-RAT-03, R-NOT-02), dispatch status notices (R-NOT-02), Notify, e-mail retries."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
from aiokafka import AIOKafkaProducer
from aiosmtpd.controller import Controller
from pymongo import AsyncMongoClient

from contracts import Envelope
from contracts.events.dispatch import DispatchStatusChanged
from contracts.events.experts import ExpertChanged
from contracts.events.identity import AccountRegistered, BindingChanged, StaffLinked
from contracts.events.notifications import Notify
from contracts.events.ratings import RatingGiven, RatingOwed
from tests.support import MailSink, eventually, free_port, token


def auth(sub: str, *roles: str, **claims) -> dict:
    return {"authorization": f"Bearer {token(sub=sub, roles=list(roles), **claims)}"}


async def publish(infra, ns, *messages, producer="ratings", occurred_at: datetime | None = None) -> None:
    p = AIOKafkaProducer(bootstrap_servers=infra.kafka)
    await p.start()
    try:
        for msg in messages:
            env = Envelope.wrap(msg, producer=producer)
            if occurred_at:
                env = env.model_copy(update={"occurred_at": occurred_at})
            await p.send_and_wait(ns.topic(msg.topic), env.model_dump_json().encode(), key=msg.key().encode())
    finally:
        await p.stop()


def owed(owed_id: str, rater: str) -> RatingOwed:
    return RatingOwed(expert_id="exp-1", owed_id=owed_id, dispatch_id=owed_id.split(":")[0], business_id="biz-1",
                      rater_account_id=rater, rater_kind="business", since=datetime.now(UTC))


async def test_R_RAT_03_R_NOT_02_prompt_until_rated_and_one_email_per_day(infra, ns, services, smtp):
    sink, port = smtp
    svc = services("notifications", SMTP_HOST="127.0.0.1", SMTP_PORT=str(port))
    rater, address = "acc-" + uuid.uuid4().hex[:6], "taro@example.jp"
    oid = f"d-{uuid.uuid4().hex[:6]}:business"
    async with httpx.AsyncClient(base_url=svc.url) as http:
        r = await http.put("/me/contact", json={"email": address, "language": "ja"}, headers=auth(rater, "business"))
        assert r.status_code == 200
        r = await http.put("/me/contact", json={"email": "not-an-address"}, headers=auth(rater, "business"))
        assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
        await publish(infra, ns, owed(oid, rater), owed(oid, rater))  # duplicated event: one prompt, one e-mail

        async def prompts():
            r = await http.get("/prompts", headers=auth(rater, "business"))
            return r.json() if r.json() else None
        got = await eventually(prompts, timeout=30)
        assert [p["owed_id"] for p in got] == [oid] and "評価" in got[0]["message"]
        # The e-mail really arrived, in Japanese.
        mails = await eventually(lambda: _async(sink.to(address)), timeout=30)
        assert "評価をお願いします" in mails[0]["Subject"] and oid.split(":")[0] in mails[0].get_content()
        # More logins the same day: the pop-up stays, the e-mail is not repeated.
        for _ in range(3):
            assert [p["owed_id"] for p in (await http.get("/prompts", headers=auth(rater, "business"))).json()] == [oid]
        ds = (await http.get("/deliveries", headers=auth(rater, "business"))).json()
        assert [(d["template"], d["status"], d["to"]) for d in ds] == [("rating_owed", "sent", address)]
        inbox = (await http.get("/inbox", headers=auth(rater, "business"))).json()
        assert [i["template"] for i in inbox] == ["rating_owed"]
        # Someone else sees neither.
        assert (await http.get("/prompts", headers=auth("other", "business"))).json() == []
        assert (await http.get("/inbox", headers=auth("other", "business"))).json() == []
        r = await http.get("/deliveries", params={"recipient_id": rater}, headers=auth("other", "business"))
        assert r.status_code == 403
        # Rated: the pop-up disappears.
        await publish(infra, ns, RatingGiven(expert_id="exp-1", owed_id=oid, dispatch_id=oid.split(":")[0],
                                             business_id="biz-1", rater_account_id=rater, rater_kind="business"))

        async def no_prompts():
            r = await http.get("/prompts", headers=auth(rater, "business"))
            return r.json() == []
        await eventually(no_prompts, timeout=30)
        # RatingGiven followed the duplicate RatingOwed on the same partition, so the duplicate was consumed
        # by now: still one inbox item, one e-mail.
        assert len((await http.get("/deliveries", headers=auth(rater, "business"))).json()) == 1
        assert len((await http.get("/inbox", headers=auth(rater, "business"))).json()) == 1
    assert len(sink.to(address)) == 1


async def _async(value):
    return value


async def test_R_NOT_03_dispatch_status_reaches_every_person_of_every_party_and_notify_command(infra, ns, services, smtp):
    sink, port = smtp
    svc = services("notifications", SMTP_HOST="127.0.0.1", SMTP_PORT=str(port), PORTAL_URL="https://portal.example.jp")
    u = uuid.uuid4().hex[:6]
    biz, expert_id, org, bureau = f"biz-{u}", f"exp-{u}", f"org-{u}", f"bureau-{u}"
    prime, member, gone, expert, staff, officer = (f"{n}-{u}" for n in ("prime", "member", "gone", "expacc", "staff", "officer"))
    await publish(infra, ns, *[AccountRegistered(account_id=a, kind=k, real_name="x", email=f"{a}@example.jp",
                                                 bureau_id=bureau if k == "bureau" else None)
                               for a, k in ((prime, "business"), (member, "business"), (gone, "business"),
                                            (expert, "expert"), (staff, "institution"), (officer, "bureau"))],
                  BindingChanged(business_id=biz, account_id=prime, role="prime"),
                  BindingChanged(business_id=biz, account_id=member, role="member"),
                  BindingChanged(business_id=biz, account_id=gone, role="member"),
                  BindingChanged(business_id=biz, account_id=gone, role=None),  # the binding ended: hears nothing
                  StaffLinked(account_id=staff, org_id="org-old"), StaffLinked(account_id=staff, org_id=org,
                                                                               previous_org_id="org-old"),
                  producer="identity")
    await publish(infra, ns, ExpertChanged(expert_id=expert_id, account_id=expert, change="approved", status="registered",
                                           name="山田"), producer="experts")
    async with httpx.AsyncClient(base_url=svc.url) as http:
        r = await http.put("/me/contact", json={"email": "expert-own@example.jp", "language": "en"},
                           headers=auth(expert, "expert"))
        assert r.status_code == 200

        parties = AsyncMongoClient(infra.mongo)[ns.db("notifications")].parties

        async def learnt():  # the party read model comes from other topics than the dispatch events
            docs = {d["_id"]: d.get("account_ids") async for d in parties.find({})}
            return docs.get(f"business:{biz}") == [prime, member] and docs.get(f"organisation:{org}") == [staff] \
                and docs.get(f"expert:{expert_id}") == [expert] and docs.get(f"bureau:{bureau}") == [officer]
        await eventually(learnt, timeout=30)
        await publish(infra, ns, DispatchStatusChanged(dispatch_id=f"d-{u}", status="visited", route="A",
                                                       fiscal_year=2026, business_id=biz, expert_id=expert_id,
                                                       institution_id=org), producer="dispatch")

        async def inbox_of(sub, role):
            r = await http.get("/inbox", headers=auth(sub, role))
            return r.json() or None
        for who, role, words in ((prime, "business", "サインオフ"), (member, "business", "サインオフ"),
                                 (staff, "institution", "次のお知らせ"), (expert, "expert", "file the dispatch report")):
            items = await eventually(lambda: inbox_of(who, role), timeout=30)
            assert len(items) == 1 and words in items[0]["body"], (who, items)
            assert f"https://portal.example.jp/api/dispatch/requests/d-{u}" in items[0]["body"]
        # the address identity knows, unless the person set their own (the expert, in English)
        for address in (f"{prime}@example.jp", f"{member}@example.jp", f"{staff}@example.jp", "expert-own@example.jp"):
            await eventually(lambda: _async(sink.to(address)), timeout=30)
        assert "visit recorded" in sink.to("expert-own@example.jp")[0]["Subject"]
        assert (await http.get("/inbox", headers=auth(gone, "business"))).json() == []
        assert sink.to(f"{gone}@example.jp") == []

        # R-PF-03: identity's notice to a bureau reaches its officers, with a body and a link that exists
        params = {"platform_id": "pf-1", "platform_name": "熊本PF", "org_id": org, "org_name": "肥後信金",
                  "institution_type": "8"}
        await publish(infra, ns, *[Notify(notification_id=f"pf-member-{u}", recipient_id=bureau, recipient_kind="bureau",
                                          template="platform_dispatch_member_added", params=params)] * 2,
                      producer="identity")
        items = await eventually(lambda: inbox_of(officer, "bureau"), timeout=30)
        assert len(items) == 1 and "肥後信金" in items[0]["body"]
        assert "https://portal.example.jp/api/identity/platforms/pf-1" in items[0]["body"]
        mails = await eventually(lambda: _async(sink.to(f"{officer}@example.jp")), timeout=30)
        assert "熊本PF" in mails[0]["Subject"]

        # A Notify command with its own address, for an unknown template: English generic fallback, once.
        await publish(infra, ns, Notify(notification_id="n-1", recipient_id=biz, template="something_new",
                                        params={"email": "owner@example.jp", "subject": "Hello", "message": "World"}),
                      Notify(notification_id="n-1", recipient_id=biz, template="something_new",
                             params={"email": "owner@example.jp", "subject": "Hello", "message": "World"}),
                      producer="recommend")
        mails = await eventually(lambda: _async(sink.to("owner@example.jp")), timeout=30)
        assert mails[0]["Subject"] == "[SME portal] Hello" and mails[0].get_content().strip() == "World"
        ds = (await http.get("/deliveries", params={"recipient_id": biz}, headers=auth("op", "operator"))).json()
        assert [(d["status"], d["to"]) for d in ds] == [("sent", "owner@example.jp")]


async def test_R_NOT_03_a_member_learnt_after_a_status_gets_it_when_they_joined_before_it(infra, ns, services):
    """CI saw it: a member invited a moment before a request was learnt (identity.events) after the request's first
    status (dispatch.events); the business's prime was known, so nothing waited, and the member never heard of it.
    A person who joins gets what the party was told since they joined, and nothing from before."""
    svc = services("notifications")
    u = uuid.uuid4().hex[:6]
    biz, expert_id = f"biz-{u}", f"exp-{u}"
    prime, late, newcomer, sentinel = (f"{n}-{u}" for n in ("prime", "late", "newcomer", "sentinel"))
    now = datetime.now(UTC)
    await publish(infra, ns, *[AccountRegistered(account_id=a, kind="business", real_name="x", email=f"{a}@example.jp")
                               for a in (prime, late, newcomer, sentinel)],
                  BindingChanged(business_id=biz, account_id=prime, role="prime"), producer="identity",
                  occurred_at=now - timedelta(hours=1))
    parties = AsyncMongoClient(infra.mongo)[ns.db("notifications")].parties

    async def learnt(account):
        return account in ((await parties.find_one({"_id": f"business:{biz}"})) or {}).get("account_ids", [])
    await eventually(lambda: learnt(prime), timeout=30)
    await publish(infra, ns, DispatchStatusChanged(dispatch_id=f"d-{u}", status="requested", route="B",
                                                   fiscal_year=2026, business_id=biz, expert_id=expert_id),
                  producer="dispatch", occurred_at=now - timedelta(minutes=10))
    async with httpx.AsyncClient(base_url=svc.url) as http:
        async def inbox_of(sub):
            return (await http.get("/inbox", headers=auth(sub, "business"))).json() or None
        assert len(await eventually(lambda: inbox_of(prime), timeout=30)) == 1
        # joined 11 minutes ago, learnt now: told of the request made 10 minutes ago
        await publish(infra, ns, BindingChanged(business_id=biz, account_id=late, role="member"), producer="identity",
                      occurred_at=now - timedelta(minutes=11))
        items = await eventually(lambda: inbox_of(late), timeout=30)
        assert [i["template"] for i in items] == ["dispatch_status"] and f"d-{u}" in items[0]["subject"], items
        # joined now: not told of what happened before; the sentinel (same key, so after it) shows it was handled
        await publish(infra, ns, BindingChanged(business_id=biz, account_id=newcomer, role="member"),
                      producer="identity", occurred_at=now)
        await publish(infra, ns, BindingChanged(business_id=biz, account_id=sentinel, role="member"),
                      producer="identity", occurred_at=now - timedelta(minutes=11))
        await eventually(lambda: inbox_of(sentinel), timeout=30)
        assert await inbox_of(newcomer) is None
        assert len(await inbox_of(late)) == 1 and len(await inbox_of(prime)) == 1  # the sentinel's pass added none

        # the newcomer's binding ends, then its join comes again (Kafka redelivers after a rebalance): the account
        # stays out, and is not told of the next status either
        await publish(infra, ns, BindingChanged(business_id=biz, account_id=newcomer, role=None), producer="identity",
                      occurred_at=now + timedelta(seconds=1))
        await publish(infra, ns, BindingChanged(business_id=biz, account_id=newcomer, role="member"),
                      BindingChanged(business_id=biz, account_id=sentinel, role="member"), producer="identity",
                      occurred_at=now + timedelta(seconds=0.5))

        async def sentinel_again():  # the sentinel's second join (behind the stale one on the partition) applied
            doc = await parties.find_one({"_id": f"business:{biz}"})
            at = doc["at"][sentinel].replace(tzinfo=UTC)  # stored to the millisecond
            return abs(at - (now + timedelta(seconds=0.5))) < timedelta(milliseconds=1) and doc
        doc = await eventually(sentinel_again, timeout=30)
        assert newcomer not in doc["account_ids"] and late in doc["account_ids"], doc


async def test_R_NOT_03_a_status_for_a_business_nobody_is_known_for_reaches_each_person_learnt_later(infra, ns, services):
    """Nobody of the business known yet when its status comes: the notice waits; the first person learnt gets it from
    there, the second (learnt after the first took it) from what the party was told."""
    svc = services("notifications")
    u = uuid.uuid4().hex[:6]
    biz, first, second = f"biz-{u}", f"first-{u}", f"second-{u}"
    now = datetime.now(UTC)
    await publish(infra, ns, DispatchStatusChanged(dispatch_id=f"d-{u}", status="requested", route="B",
                                                   fiscal_year=2026, business_id=biz, expert_id=f"exp-{u}"),
                  producer="dispatch", occurred_at=now - timedelta(minutes=5))
    parked = AsyncMongoClient(infra.mongo)[ns.db("notifications")].parked

    async def waiting():
        return await parked.find_one({"_id": f"business:{biz}", "notices.0": {"$exists": True}})
    await eventually(waiting, timeout=30)
    async with httpx.AsyncClient(base_url=svc.url) as http:
        async def inbox_of(sub):
            return (await http.get("/inbox", headers=auth(sub, "business"))).json() or None
        for who in (first, second):
            await publish(infra, ns, BindingChanged(business_id=biz, account_id=who, role="member" if who == second
                                                    else "prime"), producer="identity",
                          occurred_at=now - timedelta(minutes=6))
            items = await eventually(lambda: inbox_of(who), timeout=30)
            assert [i["template"] for i in items] == ["dispatch_status"] and f"d-{u}" in items[0]["subject"], (who, items)


async def test_R_NOT_02_email_retried_with_backoff_until_the_server_answers(infra, ns, services):
    sink, port = MailSink(), free_port()  # nothing listens on the port yet
    svc = services("notifications", SMTP_HOST="127.0.0.1", SMTP_PORT=str(port), SMTP_BACKOFF_SECONDS="0.3",
                   SMTP_MAX_ATTEMPTS="30", SMTP_TIMEOUT="2")
    user = "acc-" + uuid.uuid4().hex[:6]
    async with httpx.AsyncClient(base_url=svc.url) as http:
        await http.put("/me/contact", json={"email": "late@example.jp"}, headers=auth(user, "business"))
        await publish(infra, ns, Notify(notification_id="n-2", recipient_id=user, template="programme_recommended",
                                        params={"title": "事業承継補助金", "url": "https://example.jp/p"}))

        async def failed_once():
            ds = (await http.get("/deliveries", headers=auth(user, "business"))).json()
            return ds if ds and ds[0]["attempts"] >= 1 and ds[0]["status"] == "queued" else None
        ds = await eventually(failed_once, timeout=30)
        assert ds[0]["last_error"] and ds[0]["history"][0]["result"] == "error"
        ctl = Controller(sink, hostname="127.0.0.1", port=port)
        ctl.start()
        try:
            mails = await eventually(lambda: _async(sink.to("late@example.jp")), timeout=60)
            assert "事業承継補助金" in mails[0]["Subject"]

            async def sent():
                ds = (await http.get("/deliveries", headers=auth(user, "business"))).json()
                return ds if ds[0]["status"] == "sent" else None
            ds = await eventually(sent, timeout=30)
            assert ds[0]["attempts"] >= 2 and ds[0]["history"][-1]["result"] == "sent"
        finally:
            ctl.stop()

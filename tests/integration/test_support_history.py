"""Support history (個人カルテ) on the running dispatch service, real Kafka and MongoDB (R-POR-06, R-DSP-05):
institutions log consultations; another institution does not see them without the business's consent, sees them
with it and no longer after the business withdraws it; grants and withdrawals are events (and audit entries), every
read of another institution's entries is listed for the business; route-A follow-ups appear in the history and a
follow-up period without one produces FollowUpDue on the clock."""
from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta

import httpx
from aiokafka import AIOKafkaProducer
from pymongo import AsyncMongoClient

from contracts import Envelope
from contracts.events.identity import OrganisationRegistered
from tests.support import eventually, read_topic, token


def auth(sub: str, *roles: str, **claims) -> dict:
    return {"authorization": f"Bearer {token(sub=sub, roles=list(roles), ttl=1800, **claims)}"}


def staff(sub: str, org: str) -> dict:
    return auth(sub, "institution", orgs=[{"org_id": org, "platform_id": "pf", "member_role": "institution",
                                           "rights": []}])


async def produce(infra, ns, messages) -> None:
    p = AIOKafkaProducer(bootstrap_servers=infra.kafka)
    await p.start()
    try:
        for m in messages:
            env = Envelope.wrap(m, producer="identity")
            await p.send_and_wait(ns.topic(m.topic), env.model_dump_json().encode(), key=m.key().encode())
    finally:
        await p.stop()


def entry(biz: str, topic: str, day: date) -> dict:
    return {"business_id": biz, "consulted_on": day.isoformat(), "topic": topic, "summary": f"{topic}について相談した。",
            "next_steps": "試算表を次回持参", "staff": "山田"}


async def test_R_POR_06_history_invisible_without_consent_visible_with_it_invisible_after_withdrawal(infra, ns, services):
    svc = services("dispatch", FOLLOW_UP_SWEEP_SECONDS="1")
    u = uuid.uuid4().hex[:6]
    biz, other_biz = f"biz-{u}", f"biz-x-{u}"
    shoko, bank = f"org-shoko-{u}", f"org-bank-{u}"
    prime = auth(f"acc-prime-{u}", "business", biz=[{"id": biz, "role": "prime"}])
    member = auth(f"acc-member-{u}", "business", biz=[{"id": biz, "role": "member"}])
    stranger = auth(f"acc-x-{u}", "business", biz=[{"id": other_biz, "role": "prime"}])
    shoko_staff, bank_staff = staff(f"acc-shoko-{u}", shoko), staff(f"acc-bank-{u}", bank)
    agency = auth(f"acc-agency-{u}", "agency")
    await produce(infra, ns, [OrganisationRegistered(org_id=shoko, name="商工会", kind="institution", institution_type=1),
                              OrganisationRegistered(org_id=bank, name="信用金庫", kind="institution", institution_type=5)])
    db = AsyncMongoClient(infra.mongo)[ns.db("dispatch")]
    today = datetime.now(UTC).date()

    # a route-A dispatch of the business, reported 400 days ago, followed up by the bank once in its first period only
    # (a fixture for the clock: the way to a report is proven in test_dispatch_saga / test_programme_e2e)
    filed = datetime.now(UTC) - timedelta(days=400)
    await db.dispatches.insert_one({
        "_id": f"dsp-{u}", "version": 1, "business_id": biz, "route": "A", "status": "paid", "fiscal_year": 2025,
        "institution_id": bank, "expert_id": f"ex-{u}", "report": {"filed_at": filed, "summary": "販路の整理"},
        "follow_ups": [{"at": filed + timedelta(days=100), "by": f"acc-bank-{u}", "kind": "visit",
                        "note": "試験販売が始まった"}], "history": []})

    async with httpx.AsyncClient(base_url=svc.url, timeout=30) as http:
        # the Shōkōkai logs two consultations, the bank one
        for day, topic in ((today - timedelta(days=20), "資金繰り"), (today - timedelta(days=5), "事業承継")):
            r = await http.post("/support-history/entries", headers=shoko_staff, json=entry(biz, topic, day))
            assert r.status_code == 201, r.text
            assert r.json()["org_id"] == shoko and r.json()["topic"] == topic
        r = await http.post("/support-history/entries", headers=bank_staff, json=entry(biz, "設備投資", today))
        assert r.status_code == 201, r.text
        # nobody logs for an institution it does not act for, nor a consultation not yet held
        r = await http.post("/support-history/entries", headers=bank_staff, json={**entry(biz, "x" * 3, today),
                                                                                  "org_id": shoko})
        assert r.status_code == 403, r.text
        r = await http.post("/support-history/entries", headers=bank_staff,
                            json=entry(biz, "未来", today + timedelta(days=2)))
        assert r.status_code == 422, r.text

        async def seen_by(headers) -> dict:
            r = await http.get("/support-history", headers=headers, params={"business_id": biz})
            assert r.status_code == 200, r.text
            return r.json()

        def kinds(view: dict) -> set[tuple[str, str]]:
            return {(i["kind"], i["org_id"]) for i in view["items"]}

        # without consent: the bank sees its own entry and its own follow-up, none of the Shōkōkai's
        before = await seen_by(bank_staff)
        assert before["shared_with_you"] is False
        assert kinds(before) == {("consultation", bank), ("follow_up", bank)}
        # the Shōkōkai sees only its own (the bank's follow-up is the bank's)
        assert kinds(await seen_by(shoko_staff)) == {("consultation", shoko)}
        # the business sees all of it: consultations and the route-A follow-up together
        mine = await seen_by(prime)
        assert len(mine["items"]) == 4 and ("follow_up", bank) in kinds(mine)
        assert (await http.get("/support-history/reads", headers=prime)).json()["reads"] == []  # nothing read yet

        # consent: the member account grants the bank (from its token; another business cannot, for biz)
        r = await http.post("/support-history/grants", headers=stranger, json={"org_id": bank, "business_id": biz})
        assert r.status_code == 403, r.text

        async def granted():
            r = await http.post("/support-history/grants", headers=member, json={"org_id": bank})
            return r if r.status_code == 201 else None  # 422 until dispatch learnt the organisation
        g = (await eventually(granted, timeout=30, interval=0.5)).json()
        assert g["business_id"] == biz and g["in_force"] and g["granted_by"] == f"acc-member-{u}"

        r = await http.get("/support-history/shared", headers=bank_staff)
        assert r.status_code == 200, r.text
        assert [b["business_id"] for b in r.json()["businesses"]] == [biz], r.text
        r = await http.get("/support-history/shared", headers=shoko_staff)
        assert r.json()["businesses"] == [], r.text
        shared = await seen_by(bank_staff)
        assert shared["shared_with_you"] is True
        assert kinds(shared) == {("consultation", bank), ("consultation", shoko), ("follow_up", bank)}
        assert len(shared["items"]) == 4
        # the read of the Shōkōkai's entries is listed for the business: who, when, whose entries
        [read] = (await http.get("/support-history/reads", headers=prime)).json()["reads"]
        assert read["reader"] == f"acc-bank-{u}" and read["reader_orgs"] == [bank] and read["orgs_read"] == [shoko]
        # the agency reads for oversight: also listed
        assert len((await seen_by(agency))["items"]) == 4
        reads = (await http.get("/support-history/reads", headers=prime)).json()["reads"]
        assert [r["reader_kind"] for r in reads] == ["oversight", "institution"]
        assert (await http.get("/support-history/reads", headers=stranger,
                               params={"business_id": biz})).status_code == 403

        # withdrawal: the bank is back to its own entries
        r = await http.post(f"/support-history/grants/{bank}/withdraw", headers=prime)
        assert r.status_code == 200 and r.json()["in_force"] is False, r.text
        after = await seen_by(bank_staff)
        assert after["shared_with_you"] is False and kinds(after) == {("consultation", bank), ("follow_up", bank)}
        r = await http.post(f"/support-history/grants/{bank}/withdraw", headers=prime)
        assert r.status_code == 409, r.text
        assert (await http.get("/support-history/shared", headers=bank_staff)).json()["businesses"] == []
        listed = (await http.get("/support-history/grants", headers=member)).json()["grants"]
        assert [(a["act"], a["by"]) for a in listed[0]["acts"]] == [("granted", f"acc-member-{u}"),
                                                                    ("withdrawn", f"acc-prime-{u}")]
        assert listed[0]["org_name"] == "信用金庫"

    # the events on dispatch.history, keyed by the business; each grant and withdrawal also an audit entry
    records = await read_topic(infra.kafka, ns.topic("dispatch.history"), min_count=6, timeout=30)
    by_type: dict[str, list] = {}
    for rec in records:
        env = json.loads(rec.value)
        by_type.setdefault(env["event_type"], []).append((rec.key.decode(), env))
    assert len(by_type["dispatch.ConsultationLogged"]) == 3
    assert all(k == biz for k, _ in by_type["dispatch.ConsultationLogged"])
    assert "summary" not in by_type["dispatch.ConsultationLogged"][0][1]["payload"]  # content stays in dispatch
    [(k, granted_env)] = by_type["dispatch.HistorySharingGranted"]
    assert k == biz and granted_env["payload"]["org_id"] == bank and granted_env["actor"] == f"acc-member-{u}"
    assert len(by_type["dispatch.HistorySharingWithdrawn"]) == 1
    # R-DSP-05: the second follow-up period (days 180–360 after the report) had none: the clock said so, once
    [(k, due)] = by_type["dispatch.FollowUpDue"]
    assert k == biz and due["payload"]["period"] == 2 and due["payload"]["institution_id"] == bank

    async def audited():
        return await db.audit.count_documents({"key": biz, "action": {"$in": [
            "dispatch.HistorySharingGranted", "dispatch.HistorySharingWithdrawn", "dispatch.SupportHistoryRead"]}})
    assert await eventually(audited, timeout=20) >= 4

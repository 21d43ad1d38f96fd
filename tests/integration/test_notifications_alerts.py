"""Saved searches and reminders (R-NOT-04, R-EX-04) on the running notifications service: a new programme or a newly
registered expert alerts the owners of the searches it matches (once, whatever redelivery), a followed programme's
deadline and an expert's renewal are reminded, and a fan-out to many people lands in their digests, not in a flood
of single e-mails."""
from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from pymongo import AsyncMongoClient

from contracts.events.experts import ExpertChanged
from contracts.events.identity import AccountRegistered
from contracts.events.recommend import ProgrammeAdded, ProgrammeTags
from contracts.vocab import fiscal_year
from tests.integration.test_notifications_service import _async, auth, publish
from tests.support import eventually

FANOUT = 200


async def test_R_NOT_04_R_EX_04_saved_search_alerts_reminders_and_fan_out_into_digests(infra, ns, services, smtp):
    sink, port = smtp
    svc = services("notifications", SMTP_HOST="127.0.0.1", SMTP_PORT=str(port), PORTAL_URL="https://portal.example.jp",
                   REMINDER_POLL_SECONDS="1", REMINDER_RENEWAL_DAYS="400", SMTP_BACKOFF_SECONDS="0.2")
    u = uuid.uuid4().hex[:6]
    db = AsyncMongoClient(infra.mongo)[ns.db("notifications")]
    who = {n: f"{n}-{u}" for n in ("kumamoto", "fukuoka", "seeker", "expert")}
    crowd = [f"crowd-{u}-{i:03d}" for i in range(FANOUT)]
    await publish(infra, ns, *[AccountRegistered(account_id=a, kind="business", real_name="x", email=f"{a}@example.jp")
                               for a in [*who.values(), *crowd]], producer="identity")
    today_jst = (datetime.now(UTC) + timedelta(hours=9)).date()
    async with httpx.AsyncClient(base_url=svc.url, timeout=30) as http:
        async def save(account: str, body: dict) -> dict:
            r = await http.post("/me/saved-searches", headers=auth(account, "business"), json=body)
            assert r.status_code == 201, r.text
            return r.json()
        await save(who["kumamoto"], {"kind": "programme", "name": "熊本のデジタル化",
                                     "criteria": {"prefectures": ["熊本県"], "keywords": ["デジタル"]}})
        await save(who["fukuoka"], {"kind": "programme", "name": "福岡", "criteria": {"prefectures": ["福岡県"]}})
        await save(who["seeker"], {"kind": "expert", "name": "販路の専門家", "criteria": {"fields": ["sales_channels"]}})
        r = await http.post("/me/saved-searches", headers=auth(who["seeker"], "business"), json={"kind": "job", "name": "x"})
        assert r.status_code == 422
        listed = (await http.get("/me/saved-searches", headers=auth(who["seeker"], "business"))).json()
        assert [s["name"] for s in listed] == ["販路の専門家"]
        # the crowd: 200 people whose programme alerts go into their daily digest
        for a in crowd:
            assert (await http.put("/me/preferences", headers=auth(a, "business"),
                                   json={"channels": ["email"], "digest": ["saved_search", "reminder"]})).status_code == 200
            await save(a, {"kind": "programme", "name": "熊本", "criteria": {"prefectures": ["熊本県"]}})

        async def known():
            return await db.accounts.count_documents({}) >= FANOUT + 4
        await eventually(known, timeout=60)

        # --- a new programme: the matching searches' owners are told (twice published: told once)
        deadline = today_jst + timedelta(days=3)
        programme = ProgrammeAdded(programme_id=f"it-{u}", name="IT導入補助金", fiscal_year=fiscal_year(today_jst),
                                   purpose="デジタル化の支援", tags=ProgrammeTags(prefectures=["熊本県"]),
                                   application_deadline=deadline)
        started = time.monotonic()
        await publish(infra, ns, programme, programme, producer="recommend")

        async def inbox(account: str, template: str):
            items = (await http.get("/inbox", headers=auth(account, "business"))).json()
            return [i for i in items if i["template"] == template] or None
        (alert,) = await eventually(lambda: inbox(who["kumamoto"], "saved_search_match"), timeout=60)
        assert "熊本のデジタル化" in alert["subject"] and "IT導入補助金" in alert["body"]
        assert "https://portal.example.jp/api/recommend/programmes" in alert["body"]
        # the alert's own mail (the deadline reminder for the same programme may follow at any moment: not counted)
        mails = await eventually(lambda: _async([m for m in sink.to(f"{who['kumamoto']}@example.jp")
                                                 if "IT導入補助金" in m["Subject"] and "熊本のデジタル化" in m["Subject"]]),
                                 timeout=30)
        assert len(mails) == 1

        # --- the fan-out: every one of the crowd has it in the inbox and in the day's digest, no single e-mail
        async def crowd_told():
            return await db.inbox.count_documents({"recipient_id": {"$in": crowd}, "template": "saved_search_match"}) \
                == FANOUT
        await eventually(crowd_told, timeout=120, interval=0.5)
        fanned = time.monotonic() - started
        assert await db.digests.count_documents({"recipient_id": {"$in": crowd}}) == FANOUT
        assert await db.deliveries.count_documents({"recipient_id": {"$in": crowd}}) == 0
        print(f"\nR-NOT-04 fan-out: one programme to {FANOUT} saved searches: inbox + digest in {fanned:.1f} s "
              f"({FANOUT / fanned:.0f} people/s), 0 single e-mails")
        assert (await inbox(who["fukuoka"], "saved_search_match")) is None

        # --- the deadline of a programme one was told of, 3 days ahead: reminded once
        (reminder,) = await eventually(lambda: inbox(who["kumamoto"], "deadline_reminder"), timeout=30)
        assert deadline.isoformat() in reminder["subject"]
        crowd_reminded = await db.digests.count_documents({"recipient_id": crowd[0], "items.1": {"$exists": True}})
        assert crowd_reminded == 1  # the crowd's reminder joined the same digest

        # --- a newly registered expert matches the expert search; the expert is reminded to renew (R-EX-04)
        await publish(infra, ns, ExpertChanged(expert_id=f"exp-{u}", account_id=who["expert"], change="approved",
                                               status="registered", registered_fiscal_year=fiscal_year(today_jst),
                                               name="山田 花子", fields=["sales_channels"], regions=["熊本県"]),
                      producer="experts")
        (match,) = await eventually(lambda: inbox(who["seeker"], "saved_search_match"), timeout=30)
        assert "山田 花子" in match["body"] and f"/api/experts/experts/exp-{u}" in match["body"]
        (renewal,) = await eventually(lambda: inbox(who["expert"], "renewal_reminder"), timeout=30)
        assert f"{fiscal_year(today_jst)}年度" in renewal["subject"]
        await asyncio.sleep(2)  # more clock passes: still one reminder each
        assert len(await inbox(who["kumamoto"], "deadline_reminder")) == 1
        # R-OPS-01: the inbox pages on with a cursor (header X-Next-Cursor), never stopping at a fixed count
        first = await http.get("/inbox", headers=auth(who["kumamoto"], "business"), params={"limit": 1})
        second = await http.get("/inbox", headers=auth(who["kumamoto"], "business"),
                                params={"limit": 1, "cursor": first.headers["x-next-cursor"]})
        assert first.json()[0]["id"] != second.json()[0]["id"] and "x-next-cursor" not in second.headers
        assert len(await inbox(who["expert"], "renewal_reminder")) == 1

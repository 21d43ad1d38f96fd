"""Regional joint ordering (R-POR-04, 共同受発注) on real Kafka + MongoDB: a member institution of a platform posts a
joint order split into lots for businesses of the platform's support area (learnt from identity's events, as is each
business's prefecture); a business of the area applies, one outside it is refused with the reason; the award closes
the order and every applicant is notified of its own result."""
from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import httpx
from aiokafka import AIOKafkaProducer

from contracts import Envelope
from contracts.events.identity import BusinessRegistered, PlatformMember, PlatformRegistered
from contracts.vocab import RIGHTS, MemberRole
from tests.support import eventually, read_topic, token

PF, ORG, OTHER_ORG = "pf-kyushu", "org-kumamoto-cci", "org-elsewhere"


def auth(sub: str, roles, **claims) -> dict:
    return {"authorization": f"Bearer {token(sub=sub, roles=list(roles), **claims)}"}


def member(org_id: str, platform: str = PF, role: MemberRole = MemberRole.INSTITUTION) -> dict:
    return {"org_id": org_id, "platform_id": platform, "member_role": role.value,
            "rights": sorted(r.value for r in RIGHTS[role])}


STAFF = auth("acc-staff", ["institution"], orgs=[member(ORG)])
OUTSIDER_STAFF = auth("acc-other-staff", ["institution"], orgs=[member(OTHER_ORG, platform="pf-other")])


def biz(b: str) -> dict:
    return auth(f"acc-{b}", ["business"], biz=[{"id": b, "role": "prime"}])


async def publish(infra, ns, *messages) -> None:
    p = AIOKafkaProducer(bootstrap_servers=infra.kafka)
    await p.start()
    try:
        for m in messages:
            env = Envelope.wrap(m, producer="identity", actor="op-1")
            await p.send_and_wait(ns.topic(m.topic), env.model_dump_json().encode(), key=m.key().encode())
    finally:
        await p.stop()


async def of_type(infra, ns, topic: str, kind: str, n: int) -> list[dict]:
    async def check():
        got = [json.loads(r.value) for r in await read_topic(infra.kafka, ns.topic(topic), timeout=5)]
        got = [g for g in got if g["event_type"] == kind]
        return got if len(got) >= n else None
    return await eventually(check, timeout=40)


async def test_R_POR_04_joint_order_area_applications_award_and_a_notice_to_every_applicant(infra, ns, services):
    community = services("community")
    await publish(infra, ns,
                  PlatformRegistered(platform_id=PF, name="九州南部支援プラットフォーム", fiscal_year=2026,
                                     bureau_id="kyushu", representative_id=ORG,
                                     members=[PlatformMember(org_id=ORG, member_role="representative")],
                                     area_prefectures=["熊本県", "鹿児島県"]),
                  *[BusinessRegistered(business_id=b, name=f"{b} 株式会社", prefecture=pref, industry="製造業",
                                       employees=12)
                    for b, pref in (("biz-kuma", "熊本県"), ("biz-kuma2", "熊本県"), ("biz-kago", "鹿児島県"),
                                    ("biz-tokyo", "東京都"))])
    deadline = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()
    order_in = {"platform_id": PF, "title": "地域イベント向け弁当の共同受注", "description": "3ロットに分けて発注します。",
                "deadline": deadline, "lots": [{"title": "弁当 500食", "quantity": "500"},
                                               {"title": "配送", "quantity": "2日"}]}
    async with httpx.AsyncClient(base_url=community.url, timeout=15) as http:
        # identity's events reach the service: the platform's area first
        async def posted():
            r = await http.post("/joint-orders", headers=STAFF, json=order_in)
            return r if r.status_code == 201 else None
        order = (await eventually(posted, timeout=40)).json()
        oid = order["order_id"]
        assert order["area_prefectures"] == ["熊本県", "鹿児島県"] and [lot["lot_id"] for lot in order["lots"]] == [
            "lot-1", "lot-2"]
        # beyond the platform's area, or by an institution that is not a member of the platform: refused in words
        r = await http.post("/joint-orders", headers=STAFF, json={**order_in, "area_prefectures": ["東京都"]})
        assert r.status_code == 422 and "東京都" in r.json()["detail"]
        r = await http.post("/joint-orders", headers=OUTSIDER_STAFF, json=order_in)
        assert r.status_code == 403 and "R-PF-04" in r.json()["detail"]
        assert (await http.post("/joint-orders", headers=biz("biz-kuma"), json=order_in)).status_code == 403

        # listed for the area's prefectures, not for others
        listed = (await http.get("/joint-orders", headers=biz("biz-kuma"), params={"prefecture": "熊本県"})).json()
        assert [o["order_id"] for o in listed["items"]] == [oid]
        assert (await http.get("/joint-orders", headers=biz("biz-kuma"), params={"prefecture": "東京都"})).json()[
            "items"] == []

        # businesses of the area apply (their prefecture is known from identity's events); one outside is refused
        async def apply(b: str, lot: str) -> httpx.Response:
            return await http.post(f"/joint-orders/{oid}/applications", headers=biz(b),
                                   json={"lot_id": lot, "note": "対応可能です"})
        assert (await apply("biz-kuma", "lot-1")).status_code == 201
        assert (await apply("biz-kago", "lot-1")).status_code == 201
        assert (await apply("biz-kuma2", "lot-1")).status_code == 201
        assert (await apply("biz-kago", "lot-2")).status_code == 201
        assert (await apply("biz-kago", "lot-2")).status_code == 409
        r = await apply("biz-tokyo", "lot-1")
        assert r.status_code == 403 and "東京都" in r.json()["detail"] and "熊本県" in r.json()["detail"]
        r = await http.post(f"/joint-orders/{oid}/applications", headers=biz("biz-kuma"),
                            json={"lot_id": "lot-1", "business_id": "biz-kago"})
        assert r.status_code == 403  # a typed-in business the caller does not act for
        got = (await http.get(f"/joint-orders/{oid}", headers=biz("biz-tokyo"))).json()
        assert [lot["applications"] for lot in got["lots"]] == [3, 1]

        # only the posting institution sees the applications and awards; a lot goes to one of its applicants
        assert (await http.get(f"/joint-orders/{oid}/applications", headers=OUTSIDER_STAFF)).status_code == 403
        apps = (await http.get(f"/joint-orders/{oid}/applications", headers=STAFF)).json()["items"]
        assert sorted((a["lot_id"], a["business_id"]) for a in apps) == [
            ("lot-1", "biz-kago"), ("lot-1", "biz-kuma"), ("lot-1", "biz-kuma2"), ("lot-2", "biz-kago")]
        r = await http.post(f"/joint-orders/{oid}/award", headers=STAFF, json={"awards": {"lot-2": "biz-kuma"}})
        assert r.status_code == 422  # biz-kuma did not apply for lot-2
        r = await http.post(f"/joint-orders/{oid}/award", headers=STAFF, json={"awards": {"lot-1": "biz-kuma",
                                                                                            "lot-2": "biz-kago"}})
        assert r.status_code == 200, r.text
        assert {lot["lot_id"]: lot["awarded_to"] for lot in r.json()["lots"]} == {"lot-1": "biz-kuma",
                                                                                  "lot-2": "biz-kago"}
        assert r.json()["status"] == "awarded"
        assert (await http.post(f"/joint-orders/{oid}/award", headers=STAFF, json={"awards": {}})).status_code == 409
        assert (await apply("biz-kuma", "lot-2")).status_code == 409  # closed
        assert (await http.get("/joint-orders", headers=biz("biz-kuma"))).json()["items"] == []

        # each applicant sees its own result
        mine = (await http.get("/me/joint-applications", headers=biz("biz-kago"))).json()["items"]
        assert sorted((a["lot_id"], a["status"]) for a in mine) == [("lot-1", "not_awarded"), ("lot-2", "awarded")]

    # the events, keyed by the order, and a notice to every applicant with its own result
    awarded = (await of_type(infra, ns, "community.events", "community.JointOrderAwarded", 1))[0]
    assert awarded["key"] == oid and awarded["payload"]["applicants"] == ["biz-kago", "biz-kuma", "biz-kuma2"]
    assert len(await of_type(infra, ns, "community.events", "community.JointOrderApplied", 4)) == 4
    notices = [n["payload"] for n in await of_type(infra, ns, "notifications.commands", "notifications.Notify", 3)
               if n["payload"]["template"] == "joint_order_result"]
    assert sorted((n["recipient_id"], n["recipient_kind"], n["params"]["result"], n["params"]["lots"])
                  for n in notices) == [("biz-kago", "business", "awarded", "lot-2"),
                                        ("biz-kuma", "business", "awarded", "lot-1"),
                                        ("biz-kuma2", "business", "not_awarded", "-")]
    assert date.fromisoformat(deadline) > date.today()

"""A small real world for the dispatch saga with the real budget service: one platform of one bureau block, its
representative and one dispatch-capable member institution, a frame with that member's share, an approved expert
and businesses bound to their prime accounts. Used by the observability test and the fault-injection suite."""
from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta

import httpx
from aiokafka import AIOKafkaProducer
from pymongo import AsyncMongoClient

from contracts import Envelope
from contracts.events.experts import ExpertChanged
from contracts.events.identity import BindingChanged, PlatformMember, PlatformRegistered
from contracts.events.budget import frame_id
from contracts.vocab import RIGHTS, MemberRole, fiscal_year
from tests.support import eventually, token

FY = fiscal_year(datetime.now(UTC) + timedelta(hours=9))
DAY = date(FY, 10, 1) if date(FY, 10, 1) >= date.today() else date(FY + 1, 2, 1)
BLOCK, PLATFORM, REP, INSTITUTION, EXPERT = "bureau-kyushu", "plat-chaos", "org-rep", "inst-chaos", "ex-chaos"
FRAME = frame_id(FY, PLATFORM)
ISSUE = "Sales fell by 30% after our main wholesaler closed; we need a new sales channel strategy."
FEE_PER_DISPATCH = 25_000 + 1_000  # 3 h + 2 h at 5,000 yen/h, plus the travel estimate below


def _org(org_id: str, role: MemberRole) -> dict:
    return {"org_id": org_id, "platform_id": PLATFORM, "member_role": role.value,
            "rights": sorted(r.value for r in RIGHTS[role])}


def auth(**claims) -> dict:
    return {"authorization": f"Bearer {token(ttl=3600, **claims)}"}


def bureau() -> dict:
    return auth(sub="bureau-user", roles=["bureau"], bureau_id=BLOCK)


def representative() -> dict:
    return auth(sub="rep-staff", roles=["institution"], orgs=[_org(REP, MemberRole.REPRESENTATIVE)])


def agency() -> dict:
    return auth(sub="agent-1", roles=["agency"])


def staff(*businesses: str) -> dict:
    """Institution staff holding the businesses' delegations (R-ID-08)."""
    dlg = [{"id": f"dlg-{b}", "business_id": b, "org_id": INSTITUTION, "scopes": ["dispatch:request", "dispatch:read"],
            "exp": int(time.time()) + 86400} for b in businesses]
    return auth(sub="staff-chaos", roles=["institution"], orgs=[_org(INSTITUTION, MemberRole.DISPATCH_MEMBER)], dlg=dlg)


def request_body(business: str) -> dict:
    return {"business_id": business, "expert_id": EXPERT, "institution_id": INSTITUTION, "issue": ISSUE,
            "beyond_self_help": True, "needs_specialist": True,
            "planned_visits": [{"day": DAY.isoformat(), "hours": 3},
                               {"day": (DAY + timedelta(days=7)).isoformat(), "hours": 2}],
            "travel_estimate": 1000}


class SagaWorld:
    """What identity and experts would have said, published on the test's topics; the frame set up over HTTP."""

    def __init__(self, infra, ns):
        self.infra, self.ns = infra, ns
        self.mongo = AsyncMongoClient(infra.mongo)
        self.producer = AIOKafkaProducer(bootstrap_servers=infra.kafka, enable_idempotence=True, acks="all")

    async def __aenter__(self) -> "SagaWorld":
        await self.producer.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.producer.stop()
        await self.mongo.close()

    def db(self, service: str):
        return self.mongo[self.ns.db(service)]

    async def publish(self, msg, *, producer: str) -> Envelope:
        env = Envelope.wrap(msg, producer=producer)
        await self.producer.send_and_wait(self.ns.topic(msg.topic), env.model_dump_json().encode(),
                                          key=msg.key().encode())
        return env

    async def platform(self, budget_url: str, *, dispatches_fit: int) -> None:
        """The platform (identity's event), then a frame whose member share fits `dispatches_fit` dispatches."""
        await self.publish(PlatformRegistered(
            platform_id=PLATFORM, name="Chaos PF", fiscal_year=FY, bureau_id=BLOCK, representative_id=REP,
            members=[PlatformMember(org_id=REP, member_role="representative"),
                     PlatformMember(org_id=INSTITUTION, member_role="dispatch_member")]), producer="identity")
        await eventually(lambda: self.db("budget").members.count_documents({"platform_id": PLATFORM}), timeout=60)
        amount = FEE_PER_DISPATCH * dispatches_fit
        async with httpx.AsyncClient(base_url=budget_url, timeout=20) as http:
            r = await http.post("/frames", json={"fiscal_year": FY, "platform_id": PLATFORM, "fee": amount,
                                                 "travel": amount}, headers=bureau())
            assert r.status_code == 201, r.text
            r = await http.put(f"/frames/{FRAME}/shares/{INSTITUTION}", json={"amount": amount},
                               headers=representative())
            assert r.status_code == 200, r.text

    async def expert(self) -> None:
        env = await self.publish(ExpertChanged(expert_id=EXPERT, account_id=f"acct-{EXPERT}", change="approved",
                                               status="registered", registered_fiscal_year=FY, name="Expert Chaos"),
                                 producer="experts")
        await eventually(lambda: self.db("dispatch").experts.find_one({"_id": EXPERT, "_seen": env.event_id}),
                         timeout=60)

    async def bind(self, *businesses: str) -> None:
        """Identity's word that each business's prime account is acct-<business> (R-ID-07)."""
        envs = [await self.publish(BindingChanged(business_id=b, account_id=f"acct-{b}", role="prime"),
                                   producer="identity") for b in businesses]
        for b, env in zip(businesses, envs):
            await eventually(lambda b=b, env=env: self.db("dispatch").business_people.find_one(
                {"_id": b, "_seen": env.event_id}), timeout=60)

"""Helpers shared by the budget service's integration tests and benchmark: publish as other services,
mint representative tokens, collect budget answers."""
from __future__ import annotations

import json

from aiokafka import AIOKafkaProducer
from pymongo import AsyncMongoClient

from contracts import Envelope
from contracts.events.identity import PlatformMember, PlatformRegistered
from contracts.vocab import RIGHTS, MemberRole
from tests.support import eventually, token

BUREAU, PLATFORM, REP, MEMBER, OUTSIDER = "bureau-kanto", "pf-1", "org-rep", "org-mem", "org-inst"
OTHER_BUREAU = "bureau-kyushu"


def org_claim(org_id: str, role: MemberRole, platform_id: str = PLATFORM) -> dict:
    return {"org_id": org_id, "platform_id": platform_id, "member_role": role.value,
            "rights": sorted(r.value for r in RIGHTS[role])}


def auth(sub: str, roles: list[str], orgs: list[dict] = (), **claims) -> dict:
    return {"authorization": f"Bearer {token(sub=sub, roles=roles, orgs=list(orgs), **claims)}"}


def bureau(block: str | None = BUREAU, sub: str = "bureau-user") -> dict:
    """A bureau account of `block` (R-PF-05: the token's `bureau_id`); None: a bureau token without a block."""
    return auth(sub, ["bureau"], **({"bureau_id": block} if block else {}))


def representative(platform_id: str = PLATFORM) -> dict:
    return auth("rep-staff", ["institution"], [org_claim(REP, MemberRole.REPRESENTATIVE, platform_id)])


def dispatch_member() -> dict:
    return auth("mem-staff", ["institution"], [org_claim(MEMBER, MemberRole.DISPATCH_MEMBER)])


async def publish(bootstrap: str, topic: str, messages, *, producer: str = "dispatch", copies: int = 1) -> None:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", linger_ms=5)
    await p.start()
    try:
        futures = []
        for msg in messages:
            env = Envelope.wrap(msg, producer=producer)
            for _ in range(copies):
                futures.append(await p.send(topic, env.model_dump_json().encode(), key=msg.key().encode()))
        for f in futures:
            await f
    finally:
        await p.stop()


async def register_platform(infra, ns, platform_id: str = PLATFORM, block: str = BUREAU) -> None:
    """Identity announces the platform (of `block`) and its members' roles; waits until the budget service knows them."""
    msg = PlatformRegistered(platform_id=platform_id, name="Kanto PF", fiscal_year=2026, bureau_id=block,
                             representative_id=REP, members=[
                                 PlatformMember(org_id=REP, member_role="representative"),
                                 PlatformMember(org_id=MEMBER, member_role="dispatch_member"),
                                 PlatformMember(org_id=OUTSIDER, member_role="institution")])
    await publish(infra.kafka, ns.topic("identity.events"), [msg], producer="identity")
    client = AsyncMongoClient(infra.mongo)
    try:
        members = client[ns.db("budget")].members
        await eventually(lambda: members.count_documents({"platform_id": platform_id}), timeout=30)
    finally:
        await client.close()


def answers(records) -> dict[str, set[str]]:
    """dispatch ids per answer type, from raw budget.events records."""
    out: dict[str, set[str]] = {}
    for r in records:
        env = json.loads(r.value)
        if "dispatch_id" in env["payload"]:
            out.setdefault(env["event_type"].split(".")[-1], set()).add(env["payload"]["dispatch_id"])
    return out

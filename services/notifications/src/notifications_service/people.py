"""Who the people of a party are (R-NOT-03), kept from identity's and experts' events, so that a notice for a
business, an expert, an institution or a bureau reaches every account acting for it without asking identity.

`parties`: one document per party (`business:<id>`, `expert:<id>`, `organisation:<id>`, `bureau:<id>`) with the
flat `account_ids` list; `accounts`: what identity told about each account (kind, e-mail, block, revoked).
Every update is a set operation ($addToSet / $pullAll / $set), so a redelivered event changes nothing; each topic
is keyed so that the events that undo each other (a binding and its end, a staff move) arrive in order.
"""
from __future__ import annotations

from contracts import Envelope
from contracts.events.experts import ExpertChanged
from contracts.events.identity import AccountRegistered, AccountRevoked, BindingChanged, StaffLinked
from notifications_service import domain


async def ensure_indexes(db) -> None:
    await db.parties.create_index("account_ids")


async def join(db, key: str, account_id: str) -> None:
    await db.parties.update_one({"_id": key}, {"$addToSet": {"account_ids": account_id}}, upsert=True)


async def leave(db, key: str, account_id: str) -> None:
    await db.parties.update_one({"_id": key}, {"$pullAll": {"account_ids": [account_id]}})


async def members(db, keys: list[str]) -> tuple[dict[str, list[str]], set[str]]:
    """The accounts of each of these parties and which of them are revoked: two indexed lookups, however many."""
    if not keys:
        return {}, set()
    found = {d["_id"]: d.get("account_ids") or [] async for d in db.parties.find({"_id": {"$in": list(keys)}})}
    ids = sorted({a for accounts in found.values() for a in accounts})
    struck = {d["_id"] async for d in db.accounts.find({"_id": {"$in": ids}, "revoked": True}, {"_id": 1})} if ids else set()
    return found, struck


async def people(db, parties: list[tuple[str, str]]) -> dict[str, str]:
    """account -> role, for every person of these parties (revoked accounts left out): two indexed lookups."""
    found, struck = await members(db, [k for k, _ in parties])
    return domain.people_of(parties, found, struck)


async def _nothing(key: str, account_id: str, since) -> None:
    return None


def identity_handlers(svc, joined=_nothing):
    """`joined(party key, account, since)`: called after someone joins a party at `since` (what was parked for the
    party and what its people were told since then go out, see consumers)."""
    db = svc.db

    async def on_account(env: Envelope, e: AccountRegistered) -> None:
        await db.accounts.update_one({"_id": e.account_id}, {"$set": {
            "kind": e.kind, "email": e.email, "bureau_id": e.bureau_id, "real_name": e.real_name}}, upsert=True)
        if e.kind == "bureau" and e.bureau_id:
            await join(db, domain.party("bureau", e.bureau_id), e.account_id)
            await joined(domain.party("bureau", e.bureau_id), e.account_id, env.occurred_at)

    async def on_revoked(env: Envelope, e: AccountRevoked) -> None:
        await db.accounts.update_one({"_id": e.account_id}, {"$set": {"revoked": True}}, upsert=True)

    async def on_binding(env: Envelope, e: BindingChanged) -> None:
        key = domain.party("business", e.business_id)
        await (join if e.role else leave)(db, key, e.account_id)
        if e.role:
            await joined(key, e.account_id, env.occurred_at)

    async def on_staff(env: Envelope, e: StaffLinked) -> None:
        if e.previous_org_id and e.previous_org_id != e.org_id:
            await leave(db, domain.party("organisation", e.previous_org_id), e.account_id)
        await join(db, domain.party("organisation", e.org_id), e.account_id)
        await joined(domain.party("organisation", e.org_id), e.account_id, env.occurred_at)

    return {AccountRegistered: on_account, AccountRevoked: on_revoked, BindingChanged: on_binding,
            StaffLinked: on_staff}


def experts_handlers(svc, joined=_nothing):
    async def on_expert(env: Envelope, e: ExpertChanged) -> None:
        await join(svc.db, domain.party("expert", e.expert_id), e.account_id)
        await joined(domain.party("expert", e.expert_id), e.account_id, env.occurred_at)

    return {ExpertChanged: on_expert}

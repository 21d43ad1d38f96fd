"""Who the people of a party are (R-NOT-03), kept from identity's and experts' events, so that a notice for a
business, an expert, an institution or a bureau reaches every account acting for it without asking identity.

`parties`: one document per party (`business:<id>`, `expert:<id>`, `organisation:<id>`, `bureau:<id>`) with the
flat `account_ids` list, `at` (per account, the time of the latest join or leave applied) and `told` (once it was told
of a dispatch); `accounts`: what identity told about each account (kind, e-mail, block, revoked).
Every update is a set operation ($addToSet / $pullAll / $set), so a redelivered event changes nothing; each topic
is keyed so that the events that undo each other (a binding and its end, a staff move) arrive in order, and a join or
leave older than the one applied for that account is stale: a redelivered binding that has ended since (Kafka
delivers again from the last committed offset after a rebalance) does not bring its account back, not even for the
moment before its end comes again.
"""
from __future__ import annotations

from datetime import datetime

from pymongo import UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from contracts import Envelope
from contracts.events.experts import ExpertChanged
from contracts.events.identity import AccountRegistered, AccountRevoked, BindingChanged, StaffLinked
from notifications_service import domain


async def ensure_indexes(db) -> None:
    await db.parties.create_index("account_ids")


async def join(db, key: str, account_id: str, at: datetime) -> bool:
    """`account_id` acts for party `key` since `at`; False (nothing changed) when a later join or leave was applied."""
    return await _apply(db, key, account_id, at, {"$addToSet": {"account_ids": account_id}})


async def leave(db, key: str, account_id: str, at: datetime) -> bool:
    """`account_id` no longer acts for party `key` from `at`; False when a later join or leave was applied."""
    return await _apply(db, key, account_id, at, {"$pullAll": {"account_ids": [account_id]}})


async def _apply(db, key: str, account_id: str, at: datetime, change: dict) -> bool:
    field = "at." + account_id.replace(".", "\uff0e").replace("$", "\uff04")  # a field name may hold neither
    guarded, update = {"_id": key, field: {"$not": {"$gt": at}}}, {**change, "$set": {field: at}}
    try:
        await db.parties.update_one(guarded, update, upsert=True)
    except DuplicateKeyError:  # the party exists: with a later time for the account (stale), or made meanwhile
        return (await db.parties.update_one(guarded, update)).matched_count > 0
    return True


async def mark_told(db, keys: list[str]) -> None:
    """Marks these parties as told of something (`told`; a party nobody is known for yet gets its document now): a
    person joining a party never told of anything (a business just registered or imported) has nothing to catch up
    on, and `deliver_missed` then reads no inbox."""
    try:
        await db.parties.bulk_write([UpdateOne({"_id": k}, {"$set": {"told": True}}, upsert=True) for k in keys],
                                    ordered=False)
    except BulkWriteError as e:  # a join created the party meanwhile (its insert won): mark the party it made
        if any(w.get("code") != 11000 for w in e.details.get("writeErrors", [])):
            raise
        await db.parties.update_many({"_id": {"$in": keys}}, {"$set": {"told": True}})


async def party_docs(db, keys: list[str]) -> dict[str, dict]:
    """The parties' documents (their accounts and `told`), by `_id`: one indexed lookup."""
    return {d["_id"]: d async for d in db.parties.find({"_id": {"$in": list(keys)}}, {"account_ids": 1, "told": 1})}


async def members(db, keys: list[str], docs: dict[str, dict] | None = None) -> tuple[dict[str, list[str]], set[str]]:
    """The accounts of each of these parties (from `docs` when read already) and which of them are revoked: two
    indexed lookups, however many."""
    if not keys:
        return {}, set()
    docs = docs if docs is not None else await party_docs(db, keys)
    found = {k: d.get("account_ids") or [] for k, d in docs.items()}
    ids = sorted({a for accounts in found.values() for a in accounts})
    struck = {d["_id"] async for d in db.accounts.find({"_id": {"$in": ids}, "revoked": True}, {"_id": 1})} if ids else set()
    return found, struck


async def people(db, parties: list[tuple[str, str]]) -> dict[str, str]:
    """account -> role, for every person of these parties (revoked accounts left out): two indexed lookups."""
    found, struck = await members(db, [k for k, _ in parties])
    return domain.people_of(parties, found, struck)


async def _nothing(key: str, account_id: str, since) -> None:
    return None


async def enter(db, key: str, account_id: str, at, joined) -> None:
    """`account_id` joins party `key` at `at`, and `joined` brings it what it missed, unless the join was stale."""
    if await join(db, key, account_id, at):
        await joined(key, account_id, at)


def identity_handlers(svc, joined=_nothing):
    """`joined(party key, account, since)`: called after someone joins a party at `since` (what was parked for the
    party and what its people were told since then go out, see consumers)."""
    db = svc.db

    async def on_account(env: Envelope, e: AccountRegistered) -> None:
        await db.accounts.update_one({"_id": e.account_id}, {"$set": {
            "kind": e.kind, "email": e.email, "bureau_id": e.bureau_id, "real_name": e.real_name}}, upsert=True)
        if e.kind == "bureau" and e.bureau_id:
            await enter(db, domain.party("bureau", e.bureau_id), e.account_id, env.occurred_at, joined)

    async def on_revoked(env: Envelope, e: AccountRevoked) -> None:
        await db.accounts.update_one({"_id": e.account_id}, {"$set": {"revoked": True}}, upsert=True)

    async def on_binding(env: Envelope, e: BindingChanged) -> None:
        key = domain.party("business", e.business_id)
        if e.role:
            await enter(db, key, e.account_id, env.occurred_at, joined)
        else:
            await leave(db, key, e.account_id, env.occurred_at)

    async def on_staff(env: Envelope, e: StaffLinked) -> None:
        if e.previous_org_id and e.previous_org_id != e.org_id:
            await leave(db, domain.party("organisation", e.previous_org_id), e.account_id, env.occurred_at)
        await enter(db, domain.party("organisation", e.org_id), e.account_id, env.occurred_at, joined)

    return {AccountRegistered: on_account, AccountRevoked: on_revoked, BindingChanged: on_binding,
            StaffLinked: on_staff}


def experts_handlers(svc, joined=_nothing):
    async def on_expert(env: Envelope, e: ExpertChanged) -> None:
        await enter(svc.db, domain.party("expert", e.expert_id), e.account_id, env.occurred_at, joined)

    return {ExpertChanged: on_expert}

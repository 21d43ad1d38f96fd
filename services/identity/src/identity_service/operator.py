"""Operator tools (R-OPS-02): find any account or business, and the audit trail of anything across services.

The trail is a read model kept from every topic's events (the envelope says who acted, when, through which OAuth
client, and what happened) plus identity's own audit entries for changes and reads that publish no event (a
prefill read by a partner's client, a letter posted). Each entry is indexed under every id it names (`refs`: the
message key, the actor, the client and every `*_id` field of the payload), so the trail of an account, a business,
an expert or a dispatch is one indexed, cursor-paged read (no other service is asked at request time).
Experts are found with the experts service's own search; dispatches with dispatch's agency worklist filters.
"""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel

from contracts import TOPICS, Envelope
from servicekit import paging
from servicekit.auth import Principal, require

router = APIRouter(tags=["operator"])
# budget.commands stay the budget service's alone; its answers on budget.events name the same dispatches and frames
TRAIL_TOPICS = ("identity.events", "experts.events", "dispatch.events", "budget.events", "ratings.events",
                "notifications.commands", "recommend.events")
MAX_REFS = 50


def refs_of(key: str | None, actor: str | None, client_id: str | None, payload: dict) -> list[str]:
    """Every id an entry concerns: the aggregate key, who acted, through which client, and the payload's ids."""
    out = {r for r in (key, actor, client_id) if r}
    for name, value in payload.items():
        if name.endswith("_id") and isinstance(value, str) and value:
            out.add(value)
        elif name.endswith("_ids") and isinstance(value, list):
            out.update(v for v in value if isinstance(v, str) and v)
    return sorted(out)[:MAX_REFS]


async def ensure_indexes(db) -> None:
    await db.trail.create_index([("refs", 1), ("key", -1)])
    await db.accounts.create_index("real_name")
    await db.businesses.create_index("name")
    await db.businesses.create_index("corporate_number")


async def add_entry(db, *, entry_id: str, at: datetime, actor: str | None, client_id: str | None, action: str,
                    service: str, subject: str | None, payload: dict) -> None:
    await db.trail.update_one({"_id": entry_id}, {"$setOnInsert": {
        "key": paging.sort_key(at, entry_id), "at": at, "actor": actor, "client_id": client_id, "action": action,
        "service": service, "subject": subject, "refs": refs_of(subject, actor, client_id, payload)}}, upsert=True)


def trail_handlers(svc, topic: str) -> dict:
    async def on_any(env: Envelope, _message) -> None:  # idempotent by event id
        await add_entry(svc.db, entry_id=env.event_id, at=env.occurred_at, actor=env.actor, client_id=env.client_id,
                        action=env.event_type, service=env.producer, subject=env.key, payload=env.payload)

    return {model: on_any for model in TOPICS[topic].models}


class Entry(BaseModel):
    at: datetime
    actor: str | None
    client_id: str | None
    action: str
    service: str
    subject: str | None


class TrailPage(BaseModel):
    items: list[Entry]
    next_cursor: str | None


Limit = Query(50, ge=1, le=paging.MAX_PAGE)
Cursor = Query(None, max_length=300)


@router.get("/operator/audit", response_model=TrailPage,
            summary="The audit trail of an account, business, expert, dispatch, client… across services, newest first: "
                    "who, what, when, through which client (R-OPS-02)")
async def audit_trail(request: Request, ref: str = Query(min_length=1, max_length=200),
                      limit: int = Limit, cursor: str | None = Cursor,
                      p: Principal = Depends(require("operator"))) -> TrailPage:
    docs, nxt = await paging.page(request.app.state.service.db.trail, {"refs": ref}, limit=limit, cursor=cursor)
    return TrailPage(items=[Entry(**{k: d.get(k) for k in Entry.model_fields}) for d in docs], next_cursor=nxt)


def _prefix(field: str, q: str) -> dict:
    return {field: {"$gte": q, "$lt": q + "\uffff"}}


class AccountHit(BaseModel):
    account_id: str
    email: str
    real_name: str
    kind: str
    status: str
    org_id: str | None = None
    bureau_id: str | None = None


class AccountsPage(BaseModel):
    items: list[AccountHit]
    next_cursor: str | None


async def _search(col, q: str, fields: list[str], extra: dict, limit: int, cursor: str | None) -> tuple[list, str | None]:
    """The id itself, or a prefix of one of `fields`; ordered by id, paged by the last id (one range read a page)."""
    hits: dict[str, dict] = {}
    after = paging.decode(cursor).split("|", 1)[1] if cursor else None
    filters = [_prefix(f, q) for f in fields]
    if after is None or q > after:
        filters.insert(0, {"_id": q})
    for filt in filters:
        if after and "_id" not in filt:
            filt = {**filt, "_id": {"$gt": after}}
        async for d in col.find({**filt, **extra}, {"_outbox": 0, "password_hash": 0, "history": 0}).sort(
                "_id", 1).limit(limit + 1):
            hits.setdefault(d["_id"], d)
    ordered = [hits[k] for k in sorted(hits)]
    more = len(ordered) > limit
    ordered = ordered[:limit]
    return ordered, paging.encode(f"id|{ordered[-1]['_id']}") if more else None


@router.get("/operator/accounts", response_model=AccountsPage,
            summary="Find accounts by id, e-mail or real name (prefix) (R-OPS-02)")
async def find_accounts(request: Request, q: str = Query(min_length=1, max_length=200),
                        kind: Literal["business", "founder", "expert", "institution", "bureau", "agency",
                                      "operator"] | None = None,
                        limit: int = Query(20, ge=1, le=100), cursor: str | None = Cursor,
                        p: Principal = Depends(require("operator"))) -> AccountsPage:
    docs, nxt = await _search(request.app.state.service.db.accounts, q.strip().lower() if "@" in q else q.strip(),
                              ["email", "real_name"], {"kind": kind} if kind else {}, limit, cursor)
    return AccountsPage(items=[AccountHit(account_id=d["_id"], **{k: d.get(k) for k in AccountHit.model_fields
                                                                    if k != "account_id" and k in d}) for d in docs],
                        next_cursor=nxt)


class BusinessHit(BaseModel):
    business_id: str
    name: str
    corporate_number: str | None = None
    prefecture: str | None = None
    status: str = "active"
    prime_id: str | None = None
    member_ids: list[str] = []


class BusinessesPage(BaseModel):
    items: list[BusinessHit]
    next_cursor: str | None


@router.get("/operator/businesses", response_model=BusinessesPage,
            summary="Find businesses by id, corporate number or name (prefix) (R-OPS-02)")
async def find_businesses(request: Request, q: str = Query(min_length=1, max_length=200),
                          limit: int = Query(20, ge=1, le=100), cursor: str | None = Cursor,
                          p: Principal = Depends(require("operator"))) -> BusinessesPage:
    docs, nxt = await _search(request.app.state.service.db.businesses, q.strip(), ["corporate_number", "name"], {},
                              limit, cursor)
    return BusinessesPage(items=[BusinessHit(business_id=d["_id"], **{k: d.get(k) for k in BusinessHit.model_fields
                                                                       if k != "business_id" and d.get(k) is not None})
                                 for d in docs], next_cursor=nxt)

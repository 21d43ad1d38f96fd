"""Worklists (R-OPS-01): each role lists its own dispatches with filters and cursor paging, from a read model kept by
dispatch's own status events (`worklist`, one small document per dispatch), so a list never reads the aggregates and
never stops at a fixed count.

- a business: its dispatches (the business from the token, R-ID-07);
- an institution: the requests of its own organisation (R-PF-05), by status;
- an expert: requests to co-sign (route B), visits to make, reports to file;
- the agency: reports to confirm, payments on their way, budget answers that did not come.
"""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel
from pymongo import UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from contracts import Envelope
from contracts.events.dispatch import DispatchStatusChanged
from servicekit import paging
from servicekit.auth import Principal, require
from servicekit.problems import Problem

router = APIRouter(tags=["worklists"])
Status = Literal["requested", "accepted", "refused", "reserved", "approved", "scheduled", "visited", "reported",
                 "confirmed", "paid", "cancelled", "budget_unanswered"]
EXPERT_QUEUES = {"cosign": {"route": "B", "status": {"$in": ["requested"]}},
                 "visits": {"status": {"$in": ["approved", "scheduled", "visited"]}},
                 "reports": {"status": {"$in": ["visited"]}}}
AGENCY_QUEUES = {"reports": {"status": {"$in": ["reported"]}}, "payments": {"status": {"$in": ["confirmed"]}},
                 "unanswered": {"status": {"$in": ["budget_unanswered"]}}}


async def ensure_indexes(db) -> None:
    for field in ("business_id", "institution_id", "expert_id", "status"):
        await db.worklist.create_index([(field, 1), ("key", -1)])
    await db.worklist.create_index("key")


def handlers(svc):
    async def on_status(env: Envelope, e: DispatchStatusChanged) -> None:
        """The latest status of each dispatch; an older event redelivered after a newer one changes nothing."""
        at = env.occurred_at
        try:
            await svc.db.worklist.update_one({"_id": e.dispatch_id, "at": {"$lte": at}}, {
                "$set": {"status": e.status, "route": e.route, "fiscal_year": e.fiscal_year,
                         "business_id": e.business_id, "expert_id": e.expert_id, "institution_id": e.institution_id,
                         "platform_id": e.platform_id, "reason_code": e.reason_code, "fee": e.fee, "at": at},
                "$setOnInsert": {"key": paging.sort_key(at, e.dispatch_id), "requested_at": at}}, upsert=True)
        except DuplicateKeyError:
            pass  # the read model already holds a newer state of this dispatch

    return {DispatchStatusChanged: on_status}


async def on_statuses(db, items: list[tuple[Envelope, DispatchStatusChanged]]) -> None:
    """A batch of status events: what `on_status` leaves, in one bulk write of one update per dispatch. The newest
    event of each dispatch in the batch sets its fields (an older one would be overwritten by it anyway) and its
    earliest one the `requested_at` and sort key a first event inserts; the guard on `at` is the same."""
    newest: dict[str, tuple[Envelope, DispatchStatusChanged]] = {}
    earliest: dict[str, datetime] = {}
    for env, e in items:
        if e.dispatch_id not in newest or env.occurred_at >= newest[e.dispatch_id][0].occurred_at:
            newest[e.dispatch_id] = (env, e)
        earliest[e.dispatch_id] = min(earliest.get(e.dispatch_id, env.occurred_at), env.occurred_at)
    stored = {d["_id"]: d["at"] async for d in db.worklist.find({"_id": {"$in": list(newest)}}, {"at": 1})}
    ops = []
    for env, e in newest.values():
        at = env.occurred_at
        if e.dispatch_id in stored and stored[e.dispatch_id] > at:
            continue  # the read model already holds a newer state of this dispatch
        ops.append(UpdateOne({"_id": e.dispatch_id, "at": {"$lte": at}}, {
            "$set": {"status": e.status, "route": e.route, "fiscal_year": e.fiscal_year, "business_id": e.business_id,
                     "expert_id": e.expert_id, "institution_id": e.institution_id, "platform_id": e.platform_id,
                     "reason_code": e.reason_code, "fee": e.fee, "at": at},
            "$setOnInsert": {"key": paging.sort_key(earliest[e.dispatch_id], e.dispatch_id),
                             "requested_at": earliest[e.dispatch_id]}}, upsert=e.dispatch_id not in stored))
    if not ops:
        return
    try:
        await db.worklist.bulk_write(ops, ordered=False)
    except BulkWriteError as err:  # inserted meanwhile with a newer state: a duplicate key, nothing to do
        if any(w["code"] != 11000 for w in err.details["writeErrors"]):
            raise


class Item(BaseModel):
    dispatch_id: str
    status: str
    route: str
    fiscal_year: int
    business_id: str
    expert_id: str
    institution_id: str | None = None
    platform_id: str | None = None
    reason_code: str | None = None
    fee: int | None = None
    requested_at: datetime
    updated_at: datetime


class Page(BaseModel):
    items: list[Item]
    next_cursor: str | None


async def _page(request: Request, filt: dict, status: list[str] | None, fiscal_year: int | None, limit: int,
                cursor: str | None) -> Page:
    if status:  # narrows a queue's statuses, never widens them
        allowed = filt["status"]["$in"] if "status" in filt else status
        filt = {**filt, "status": {"$in": [s for s in status if s in allowed]}}
    if fiscal_year:
        filt = {**filt, "fiscal_year": fiscal_year}
    docs, nxt = await paging.page(request.app.state.service.db.worklist, filt, limit=limit, cursor=cursor)
    return Page(items=[Item(dispatch_id=d["_id"], updated_at=d["at"], **{k: d.get(k) for k in Item.model_fields
                                                                        if k in d and k not in ("updated_at",)})
                       for d in docs], next_cursor=nxt)


Limit = Query(50, ge=1, le=paging.MAX_PAGE)
Cursor = Query(None, max_length=200, description="next_cursor of the previous page")
Statuses = Query(None, description="only these statuses (repeat the parameter)")
FiscalYear = Query(None, ge=2000, le=2100)


@router.get("/worklists/business", response_model=Page, summary="A business's own dispatches, newest first (R-OPS-01)")
async def business_worklist(request: Request, business_id: str | None = Query(None, max_length=100),
                            status: list[Status] | None = Statuses, fiscal_year: int | None = FiscalYear,
                            limit: int = Limit, cursor: str | None = Cursor,
                            p: Principal = Depends(require("business", "founder"))) -> Page:
    return await _page(request, {"business_id": p.own_business(business_id)}, status, fiscal_year, limit, cursor)


@router.get("/worklists/institution", response_model=Page,
            summary="An institution's own requests by status, newest first (R-OPS-01, R-PF-05)")
async def institution_worklist(request: Request, org_id: str | None = Query(None, max_length=100),
                               status: list[Status] | None = Statuses, fiscal_year: int | None = FiscalYear,
                               business_id: str | None = Query(None, max_length=100),
                               limit: int = Limit, cursor: str | None = Cursor,
                               p: Principal = Depends(require("institution"))) -> Page:
    mine = sorted({o.get("org_id") for o in p.orgs if o.get("org_id")})
    if org_id is None and len(mine) == 1:
        org_id = mine[0]
    if org_id not in mine:
        raise Problem(403, "Forbidden", "Name an organisation you act for (org_id)." if mine else
                      "Your account is linked to no organisation.")
    filt = {"institution_id": org_id, **({"business_id": business_id} if business_id else {})}
    return await _page(request, filt, status, fiscal_year, limit, cursor)


@router.get("/worklists/expert", response_model=Page,
            summary="An expert's requests to co-sign, visits to make and reports to file (R-OPS-01)")
async def expert_worklist(request: Request, queue: Literal["cosign", "visits", "reports", "all"] = "all",
                          status: list[Status] | None = Statuses, fiscal_year: int | None = FiscalYear,
                          limit: int = Limit, cursor: str | None = Cursor,
                          p: Principal = Depends(require("expert"))) -> Page:
    db = request.app.state.service.db
    experts = [d["_id"] async for d in db.experts.find({"account_id": p.subject}, {"_id": 1}).limit(10)]
    if not experts:
        return Page(items=[], next_cursor=None)
    filt = {"expert_id": experts[0] if len(experts) == 1 else {"$in": experts}, **EXPERT_QUEUES.get(queue, {})}
    return await _page(request, filt, status, fiscal_year, limit, cursor)


@router.get("/worklists/agency", response_model=Page,
            summary="The agency's queues: reports to confirm, payments, unanswered budget commands (R-OPS-01)")
async def agency_worklist(request: Request, queue: Literal["reports", "payments", "unanswered", "all"] = "reports",
                          status: list[Status] | None = Statuses, fiscal_year: int | None = FiscalYear,
                          business_id: str | None = Query(None, max_length=100),
                          expert_id: str | None = Query(None, max_length=100),
                          institution_id: str | None = Query(None, max_length=100),
                          limit: int = Limit, cursor: str | None = Cursor,
                          p: Principal = Depends(require("agency", "operator"))) -> Page:
    """Also the operators' dispatch search (R-OPS-02): queue=all with a business, expert or institution."""
    filt = {**AGENCY_QUEUES.get(queue, {}), **{k: v for k, v in (("business_id", business_id), ("expert_id", expert_id),
                                                                  ("institution_id", institution_id)) if v}}
    return await _page(request, filt, status, fiscal_year, limit, cursor)

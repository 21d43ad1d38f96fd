"""Saved searches that alert on new matches, and reminders before application deadlines and expert renewals
(R-NOT-04, R-EX-04).

A saved search (programmes or experts) is stored with its `anchors`, the terms an item must carry to concern it; a
new programme (recommend.ProgrammeAdded) or a newly registered expert (experts.ExpertChanged) reads only the
searches anchored on its own terms, streams them, and alerts each owner once per (search, item). A person who was
told of a programme follows it; followers hear of its application deadline a few days before. Registered experts
are reminded to confirm their renewal before the fiscal year ends. Every alert goes through the person's channels
and preferences, so a big fan-out lands in digests and within each channel's rate.
"""
from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import date, datetime
from typing import Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from contracts import Envelope
from contracts.events.experts import ExpertChanged
from contracts.events.recommend import ProgrammeAdded
from notifications_service import domain
from notifications_service.store import JST, audit, notify, now
from servicekit.auth import Principal, require
from servicekit.problems import Problem

router = APIRouter(tags=["saved searches"])
log = logging.getLogger("notifications.alerts")
ANYONE = ("business", "founder", "expert", "institution", "bureau", "agency", "operator")
MAX_SEARCHES = 50


def params_of(settings) -> domain.AlertParams:
    return domain.AlertParams(deadline_days=settings.reminder_deadline_days, renewal_days=settings.reminder_renewal_days)


async def ensure_indexes(db) -> None:
    await db.saved_searches.create_index([("kind", 1), ("anchors", 1)])
    await db.saved_searches.create_index("account_id")
    await db.follows.create_index("programme_id")
    await db.programmes.create_index("deadline")
    await db.experts.create_index([("status", 1), ("registered_fiscal_year", 1)])


def _portal(svc) -> str:
    from notifications_service.consumers import portal_url

    return portal_url(svc)


async def follow(db, programme_id: str, account_id: str) -> None:
    await db.follows.update_one({"_id": f"{programme_id}:{account_id}"}, {"$set": {
        "programme_id": programme_id, "account_id": account_id}}, upsert=True)


async def _alert(svc, kind: str, item: dict, terms: list[str], title: str, link: str) -> int:
    """Alerts the owner of every saved search the item matches, once per (search, item)."""
    told = 0
    cur = svc.db.saved_searches.find({"kind": kind, "anchors": {"$in": terms}})
    async for s in cur:
        matches = domain.programme_matches if kind == "programme" else domain.expert_matches
        if not matches(s["criteria"], item):
            continue
        params = {"search_name": s["name"], "title": title, "link": link, "what_kind":
                  "支援施策" if kind == "programme" else "専門家", f"{kind}_id": item["_id"]}
        await notify(svc, item_id=f"ss:{s['_id']}:{item['_id']}", recipient_id=s["account_id"],
                     template="saved_search_match", params=params)
        if kind == "programme":
            await follow(svc.db, item["_id"], s["account_id"])
        told += 1
    return told


def recommend_handlers(svc):
    async def on_programme(env: Envelope, e: ProgrammeAdded) -> None:
        doc = {"_id": e.programme_id, "name": e.name, "fiscal_year": e.fiscal_year, "purpose": e.purpose,
               "target": e.target, "tags": e.tags.model_dump(),
               "deadline": e.application_deadline.isoformat() if e.application_deadline else None}
        await svc.db.programmes.update_one({"_id": e.programme_id}, {"$set": doc}, upsert=True)
        await _alert(svc, "programme", doc, domain.programme_terms(doc["tags"]), e.name,
                     f"{_portal(svc)}/api/recommend/programmes")

    return {ProgrammeAdded: on_programme}


def experts_handlers(svc):
    async def on_expert(env: Envelope, e: ExpertChanged) -> None:
        doc = {"_id": e.expert_id, "account_id": e.account_id, "status": e.status, "name": e.name,
               "registered_fiscal_year": e.registered_fiscal_year, "fields": e.fields, "regions": e.regions,
               "qualifications": e.qualifications}
        await svc.db.experts.update_one({"_id": e.expert_id}, {"$set": doc}, upsert=True)
        if e.status == "registered":  # a search alerts once per expert, whatever later edits they make
            await _alert(svc, "expert", doc, domain.expert_terms(doc), e.name,
                         f"{_portal(svc)}/api/experts/experts/{e.expert_id}")

    return {ExpertChanged: on_expert}


# --- reminders ----------------------------------------------------------------------------------------------------
async def remind(svc, today: date, p: domain.AlertParams) -> int:
    """One pass of the reminder clock; idempotent (each reminder's inbox id is fixed), so every replica may run it."""
    db, sent = svc.db, 0
    until = date.fromordinal(today.toordinal() + p.deadline_days).isoformat()
    async for prog in db.programmes.find({"deadline": {"$gte": today.isoformat(), "$lte": until}}):
        if not domain.deadline_reminder_due(today, date.fromisoformat(prog["deadline"]), p):
            continue
        async for f in db.follows.find({"programme_id": prog["_id"]}):
            sent += await notify(svc, item_id=f"deadline:{prog['_id']}:{f['account_id']}", recipient_id=f["account_id"],
                                 template="deadline_reminder", params={
                                     "title": prog["name"], "deadline": prog["deadline"], "programme_id": prog["_id"],
                                     "link": f"{_portal(svc)}/api/recommend/programmes"})
    fy = today.year if today.month >= 4 else today.year - 1
    if domain.renewal_reminder_due(today, fy, p):
        async for x in db.experts.find({"status": "registered", "registered_fiscal_year": fy}):
            sent += await notify(svc, item_id=f"renewal:{x['_id']}:{fy}", recipient_id=x["account_id"],
                                 template="renewal_reminder", params={
                                     "fiscal_year": str(fy), "year_end": f"{fy + 1}-03-31", "expert_id": x["_id"],
                                     "link": f"{_portal(svc)}/api/experts/experts/me"})
    return sent


async def run_clock(svc) -> None:
    p, every = params_of(svc.settings), svc.settings.reminder_poll_seconds
    while True:
        try:
            await remind(svc, now().astimezone(JST).date(), p)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("reminder pass failed; retrying")
        await asyncio.sleep(every)


# --- HTTP ---------------------------------------------------------------------------------------------------------
class Criteria(BaseModel):
    keywords: list[str] = Field(default_factory=list, max_length=10)
    prefectures: list[str] = Field(default_factory=list, max_length=47, description="programmes")
    industries: list[str] = Field(default_factory=list, max_length=30, description="programmes")
    fields: list[str] = Field(default_factory=list, max_length=30, description="experts")
    regions: list[str] = Field(default_factory=list, max_length=47, description="experts")
    qualifications: list[str] = Field(default_factory=list, max_length=30, description="experts")


class SavedSearchIn(BaseModel):
    kind: Literal["programme", "expert"]
    name: str = Field(min_length=1, max_length=100)
    criteria: Criteria = Field(default_factory=Criteria)


class SavedSearchOut(SavedSearchIn):
    search_id: str
    created_at: datetime


def _out(d: dict) -> SavedSearchOut:
    return SavedSearchOut(search_id=d["_id"], kind=d["kind"], name=d["name"], criteria=Criteria(**d["criteria"]),
                          created_at=d["created_at"])


@router.post("/me/saved-searches", status_code=201, response_model=SavedSearchOut,
             summary="Save a search for programmes or experts; new matches are sent to you (R-NOT-04)")
async def save_search(body: SavedSearchIn, request: Request, p: Principal = Depends(require(*ANYONE))) -> SavedSearchOut:
    db = request.app.state.service.db
    if await db.saved_searches.count_documents({"account_id": p.subject}) >= MAX_SEARCHES:
        raise Problem(409, "Too many saved searches", f"Keep at most {MAX_SEARCHES}; delete one first.")
    criteria = body.criteria.model_dump()
    doc = {"_id": f"ss-{uuid.uuid4().hex[:16]}", "account_id": p.subject, "kind": body.kind, "name": body.name,
           "criteria": criteria, "anchors": domain.search_anchors(body.kind, criteria), "created_at": now()}
    await db.saved_searches.insert_one(doc)
    await audit(db, "notifications.SearchSaved", p.subject, {"search_id": doc["_id"], "kind": body.kind}, actor=p.subject)
    return _out(doc)


@router.get("/me/saved-searches", response_model=list[SavedSearchOut], summary="Your saved searches")
async def my_searches(request: Request, p: Principal = Depends(require(*ANYONE))) -> list[SavedSearchOut]:
    cur = request.app.state.service.db.saved_searches.find({"account_id": p.subject}).sort("created_at", 1)
    return [_out(d) async for d in cur.limit(MAX_SEARCHES)]


@router.delete("/me/saved-searches/{search_id}", status_code=204, summary="Delete a saved search")
async def delete_search(search_id: str, request: Request, p: Principal = Depends(require(*ANYONE))) -> Response:
    db = request.app.state.service.db
    res = await db.saved_searches.delete_one({"_id": search_id, "account_id": p.subject})
    if res.deleted_count != 1:
        raise Problem(404, "No such saved search", f"You have no saved search {search_id}.")
    await audit(db, "notifications.SearchDeleted", p.subject, {"search_id": search_id}, actor=p.subject)
    return Response(status_code=204)

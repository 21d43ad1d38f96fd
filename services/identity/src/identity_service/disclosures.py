"""Data-disclosure requests (R-ANC-05): an institution asks to see a business's profile, sees it only once the
business approves, and no longer after the business revokes."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from identity_service import domain
from identity_service.audit import record
from identity_service.http import OWNERS, BusinessOut, business_out, owned_business
from servicekit import paging
from servicekit.auth import Principal, require
from servicekit.problems import Problem

router = APIRouter(tags=["disclosure-requests"])


class DisclosureIn(BaseModel):
    business_id: str = Field(min_length=1, max_length=100)
    purpose: str = Field(min_length=1, max_length=1000, description="why the institution asks (shown to the business)")


class DisclosureOut(BaseModel):
    request_id: str
    business_id: str
    org_id: str
    org_name: str
    requested_by: str
    purpose: str
    status: Literal["pending", "approved", "rejected", "revoked"]
    created_at: datetime
    decided_at: datetime | None = None


def _out(doc: dict) -> DisclosureOut:
    return DisclosureOut(request_id=doc["_id"], **{k: doc.get(k) for k in DisclosureOut.model_fields if k != "request_id"})


async def _staff_org(request: Request, who: Principal) -> dict:
    db = request.app.state.service.db
    account = await db.accounts.find_one({"_id": who.subject}, {"org_id": 1})
    org = await db.orgs.find_one({"_id": account["org_id"]}) if account and account.get("org_id") else None
    if org is None:
        raise Problem(403, "No organisation", "Your account is not linked to a support institution.")
    return org


@router.post("/disclosure-requests", status_code=201, response_model=DisclosureOut,
             summary="Ask a business to let your institution see its profile (institution staff)")
async def ask(body: DisclosureIn, request: Request, who: Principal = Depends(require("institution"))) -> DisclosureOut:
    db = request.app.state.service.db
    org = await _staff_org(request, who)
    if await db.businesses.find_one({"_id": body.business_id}, {"_id": 1}) is None:
        raise Problem(404, "Not found", f"No business {body.business_id}.")
    rid, at = f"dr-{uuid.uuid4().hex[:16]}", datetime.now(UTC)
    doc = {"_id": rid, "business_id": body.business_id, "org_id": org["_id"], "key": paging.sort_key(at, rid),
           "org_name": org["name"], "requested_by": who.subject, "purpose": body.purpose, "status": "pending",
           "created_at": at, "decided_at": None}
    await db.disclosures.insert_one(doc)
    await record(db, actor=who.subject, action="identity.DisclosureRequested", key=body.business_id,
                 payload={"request_id": doc["_id"], "org_id": org["_id"]})
    return _out(doc)


Limit = Query(100, ge=1, le=paging.MAX_PAGE)
Cursor = Query(None, max_length=300, description="the X-Next-Cursor header of the previous page")


async def _page(request: Request, response: Response, filt: dict, limit: int, cursor: str | None) -> list[DisclosureOut]:
    docs, nxt = await paging.page(request.app.state.service.db.disclosures, filt, limit=limit, cursor=cursor)
    if nxt:
        response.headers["X-Next-Cursor"] = nxt
    return [_out(d) for d in docs]


@router.get("/disclosure-requests", response_model=list[DisclosureOut],
            summary="Your institution's disclosure requests, newest first; the header X-Next-Cursor pages on "
                    "(institution staff)")
async def ours(request: Request, response: Response, limit: int = Limit, cursor: str | None = Cursor,
               who: Principal = Depends(require("institution"))) -> list[DisclosureOut]:
    org = await _staff_org(request, who)
    return await _page(request, response, {"org_id": org["_id"]}, limit, cursor)


@router.get("/businesses/{business_id}/disclosure-requests", response_model=list[DisclosureOut],
            summary="Institutions asking to see your data, and your decisions, newest first; the header "
                    "X-Next-Cursor pages on (R-ANC-05)")
async def theirs(business_id: str, request: Request, response: Response, limit: int = Limit,
                 cursor: str | None = Cursor, who: Principal = Depends(require(*OWNERS))) -> list[DisclosureOut]:
    await owned_business(request, business_id, who, scope=None)
    return await _page(request, response, {"business_id": business_id}, limit, cursor)


async def _decide(request: Request, request_id: str, action: str, who: Principal) -> DisclosureOut:
    svc = request.app.state.service
    doc = await svc.db.disclosures.find_one({"_id": request_id})
    if doc is None:
        raise Problem(404, "Not found", f"No disclosure request {request_id}.")
    await owned_business(request, doc["business_id"], who, scope=None)  # only the business decides
    after = domain.disclosure_next(doc["status"], action)
    if after is None:
        raise Problem(409, "Not possible now", f"A request that is {doc['status']} cannot be {action}d.")
    now = datetime.now(UTC)
    res = await svc.db.disclosures.update_one({"_id": request_id, "status": doc["status"]},
                                              {"$set": {"status": after, "decided_at": now}})
    if res.matched_count != 1:
        raise Problem(409, "Changed meanwhile", "The request was decided meanwhile; reload it.")
    await record(svc.db, actor=who.subject, action=f"identity.Disclosure{after.capitalize()}", key=doc["business_id"],
                 payload={"request_id": request_id, "org_id": doc["org_id"]})
    return _out({**doc, "status": after, "decided_at": now})


@router.post("/disclosure-requests/{request_id}/approve", response_model=DisclosureOut, summary="Approve (the business)")
async def approve(request_id: str, request: Request, who: Principal = Depends(require(*OWNERS))) -> DisclosureOut:
    return await _decide(request, request_id, "approve", who)


@router.post("/disclosure-requests/{request_id}/reject", response_model=DisclosureOut, summary="Reject (the business)")
async def reject(request_id: str, request: Request, who: Principal = Depends(require(*OWNERS))) -> DisclosureOut:
    return await _decide(request, request_id, "reject", who)


@router.post("/disclosure-requests/{request_id}/revoke", response_model=DisclosureOut,
             summary="Revoke an approval: the institution sees nothing from now on (the business)")
async def revoke(request_id: str, request: Request, who: Principal = Depends(require(*OWNERS))) -> DisclosureOut:
    return await _decide(request, request_id, "revoke", who)


@router.get("/disclosure-requests/{request_id}/profile", response_model=BusinessOut,
            summary="The business's profile, while the business approves your request (institution staff)")
async def disclosed_profile(request_id: str, request: Request, who: Principal = Depends(require("institution"))) -> BusinessOut:
    db = request.app.state.service.db
    org = await _staff_org(request, who)
    doc = await db.disclosures.find_one({"_id": request_id, "org_id": org["_id"]})
    if doc is None:
        raise Problem(404, "Not found", f"No disclosure request {request_id} of your institution.")
    if not domain.disclosure_visible(doc["status"]):
        raise Problem(403, "Not approved", f"The business has not approved this request (it is {doc['status']}).")
    business = await db.businesses.find_one({"_id": doc["business_id"]}, {"history": 0, "_outbox": 0})
    await record(db, actor=who.subject, action="identity.DisclosedProfileRead", key=doc["business_id"],
                 payload={"request_id": request_id, "org_id": org["_id"]})
    return business_out(business)

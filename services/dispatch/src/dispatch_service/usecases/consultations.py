"""Use case: web consultations between a business and an expert, free of charge; one held is a condition of a direct
request (R-DSP-02b, R-DSP-11)."""
from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from dispatch_service.access import ANY_PARTY, is_agency, must, store_of
from dispatch_service.store import new_id, now
from servicekit.auth import Principal, require
from servicekit.refusals import Rejected

log = logging.getLogger("dispatch.consultations")

router = APIRouter(tags=["consultations"])


class ConsultationIn(BaseModel):
    business_id: str | None = Field(default=None, min_length=1, max_length=100,
                                    description="omit to use the business your account is bound to (R-ID-07)")
    expert_id: str
    subject: str = Field(min_length=3, max_length=300)
    message: str = Field(min_length=1, max_length=4000)


class MessageIn(BaseModel):
    text: str = Field(min_length=1, max_length=4000)


async def load_consultation(request: Request, cid: str, p: Principal) -> dict:
    doc = await store_of(request).db.consultations.find_one({"_id": cid})
    if doc is None or not (p.acts_for(doc["business_id"]) or p.subject == doc["expert_account_id"] or is_agency(p)):
        raise Rejected("not_found", "Not found", f"No consultation {cid} visible to you.")
    return doc


def consultation_out(doc: dict) -> dict:
    return {"consultation_id": doc["_id"], **{k: v for k, v in doc.items() if k != "_id"}}


@router.post("/consultations", status_code=201, summary="A business opens a web consultation with an expert (free of charge)")
async def open_consultation(body: ConsultationIn, request: Request, p: Principal = Depends(require("business", "founder"))) -> dict:
    store = store_of(request)
    expert_doc, _ = await store.expert(body.expert_id)
    if expert_doc is None:
        raise Rejected("invalid", "Unknown expert", f"Expert {body.expert_id} is not known to the dispatch service.")
    business_id = p.own_business(body.business_id)
    doc = {"_id": new_id("cons"), "business_id": business_id, "business_account_id": p.subject,
           "expert_id": body.expert_id, "expert_account_id": expert_doc["account_id"], "subject": body.subject,
           "messages": [{"from": p.subject, "at": now(), "text": body.message}], "held": False, "created_at": now()}
    counters = request.app.state.ebpm_counters   # R-REC-07: marked before the write, so a crash leaves it to the sweep
    await counters.mark(business_id, refresh=True)
    await store.db.consultations.insert_one(doc)
    try:
        await counters.on_consultation(doc)
    except Exception:  # the consultation is kept; the sweep copies and counts it
        log.warning("ebpm counters not updated yet; the sweep will", exc_info=True)
    await store.audit(p.subject, "dispatch.ConsultationOpened", doc["_id"], {"business_id": business_id,
                                                                            "expert_id": body.expert_id})
    return consultation_out(doc)


@router.get("/consultations/{consultation_id}", summary="A web consultation thread")
async def get_consultation(consultation_id: str, request: Request, p: Principal = Depends(require(*ANY_PARTY))) -> dict:
    return consultation_out(await load_consultation(request, consultation_id, p))


@router.post("/consultations/{consultation_id}/messages", summary="Post a message to a consultation")
async def post_message(consultation_id: str, body: MessageIn, request: Request,
                       p: Principal = Depends(require("business", "founder", "expert"))) -> dict:
    store = store_of(request)
    await load_consultation(request, consultation_id, p)
    async with store.lock(consultation_id):  # see store.AggregateLocks
        await store.db.consultations.update_one({"_id": consultation_id},
                                                {"$push": {"messages": {"from": p.subject, "at": now(), "text": body.text}}})
    await store.audit(p.subject, "dispatch.ConsultationMessage", consultation_id, {})
    return consultation_out(await store.db.consultations.find_one({"_id": consultation_id}))


@router.post("/consultations/{consultation_id}/held",
             summary="The expert marks the consultation held: the issue and the expert needed are clear (R-DSP-02b)")
async def mark_held(consultation_id: str, request: Request, p: Principal = Depends(require("expert"))) -> dict:
    store = store_of(request)
    doc = await load_consultation(request, consultation_id, p)
    must(p.subject == doc["expert_account_id"], "Only the consulted expert marks the consultation held.")
    async with store.lock(consultation_id):
        await store.db.consultations.update_one({"_id": consultation_id}, {"$set": {"held": True, "held_at": now()}})
    await store.audit(p.subject, "dispatch.ConsultationHeld", consultation_id, {})
    return consultation_out(await store.db.consultations.find_one({"_id": consultation_id}))

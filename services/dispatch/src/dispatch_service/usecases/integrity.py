"""Use case: the agency's queue of integrity flags (R-DSP-15): each with its evidence, reviewed by a person who
dismisses it or escalates it; escalating changes nothing by itself — fraud is recorded on the dispatch (R-DSP-13)."""
from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from dispatch_service.access import store_of
from dispatch_service.store import now
from servicekit.auth import Principal, require
from servicekit.refusals import Rejected

router = APIRouter(tags=["integrity"])


class ReviewIn(BaseModel):
    decision: Literal["dismissed", "escalated"] = Field(description="dismissed: no concern; escalated: the agency "
                                                        "investigates (and may record fraud on the dispatch)")
    note: str = Field(min_length=3, max_length=2000)


def out(doc: dict) -> dict:
    return {"flag_id": doc["_id"], **{k: v for k, v in doc.items() if k not in ("_id", "_seen")}}


@router.get("/integrity/flags", summary="The agency's queue of integrity flags with their evidence (R-DSP-15)")
async def list_flags(request: Request, status: Literal["open", "dismissed", "escalated"] = "open",
                     expert_id: str | None = Query(default=None, max_length=100),
                     dispatch_id: str | None = Query(default=None, max_length=100),
                     code: str | None = Query(default=None, max_length=50, description="far_check_in, repeated_pair, "
                                              "network_rating, copied_report, response_overdue"),
                     after: str | None = Query(default=None, max_length=200, description="cursor: the last flag_id seen"),
                     limit: int = Query(default=50, ge=1, le=500),
                     _: Principal = Depends(require("agency", "operator"))) -> dict:
    q: dict = {"status": status}
    for field, value in (("expert_id", expert_id), ("dispatch_id", dispatch_id), ("code", code)):
        if value:
            q[field] = value
    if after:
        q["_id"] = {"$gt": after}
    items = [out(d) async for d in store_of(request).db.integrity_flags.find(q).sort("_id", 1).limit(limit)]
    return {"items": items, "next": items[-1]["flag_id"] if len(items) == limit else None}


@router.post("/integrity/flags/{flag_id}/review", summary="The agency dismisses or escalates a flag (R-DSP-15)")
async def review_flag(flag_id: str, body: ReviewIn, request: Request, p: Principal = Depends(require("agency"))) -> dict:
    store = store_of(request)
    res = await store.db.integrity_flags.update_one({"_id": flag_id, "status": "open"}, {"$set": {
        "status": body.decision, "review": {"by": p.subject, "at": now(), "note": body.note}}})
    if res.matched_count == 0:
        if await store.db.integrity_flags.find_one({"_id": flag_id}, {"_id": 1}) is None:
            raise Rejected("not_found", "Not found", f"No integrity flag {flag_id}.")
        raise Rejected("conflict", "Already reviewed", "This flag has been reviewed already.")
    await store.audit(p.subject, "dispatch.IntegrityFlagReviewed", flag_id, {"decision": body.decision})
    return out(await store.db.integrity_flags.find_one({"_id": flag_id}))

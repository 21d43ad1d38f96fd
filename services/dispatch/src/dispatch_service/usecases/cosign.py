"""Use case: the expert co-signs a direct (route B) request, which is then screened in the same write (R-DSP-02c)."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from dispatch_service import screening
from dispatch_service.access import clock, load, public, store_of
from dispatch_service.domain.dispatch import Dispatch
from servicekit.auth import Principal, require

router = APIRouter(tags=["dispatch"])


@router.post("/requests/{dispatch_id}/cosign", summary="The expert co-signs a direct request (R-DSP-02c); it is then screened")
async def cosign(dispatch_id: str, request: Request, p: Principal = Depends(require("expert"))) -> dict:
    store = store_of(request)
    await load(request, dispatch_id, p, "expert")

    async def decide(d: dict):
        at = clock()
        signed = Dispatch(d, at).cosign(actor=p.subject)
        screened = await screening.screen_request(store, {**d, **signed.set}, actor=p.subject, now=at)
        return signed.then(screened)

    return public(await store.change(dispatch_id, decide, actor=p.subject))

"""The saga's clock (R-DSP-08, R-DSP-14, R-DSP-03): re-sends budget commands left unanswered and makes a silent budget
service visible as `budget_unanswered` (rules in domain.saga), and gives back free-dispatch slots an interruption
stranded (domain.slots)."""
from __future__ import annotations

import asyncio
import logging

from dispatch_service.domain.dispatch import Dispatch
from dispatch_service.domain.saga import SagaParams
from dispatch_service.store import Store, now

log = logging.getLogger("dispatch.saga")


async def sweep(store: Store, params: SagaParams) -> int:
    """One pass over the dispatches waiting for budget; returns how many it changed."""
    changed = 0
    async for doc in store.dispatches.find({"status": {"$in": ["accepted", "confirmed"]}}, {"_id": 1}):
        after = await store.change(doc["_id"], lambda d: Dispatch(d, now()).on_clock(params), actor="dispatch-saga",
                                   reload=False)
        changed += bool(after and after.get("_changed"))
    return changed


async def run(store: Store, params: SagaParams) -> None:
    """The background loop (servicekit runs it while the service runs)."""
    interval = max(0.2, min(params.answer_seconds / 4, 15.0))
    failures = 0
    while True:
        try:
            if n := await sweep(store, params):
                log.info("budget commands re-sent or escalated", extra={"fields": {"dispatches": n}})
            if n := await store.reconcile_slots(params.slot_grace_seconds):
                log.info("free-dispatch slots given back after an interruption", extra={"fields": {"slots": n}})
            failures = 0
        except Exception:  # the database may be away for a moment: back off, log once per failure streak step
            failures += 1
            if failures in (1, 10, 100) or failures % 1000 == 0:
                log.exception("saga sweep failed", extra={"fields": {"failures_in_a_row": failures}})
        await asyncio.sleep(interval * min(2 ** failures, 60) if failures else interval)

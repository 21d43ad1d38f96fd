"""The saga's clock (R-DSP-08, R-DSP-14, R-DSP-03): re-sends budget commands left unanswered and makes a silent budget
service visible as `budget_unanswered` (rules in domain.saga), and gives back free-dispatch slots an interruption
stranded (domain.slots). Each pass reads by `_id` what this process watches (dispatch_service.watch); a full scan runs
at start and then seldom, for what other replicas or a restart left behind."""
from __future__ import annotations

import asyncio
import logging
import time

from dispatch_service.domain.dispatch import Dispatch
from dispatch_service.domain.saga import WAITING, SagaParams, overdue, waiting_for
from dispatch_service.store import Store, now
from dispatch_service.watch import FULL_SCAN_SECONDS, Every

log = logging.getLogger("dispatch.saga")

READ = 500  # dispatches read per `_id: {$in}`
CLOCK_FIELDS = {"status": 1, "reserve": 1, "commit": 1, "reserved": 1, "payment": 1}  # what `overdue` reads


async def sweep(store: Store, params: SagaParams, *, full: bool = False) -> int:
    """One pass over the watched dispatches whose budget answer is overdue (with `full`, first every dispatch waiting
    for one in the database); returns how many it changed."""
    if full:
        async for doc in store.dispatches.find({"status": {"$in": list(WAITING)}}, {"_id": 1}):
            if doc["_id"] not in store.waiting:
                store.waiting.add(doc["_id"], since=0.0)  # looked at in this pass
    changed, mono, at = 0, time.monotonic(), now()
    due = store.waiting.due(mono - params.answer_seconds)
    for lo in range(0, len(due), READ):
        ids = due[lo:lo + READ]
        docs = {d["_id"]: d async for d in store.dispatches.find({"_id": {"$in": ids}}, CLOCK_FIELDS)}
        for dispatch_id in ids:
            doc = docs.get(dispatch_id)
            phase = waiting_for(doc) if doc and doc["status"] in WAITING else None
            if phase is None:  # answered (here or on another replica), or gone
                store.waiting.drop(dispatch_id)
            elif overdue(doc, at, params):
                after = await store.change(dispatch_id, lambda d: Dispatch(d, now()).on_clock(params),
                                           actor="dispatch-saga", reload=False)
                changed += bool(after and after.get("_changed"))
                if after and after.get("status") in WAITING:  # re-sent: due again one answer period from now
                    store.waiting.add(dispatch_id)
            else:  # sent again since it was first watched: due one answer period after that send
                sent = doc[phase].get("sent_at") or at
                store.waiting.add(dispatch_id, since=mono - (at - sent).total_seconds())
    return changed


async def run(store: Store, params: SagaParams) -> None:
    """The background loop (servicekit runs it while the service runs)."""
    interval = max(0.2, min(params.answer_seconds / 4, 15.0))
    full_scan = Every(FULL_SCAN_SECONDS)
    failures = 0
    while True:
        try:
            full, began = full_scan.due(), time.monotonic()
            if n := await sweep(store, params, full=full):
                log.info("budget commands re-sent or escalated", extra={"fields": {"dispatches": n}})
            if n := await store.reconcile_slots(params.slot_grace_seconds, full=full):
                log.info("free-dispatch slots given back after an interruption", extra={"fields": {"slots": n}})
            if full:
                full_scan.done(began)
            failures = 0
        except Exception:  # the database may be away for a moment: back off, log once per failure streak step
            failures += 1
            if failures in (1, 10, 100) or failures % 1000 == 0:
                log.exception("saga sweep failed", extra={"fields": {"failures_in_a_row": failures}})
        await asyncio.sleep(interval * min(2 ** failures, 60) if failures else interval)

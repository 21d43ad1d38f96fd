"""The saga's states as a metric: `smeportal.dispatch.requests` — open dispatches per status (R-DSP-14's statuses but
the final `paid`, `refused` and `cancelled`), counted in one grouped pass every `DISPATCH_STATES_REFRESH_SECONDS`
(60), so a pile-up in `accepted` or `budget_unanswered` shows on a dashboard. The final statuses grow with every year's
history, and the pass matches only the open ones, through the `status` index on MongoDB (the local server still reads
every dispatch: hence a minute apart, and never more than 1/SCAN_SHARE of the time)."""
from __future__ import annotations

import asyncio
import logging

from opentelemetry.metrics import Observation

from contracts.events.dispatch import DispatchStatus
from dispatch_service.store import Store
from servicekit.outbox import paced

log = logging.getLogger("dispatch.metrics")
OPEN = tuple(s.value for s in DispatchStatus
             if s not in (DispatchStatus.PAID, DispatchStatus.REFUSED, DispatchStatus.CANCELLED))


class SagaStates:
    def __init__(self, store: Store):
        self.store = store
        self.counts: dict[str, int] = {}
        store.svc.meter.create_observable_gauge(
            "smeportal.dispatch.requests", [lambda _: [Observation(n, {"status": s}) for s, n in self.counts.items()]],
            unit="{dispatch}", description="Open dispatches per status (the saga's states)")

    async def refresh(self) -> None:
        """One pass grouped by status (a count per status was one pass each: 17 scans on the local server)."""
        counts = {s: 0 for s in OPEN}
        async for g in await self.store.dispatches.aggregate([{"$match": {"status": {"$in": list(OPEN)}}},
                                                              {"$group": {"_id": "$status", "n": {"$sum": 1}}}]):
            if g["_id"] in counts:
                counts[g["_id"]] = g["n"]
        self.counts = counts

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            began = loop.time()
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the database is away: keep the last counts
                log.debug("saga states not counted", extra={"fields": {"error": repr(e)}})
            # the pass reads every dispatch: never more of the time than the relay's leftover scan, however many
            await asyncio.sleep(paced(self.store.svc.settings.dispatch_states_refresh_seconds,
                                      loop.time() - began))

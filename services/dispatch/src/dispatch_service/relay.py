"""The outbox relay of the dispatch service: servicekit's relay, with two differences. Published entries
are removed under the same per-dispatch lock as every other write (see `store.AggregateLocks`), and
different dispatches are relayed concurrently (order matters only per dispatch, i.e. per Kafka key),
so one slow document does not hold up every other dispatch's events."""
from __future__ import annotations

import asyncio
import logging
import os

from opentelemetry import context, propagate

from servicekit.outbox import OutboxRelay

log = logging.getLogger("servicekit.outbox")


class LockingRelay(OutboxRelay):
    def __init__(self, *args, lock, parallel: int = 16, **kw):
        super().__init__(*args, **kw)
        self.lock = lock
        self.parallel = asyncio.Semaphore(parallel)

    async def _drain_doc(self, col, doc: dict) -> int:
        async with self.parallel:
            entries = doc["_outbox"]
            for e in entries:  # in order: one aggregate's events keep their order on its key
                if self.crash_before_publish:
                    log.error("fault injection: exiting between the database write and the publish")
                    os._exit(137)
                token = context.attach(propagate.extract(e.get("trace") or {}))
                try:
                    await self._publish(e["topic"], e["key"], e["value"], {})
                finally:
                    context.detach(token)
            await self._record_audit(entries)
            async with self.lock(str(doc["_id"])):
                await col.update_one({"_id": doc["_id"]}, {"$pullAll": {"_outbox": entries}})
            return len(entries)

    async def drain_once(self) -> int:
        sent = 0
        for col in self.collections:
            docs = [d async for d in col.find({"_outbox.0": {"$exists": True}}, {"_outbox": 1}).limit(200)]
            sent += sum(await asyncio.gather(*(self._drain_doc(col, d) for d in docs)))
        return sent

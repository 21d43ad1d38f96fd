"""The outbox relay of the dispatch service: servicekit's relay, removing published entries under the
same per-dispatch lock as every other write (see `store.AggregateLocks` for why)."""
from __future__ import annotations

import logging
import os

from opentelemetry import context, propagate

from servicekit.outbox import OutboxRelay


class LockingRelay(OutboxRelay):
    def __init__(self, *args, lock, **kw):
        super().__init__(*args, **kw)
        self.lock = lock

    async def drain_once(self) -> int:
        sent = 0
        for col in self.collections:
            async for doc in col.find({"_outbox.0": {"$exists": True}}, {"_outbox": 1}).limit(200):
                entries = doc["_outbox"]
                for e in entries:
                    if self.crash_before_publish:
                        logging.getLogger("servicekit.outbox").error("fault injection: exiting before the publish")
                        os._exit(137)
                    token = context.attach(propagate.extract(e.get("trace") or {}))
                    try:
                        await self._publish(e["topic"], e["key"], e["value"], {})
                    finally:
                        context.detach(token)
                    sent += 1
                await self._record_audit(entries)
                async with self.lock(str(doc["_id"])):
                    await col.update_one({"_id": doc["_id"]}, {"$pullAll": {"_outbox": entries}})
        return sent

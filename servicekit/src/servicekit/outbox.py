"""The outbox relay: publishes events stored in documents' `_outbox` arrays, then removes them.

At least once: a crash after publishing but before the removal publishes again after restart, and
consumers drop the duplicate by event id. Several replicas may run the relay at once for the same reason.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os

from opentelemetry import context, propagate
from pymongo.asynchronous.collection import AsyncCollection

log = logging.getLogger("servicekit.outbox")


class OutboxRelay:
    def __init__(self, publish, collections: list[AsyncCollection], audit: AsyncCollection,
                 poll_seconds: float = 0.5, crash_before_publish: bool = False):
        self._publish = publish  # async (topic, key, value, headers) -> None, confirmed by Kafka
        self.collections = collections
        self.audit = audit  # every published event is also the audit entry of the change that caused it
        self.poll_seconds = poll_seconds
        self.crash_before_publish = crash_before_publish
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    def kick(self) -> None:
        """Called after a write so the event goes out now instead of at the next poll."""
        self._wake.set()

    async def drain_once(self) -> int:
        sent = 0
        for col in self.collections:
            async for doc in col.find({"_outbox.0": {"$exists": True}}, {"_outbox": 1}).limit(200):
                entries = doc["_outbox"]
                for e in entries:
                    if self.crash_before_publish:
                        log.error("fault injection: exiting between the database write and the publish")
                        os._exit(137)
                    token = context.attach(propagate.extract(e.get("trace") or {}))
                    try:
                        await self._publish(e["topic"], e["key"], e["value"], {})
                    finally:
                        context.detach(token)
                    sent += 1
                await self._record_audit(entries)
                await col.update_one({"_id": doc["_id"]}, {"$pullAll": {"_outbox": entries}})
        return sent

    async def _record_audit(self, entries: list[dict]) -> None:
        for e in entries:
            env = json.loads(e["value"])
            await self.audit.update_one({"_id": e["event_id"]}, {"$setOnInsert": {
                "at": env["occurred_at"], "actor": env.get("actor"), "action": env["event_type"],
                "key": env["key"], "topic": e["topic"], "payload": env["payload"]}}, upsert=True)

    async def run(self) -> None:
        while True:
            try:
                await self.drain_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox relay pass failed; retrying")
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
            except TimeoutError:
                pass
            self._wake.clear()

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="outbox-relay")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass

"""Writes to identity's aggregates, serialised with this process's outbox relay.

Why: the local MongoDB-wire server (FerretDB 1, SQLite) applies an update as read-modify-write without
isolation, so the relay's `$pullAll` of published events can overwrite a concurrent update of the same
document (measured: most such pairs lose one write). Holding one lock around the relay's pass and our
writes keeps every change; on MongoDB proper the lock is merely redundant.
"""
from __future__ import annotations

import asyncio


def install(svc) -> None:
    svc.write_lock = asyncio.Lock()
    drain = svc.relay.drain_once

    async def drain_locked() -> int:
        async with svc.write_lock:
            return await drain()

    svc.relay.drain_once = drain_locked


async def write(svc, col, filter: dict, update: dict, *, events: list[dict] = (), upsert: bool = False):
    async with svc.write_lock:
        return await svc.write(col, filter, update, events=events, upsert=upsert)


async def update(svc, col, filter: dict, update: dict, upsert: bool = False):
    """A change that publishes no event (callers audit it themselves)."""
    async with svc.write_lock:
        return await col.update_one(filter, update, upsert=upsert)

"""MongoDB access through PyMongo's async API (`AsyncMongoClient`, the successor of motor).

Only single-document atomicity is relied on (see the README's list of MongoDB features in use), so
two patterns carry the platform's guarantees:

- Outbox inside the aggregate: a state change and the events it causes are written by ONE
  `update_one`, which `$push`es the envelopes onto the document's `_outbox` array. The relay
  (`servicekit.outbox`) publishes them and removes them afterwards, so nothing is lost in between.
- Idempotent consumer: `apply_once` adds the event id to the document's `_seen` array in the same
  update that applies the change, guarded by `_seen != event_id`; a redelivery matches nothing.
"""
from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

from opentelemetry import propagate
from pymongo import AsyncMongoClient, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from contracts import Envelope
from servicekit.auth import current_client

SEEN_KEEP = 500  # event ids remembered per document; Kafka redelivers recent messages, not ancient ones


def now() -> datetime:
    """The one clock of stored times: an aware UTC `datetime` (stored as a BSON date; API models render it ISO)."""
    return datetime.now(UTC)


def connect(uri: str, timeout_ms: int = 2000) -> AsyncMongoClient:
    """`timeout_ms`: how long an operation waits for an unreachable server before it fails (as a transient
    failure: consumers retry, HTTP answers 503), short enough that no request hangs for long."""
    return AsyncMongoClient(uri, tz_aware=True, serverSelectionTimeoutMS=timeout_ms, appname="smeportal")


def outbox_entry(envelope: Envelope, topic: str) -> dict:
    """The stored form of an event waiting to be published, with the trace context of its cause."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return {"event_id": envelope.event_id, "topic": topic, "key": envelope.key,
            "value": envelope.model_dump_json(), "trace": carrier}


def with_outbox(update: dict, entries: list[dict]) -> dict:
    """Adds outbox entries to an update document (so the change and its events are one write)."""
    if not entries:
        return update
    update = {k: dict(v) for k, v in update.items()}
    update.setdefault("$push", {})["_outbox"] = {"$each": entries}
    return update


async def apply_once(col: AsyncCollection, doc_id: Any, event_id: str, update: dict, *, upsert: bool = True) -> bool:
    """Applies `update` to document `doc_id` unless event `event_id` was already applied to it.

    Returns False for a duplicate. Works on a replica set or a sharded cluster (sharded on `_id`).
    """
    update = {k: dict(v) for k, v in update.items()}
    update.setdefault("$push", {})["_seen"] = {"$each": [event_id], "$slice": -SEEN_KEEP}
    try:
        res = await col.update_one({"_id": doc_id, "_seen": {"$ne": event_id}}, update, upsert=upsert)
    except DuplicateKeyError:
        return False  # the document exists and has seen the event: the upsert collided with it
    return res.matched_count == 1 or res.upserted_id is not None


async def backfill_id_lists(db, marker: str, rows, key_of, index: AsyncCollection) -> int:
    """Once per database (`marker` in `migrations` says it is done): files the `_id` of every document of `rows` (a
    cursor, read only when the backfill runs) under `key_of(document)` in `index` — `{_id: key, ids: [...]}`, added to
    with `$addToSet`, so a run a crash cut short simply runs again. An index kept by events from then on starts whole.
    Returns how many keys it filed (0 when done before)."""
    if await db.migrations.find_one({"_id": marker}, {"_id": 1}):
        return 0
    ids: dict[Any, list] = {}
    async for d in rows:
        ids.setdefault(key_of(d), []).append(d["_id"])
    ops = [UpdateOne({"_id": k}, {"$addToSet": {"ids": {"$each": v}}}, upsert=True) for k, v in ids.items()]
    for i in range(0, len(ops), 500):
        await index.bulk_write(ops[i:i + 500], ordered=False)
    await db.migrations.update_one({"_id": marker}, {"$set": {"keys": len(ids), "at": now()}}, upsert=True)
    return len(ids)


def audit_record(*, actor: str | None, action: str, key: str, payload: dict) -> dict:
    """The document of an audit entry (see `record_audit`); a batch inserts many with one `insert_many`."""
    # a time-ordered id: entries of the same millisecond still sort in the order they happened
    return {"_id": f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}", "at": now(), "actor": actor,
            "client_id": current_client.get(), "action": action, "key": key, "topic": None, "payload": payload}


async def record_audit(db, *, actor: str | None, action: str, key: str, payload: dict) -> None:
    """An audit entry for a change (or a read) that publishes no event; events are audited by the outbox
    relay. Same shape as the relay's entries in the `audit` collection, so one query lists both."""
    await db.audit.insert_one(audit_record(actor=actor, action=action, key=key, payload=payload))

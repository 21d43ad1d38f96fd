"""Audit entries for changes and reads that publish no event (events are audited by the outbox relay)."""
from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime


async def record(db, *, actor: str | None, action: str, key: str, payload: dict) -> None:
    """Same shape as the relay's entries in the `audit` collection, so one query lists both."""
    # a time-ordered id: entries of the same millisecond still sort in the order they happened
    await db.audit.insert_one({"_id": f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}", "at": datetime.now(UTC), "actor": actor, "action": action,
                               "key": key, "topic": None, "payload": payload})

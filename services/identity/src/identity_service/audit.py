"""Audit entries for changes and reads that publish no event (events are audited by the outbox relay)."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime


async def record(db, *, actor: str | None, action: str, key: str, payload: dict) -> None:
    """Same shape as the relay's entries in the `audit` collection, so one query lists both."""
    await db.audit.insert_one({"_id": uuid.uuid4().hex, "at": datetime.now(UTC), "actor": actor, "action": action,
                               "key": key, "topic": None, "payload": payload})

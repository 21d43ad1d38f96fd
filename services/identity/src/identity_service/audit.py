"""Audit entries for changes and reads that publish no event (events are audited by the outbox relay); each also
joins the operators' cross-service trail (R-OPS-02)."""
import uuid

from servicekit.auth import current_client
from servicekit.store import now, record_audit


async def record(db, *, actor: str | None, action: str, key: str, payload: dict) -> None:
    from identity_service import operator

    await record_audit(db, actor=actor, action=action, key=key, payload=payload)
    await operator.add_entry(db, entry_id=f"audit-{uuid.uuid4().hex}", at=now(), actor=actor,
                             client_id=current_client.get(), action=action, service="identity", subject=key,
                             payload=payload)


__all__ = ["record"]

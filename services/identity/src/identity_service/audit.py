"""Audit entries for changes and reads that publish no event (events are audited by the outbox relay)."""
from servicekit.store import record_audit as record

__all__ = ["record"]

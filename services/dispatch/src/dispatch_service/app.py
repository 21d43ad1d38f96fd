"""Wiring of the dispatch service (foundation: health, readiness, its own database and topics)."""
from servicekit.service import Service

svc = Service("dispatch", title="Expert dispatch", produces=["dispatch.events"])
app = svc.app

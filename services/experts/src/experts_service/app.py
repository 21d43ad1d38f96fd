"""Wiring of the experts service (foundation: health, readiness, its own database and topics)."""
from servicekit.service import Service

svc = Service("experts", title="Experts", produces=["experts.events"])
app = svc.app

"""Wiring of the ratings service (foundation: health, readiness, its own database and topics)."""
from servicekit.service import Service

svc = Service("ratings", title="Ratings", produces=["ratings.events"])
app = svc.app

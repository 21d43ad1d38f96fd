"""Wiring of the notifications service (foundation: health, readiness, its own database and topics)."""
from servicekit.service import Service

svc = Service("notifications", title="Notifications", produces=["notifications.commands"])
app = svc.app

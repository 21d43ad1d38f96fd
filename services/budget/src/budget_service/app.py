"""Wiring of the budget service (foundation: health, readiness, its own database and topics)."""
from servicekit.service import Service

svc = Service("budget", title="Budget frames", produces=["budget.events", "budget.commands"])
app = svc.app

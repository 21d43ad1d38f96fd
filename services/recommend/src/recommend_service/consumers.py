"""Kafka handlers of the recommend service: keep a local profile of every business (read model)."""
from __future__ import annotations

from contracts import Envelope
from contracts.events.identity import BusinessRegistered
from servicekit.store import apply_once


def handlers(svc):
    async def on_business_registered(env: Envelope, e: BusinessRegistered) -> None:
        # The attributes R-REC-01 matches on; idempotent by event id.
        await apply_once(svc.db.business_profiles, e.business_id, env.event_id, {"$set": {
            "name": e.name, "prefecture": e.prefecture, "industry": e.industry,
            "employees": e.employees, "corporate_number": e.corporate_number,
            "registered_at": env.occurred_at,
        }})

    return {BusinessRegistered: on_business_registered}

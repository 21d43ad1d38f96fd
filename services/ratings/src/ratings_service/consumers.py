"""Kafka handlers of the ratings service: a completed dispatch makes ratings owed (R-RAT-01/03, R-DSP-12)."""
from __future__ import annotations

from pymongo.errors import DuplicateKeyError

from contracts import Envelope
from contracts.events.dispatch import DispatchCompleted
from contracts.events.ratings import RatingOwed
from ratings_service.domain import owed_id, raters_owed


def handlers(svc):
    async def on_completed(env: Envelope, e: DispatchCompleted) -> None:
        for kind, account in raters_owed(e.route, e.business_account_id, e.institution_account_id):
            oid = owed_id(e.dispatch_id, kind)
            owed = RatingOwed(expert_id=e.expert_id, owed_id=oid, dispatch_id=e.dispatch_id,
                              business_id=e.business_id, rater_account_id=account, rater_kind=kind,
                              since=e.completed_at)
            try:
                # The deterministic id makes a redelivered or duplicated DispatchCompleted a no-op.
                await svc.insert(svc.db.owed, {
                    "_id": oid, "status": "owed", "dispatch_id": e.dispatch_id, "expert_id": e.expert_id,
                    "business_id": e.business_id, "institution_id": e.institution_id,
                    "rater_account_id": account, "rater_kind": kind, "route": e.route,
                    "fiscal_year": e.fiscal_year, "since": e.completed_at, "rev": 0,
                }, events=[svc.event(owed, cause=env)])
            except DuplicateKeyError:
                pass

    return {DispatchCompleted: on_completed}

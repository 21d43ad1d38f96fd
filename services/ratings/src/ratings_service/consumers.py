"""Kafka handlers of the ratings service: a completed dispatch makes ratings owed (R-RAT-01/03, R-DSP-12); a given
rating (its own RatingGiven, written with the owed document) brings the expert's radar up to date (R-RAT-02).

The giving request applies its rating to the radar itself (the rater reads their own write); the consumer makes
sure every given rating reaches the radar promptly even when that request did not finish it (a crash, a busy
radar), and is the path of a replay or a rebuild. RatingGiven comes in batches (what one poll returned):
`store.apply_ratings` reads the batch's owed documents and radars with one `_id $in` each and writes each touched
radar once; a rating already applied (by the request, or a redelivery) counts once by its key. A batch that fails
for a reason of its own is applied again one message at a time, so a bad message is dead-lettered alone."""
from __future__ import annotations

from pymongo.errors import DuplicateKeyError

from contracts import Envelope
from contracts.events.dispatch import DispatchCompleted
from contracts.events.ratings import RatingGiven, RatingOwed
from ratings_service import store
from ratings_service.domain import owed_id, raters_owed


class NoSuchRating(Exception):
    """A RatingGiven whose owed document is not here (or not given): it can never be applied (dead-lettered)."""


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


def given_handlers(svc):
    """RatingGiven → radar (R-RAT-02): the single-message handler and the batch handler (see the module's doc)."""
    async def load(items: list[tuple[Envelope, RatingGiven]]) -> list[tuple[dict, Envelope]]:
        ids = list(dict.fromkeys(e.owed_id for _, e in items))
        owed = {d["_id"]: d async for d in svc.db.owed.find({"_id": {"$in": ids}}, {"_outbox": 0})}
        todo: dict[str, tuple[dict, Envelope]] = {}
        for env, e in items:
            doc = owed.get(e.owed_id)
            if doc is None or doc.get("status") != "given" or doc.get("expert_id") != e.expert_id:
                raise NoSuchRating(f"rating {e.owed_id} of {e.expert_id} is not a given rating here")
            if not doc.get("radar_applied", False):
                todo[e.owed_id] = (doc, env)  # twice in the batch (a redelivery): once, with its latest cause
        return list(todo.values())

    async def on_given(env: Envelope, e: RatingGiven) -> None:
        for doc, cause in await load([(env, e)]):
            await store.apply_rating(svc, doc, cause=cause)

    async def on_given_batch(items: list[tuple[Envelope, RatingGiven]]) -> None:
        await store.apply_ratings(svc, await load(items))

    return {RatingGiven: on_given}, {RatingGiven: on_given_batch}

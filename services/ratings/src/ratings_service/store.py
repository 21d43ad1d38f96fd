"""MongoDB access of the ratings service: owed ratings, per-expert radar buckets, evaluations."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from contracts.events.ratings import ExpertRadarUpdated
from ratings_service.domain import PARAMS, Radar, day_key, window_start
from servicekit import aggregate
from servicekit.refusals import Rejected
from servicekit.store import SEEN_KEEP, now

JST = ZoneInfo("Asia/Tokyo")  # rating days are Japanese calendar days


def today():
    return now().astimezone(JST).date()


def rating_day(at: datetime) -> str:
    return day_key(at.astimezone(JST))


async def ensure_indexes(db) -> None:
    await db.owed.create_index([("rater_account_id", 1), ("status", 1)])
    await db.owed.create_index("dispatch_id")
    await db.owed.create_index([("status", 1), ("radar_applied", 1)])
    await db.radars.create_index("oldest")
    await db.evaluations.create_index([("fiscal_year", 1), ("expert_id", 1)])


def radar_event(svc, expert_id: str, radar: Radar, *, cause=None, actor=None) -> dict:
    avg, n = radar.summary(today(), PARAMS)
    return svc.event(ExpertRadarUpdated(expert_id=expert_id, averages=avg, count=n,
                                        window_days=PARAMS.window_days, as_of=now()), actor=actor, cause=cause)


async def update_radar(svc, expert_id: str, changes: list[tuple[str, object]] = (), *, cause=None,
                       actor=None, attempts: int = 50) -> bool:
    """R-RAT-02: applies each `(key, mutate)` change not applied before (keys are remembered on the
    document, space-separated in `applied`), drops buckets that left the window and publishes the new radar,
    all in one conditional write (`servicekit.aggregate.update`: compare-and-set on `version`; radars stored before
    it carry theirs as `v`). Several ratings of one expert may go in one write. The document holds plain strings, not
    arrays or sub-documents: it is rewritten on every rating (see `Radar.pack`). Returns whether it changed."""
    def decide(doc: dict | None) -> aggregate.Change | None:
        applied = (doc.get("applied") or "").split() + doc.get("_seen", []) if doc else []  # _seen: older documents
        done = set(applied)
        todo = [(k, m) for k, m in dict(changes).items() if k not in done]
        if changes and not todo:
            return None  # all already applied
        radar = Radar.unpack(doc["days"] if doc else None)
        for _, mutate in todo:
            mutate(radar)
        expired = radar.expire(today(), PARAMS)
        if not todo and not expired:
            return None  # nothing changed, nothing to publish
        applied += [k for k, _ in todo]
        return aggregate.Change(set={"days": radar.pack(), "oldest": radar.oldest() or "9999-12-31", "updated_at": now(),
                                     "applied": " ".join(applied[-SEEN_KEEP:])},
                                events=[radar_event(svc, expert_id, radar, cause=cause, actor=actor)])

    out = await aggregate.update(
        svc, svc.db.radars, expert_id, decide, actor=actor, action="ratings.RadarUpdated", attempts=attempts,
        create=True, projection={"_outbox": 0},
        busy=Rejected("conflict", "Busy", f"The radar of {expert_id} kept changing meanwhile; please try again."))
    return out.changed


def rating_mutation(owed: dict):
    """The change an owed document's current rating (or its latest correction) makes to the radar."""
    day = rating_day(owed["given_at"])
    if owed.get("rev", 0) == 0:
        return lambda r: r.add(day, owed["scores"])
    return lambda r: r.correct(day, owed["prev_scores"], owed["scores"])


async def apply_rating(svc, owed: dict, *, cause=None, actor=None) -> None:
    """Brings the radar up to date with one given rating; idempotent, so a sweep may repeat it."""
    key = f"{owed['_id']}:r{owed.get('rev', 0)}"
    await update_radar(svc, owed["expert_id"], [(key, rating_mutation(owed))], cause=cause, actor=actor)
    await svc.db.owed.update_one({"_id": owed["_id"], "rev": owed.get("rev", 0)}, {"$set": {"radar_applied": True}})


async def sweep(svc) -> int:
    """Periodic work: finish radar updates a crash interrupted, and expire buckets that left the window."""
    done = 0
    async for owed in svc.db.owed.find({"status": "given", "radar_applied": False}, {"_outbox": 0}).limit(500):
        await apply_rating(svc, owed)
        done += 1
    start = window_start(today(), PARAMS)
    async for doc in svc.db.radars.find({"oldest": {"$lt": start}}, {"_id": 1}).limit(1000):
        done += await update_radar(svc, doc["_id"])
    return done

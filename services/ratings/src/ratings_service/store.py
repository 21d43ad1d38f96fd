"""MongoDB access of the ratings service: owed ratings, per-expert radar buckets, evaluations."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from pymongo import InsertOne, UpdateOne
from pymongo.errors import BulkWriteError

from contracts.events.ratings import ExpertRadarUpdated
from ratings_service.domain import PARAMS, Radar, day_key, window_start
from servicekit import aggregate
from servicekit.bus import processing
from servicekit.refusals import Rejected
from servicekit.store import SEEN_KEEP, now, with_outbox

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
    await db.owed.create_index([("expert_id", 1), ("moderation", 1)])  # an expert's approved comments
    await db.owed.create_index("moderation")  # the moderation queue
    await db.classifications.create_index([("expert_id", 1), ("fiscal_year", -1)])  # an expert's classifications
    await db.classifications.create_index("fiscal_year")  # is the year closed?


def radar_event(svc, expert_id: str, radar: Radar, *, cause=None, actor=None) -> dict:
    avg, n = radar.summary(today(), PARAMS)
    return svc.event(ExpertRadarUpdated(expert_id=expert_id, averages=avg, count=n,
                                        window_days=PARAMS.window_days, as_of=now()), actor=actor, cause=cause)


def applied_keys(doc: dict | None) -> list[str]:
    """The rating keys (`<owed id>:r<rev>`) a radar document remembers having applied, oldest first."""
    return (doc.get("applied") or "").split() + doc.get("_seen", []) if doc else []  # _seen: older documents


def radar_change(svc, expert_id: str, doc: dict | None, changes, *, cause=None,
                 actor=None) -> aggregate.Change | None:
    """R-RAT-02, the decision of one radar write: applies each `(key, mutate)` change whose key the document has
    not applied yet (a key twice in `changes` once), drops buckets that left the window, and returns the fields to
    set and the ExpertRadarUpdated event; None when nothing changed."""
    applied = applied_keys(doc)
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


async def update_radar(svc, expert_id: str, changes: list[tuple[str, object]] = (), *, cause=None,
                       actor=None, attempts: int = 50) -> bool:
    """R-RAT-02: applies each `(key, mutate)` change not applied before (keys are remembered on the
    document, space-separated in `applied`), drops buckets that left the window and publishes the new radar,
    all in one conditional write (`servicekit.aggregate.update`: compare-and-set on `version`; radars stored before
    it carry theirs as `v`). Several ratings of one expert may go in one write. The document holds plain strings, not
    arrays or sub-documents: it is rewritten on every rating (see `Radar.pack`). Returns whether it changed."""
    def decide(doc: dict | None) -> aggregate.Change | None:
        return radar_change(svc, expert_id, doc, changes, cause=cause, actor=actor)

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
    await update_radar(svc, owed["expert_id"], [(rating_key(owed), rating_mutation(owed))], cause=cause, actor=actor)
    await svc.db.owed.update_one({"_id": owed["_id"], "rev": owed.get("rev", 0)}, {"$set": {"radar_applied": True}})


def rating_key(owed: dict) -> str:
    """The key a rating (at its revision) is remembered by on the radar: applying it again changes nothing."""
    return f"{owed['_id']}:r{owed.get('rev', 0)}"


async def apply_ratings(svc, given: list[tuple[dict, object]]) -> int:
    """Brings the radars up to date with a batch of given ratings, `(owed document, cause envelope)` in the order
    they arrived: grouped by expert, every touched radar read once (`_id $in`), all of an expert's ratings applied
    in memory by `radar_change` (the same rules as one at a time; a rating already applied, or twice in the batch,
    counts once by its key), and each radar written once: ONE unordered bulk write, one statement per radar,
    guarded by the version read, each carrying its ExpertRadarUpdated in its outbox. A radar changed meanwhile (or
    created meanwhile) is done again alone by `update_radar`. Then the owed documents are marked applied (one `_id $in`
    update per revision, each at the revision applied). Returns the number of radars written. Idempotent, like `apply_rating`."""
    by_expert: dict[str, list[tuple[dict, object]]] = {}
    for owed, env in given:
        by_expert.setdefault(owed["expert_id"], []).append((owed, env))
    if not by_expert:
        return 0
    docs = {d["_id"]: d async for d in svc.db.radars.find({"_id": {"$in": list(by_expert)}}, {"_outbox": 0})}
    ops, written = [], []
    for expert_id, group in by_expert.items():
        doc = docs.get(expert_id)
        changes = [(rating_key(o), rating_mutation(o)) for o, _ in group]
        with processing(group[-1][1]):  # the radar's event goes on in the trace of its latest rating
            change = radar_change(svc, expert_id, doc, changes, cause=group[-1][1])
        if change is None:
            continue
        if doc is None:
            ops.append(InsertOne({"_id": expert_id, **change.set, aggregate.VERSION: 1, "_outbox": change.events}))
        else:
            filter_, version_set, drop = aggregate.guard(doc)
            ops.append(UpdateOne(filter_, with_outbox(aggregate.update_document(change, version_set, drop),
                                                      change.events)))
        written.append(expert_id)
    if ops:
        try:
            res = await svc.db.radars.bulk_write(ops, ordered=False)
            clean = res.inserted_count + res.matched_count == len(ops)
        except BulkWriteError as e:  # an insert of a radar created meanwhile (duplicate _id): redone below
            if any(err.get("code") != 11000 for err in e.details.get("writeErrors", [])):
                raise
            clean = False
        for expert_id in written:
            svc.relay.kick(svc.db.radars, expert_id)
        if not clean:  # a radar moved on meanwhile: each again alone (a rating already applied counts once)
            for expert_id in written:
                group = by_expert[expert_id]
                await update_radar(svc, expert_id, [(rating_key(o), rating_mutation(o)) for o, _ in group],
                                   cause=group[-1][1])
    by_rev: dict[int, list[str]] = {}
    for o, _ in given:
        by_rev.setdefault(o.get("rev", 0), []).append(o["_id"])
    for rev, ids in by_rev.items():  # each at the revision applied (a correction since is applied by its request)
        await svc.db.owed.update_many({"_id": {"$in": ids}, "rev": rev}, {"$set": {"radar_applied": True}})
    return len(written)


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

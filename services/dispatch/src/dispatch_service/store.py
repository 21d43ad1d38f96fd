"""MongoDB access of the dispatch service: the dispatch aggregate (optimistic versioned writes with
their events in one update), free-dispatch slots, read models and audit records."""
from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Awaitable, Callable
from datetime import date, datetime

from pymongo.errors import DuplicateKeyError

from contracts.events.dispatch import DispatchStatusChanged
from contracts.events.ratings import owed_rating_id
from dispatch_service.domain import ExpertState, Programme, default_programme
from dispatch_service.domain.dispatch import Change, Step, new_id  # noqa: F401  (new_id: the one id scheme)
from dispatch_service.domain.programmes import programme_from_doc, programme_to_doc
from dispatch_service.domain.saga import WAITING
from dispatch_service.domain.slots import gives_back
from dispatch_service.watch import Watch
from servicekit import aggregate
from servicekit.refusals import Rejected
from servicekit.store import (backfill_id_lists, now,  # noqa: F401  (now: the one clock, used across the service)
                              record_audit)


OWED_MARKER = "owed-index:v1"
PROGRAMME_TTL = 10.0  # seconds a programme read is kept (see `Store.programme`)
SLOT_NUMBERS = 100  # free-dispatch slot numbers the request path reads by id (1..100, or up to a larger cap)
# slots the reconciler settles per statement (kept short: the local server writes one statement at a time per
# database)
SLOT_BATCH = 200


def as_stored(v):
    """`v` as a read would give it back: times to the millisecond (BSON dates), tuples as lists (spares reading a
    document just written)."""
    if isinstance(v, datetime):
        return v.replace(microsecond=v.microsecond // 1000 * 1000)
    if isinstance(v, dict):
        return {k: as_stored(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [as_stored(x) for x in v]
    return v


class AggregateLocks:
    """Striped in-process locks serialising this process's writes to one dispatch document.

    The version guard in `update` is what keeps writes correct across replicas (single-document writes
    are atomic on MongoDB and on the patched local server); the locks only spare one process the
    reload-and-retry of a version conflict with itself.
    """

    def __init__(self, stripes: int = 256):
        self._locks = [asyncio.Lock() for _ in range(stripes)]

    def __call__(self, key: str) -> asyncio.Lock:
        return self._locks[zlib.crc32(key.encode()) % len(self._locks)]


class Store:
    def __init__(self, svc):
        self.svc = svc
        self.db = svc.db
        self.dispatches = svc.db.dispatches
        self.slots = svc.db.free_slots
        self.lock = AggregateLocks()
        self._programmes: dict[int, tuple[float, Programme]] = {}
        # what the saga's clocks look at again, by `_id` (dispatch_service.watch): dispatches this process left waiting
        # for a budget answer, free-dispatch slots it claimed
        self.waiting, self.claims = Watch(), Watch()

    # --- set-up -----------------------------------------------------------------------------------
    async def setup(self, fiscal_years: list[int]) -> None:
        await self.dispatches.create_index([("business_id", 1), ("fiscal_year", 1)])
        await self.dispatches.create_index([("reserve.command_id", 1)])
        await self.dispatches.create_index([("expert_id", 1), ("status", 1)])
        await self.dispatches.create_index("status")  # the clocks' safety-net scan of dispatches waiting for budget
        await self.slots.create_index([("business_id", 1), ("fiscal_year", 1)])
        await self.slots.create_index([("settled", 1), ("at", 1)])
        await self.slots.create_index("dispatch_id")
        await self.dispatches.create_index("slot_release")
        await self.db.consultations.create_index([("business_id", 1), ("expert_id", 1)])
        await self.db.pending_ratings.create_index([("business_id", 1), ("given", 1)])
        await self.db.experts.create_index("account_id")  # an expert's own worklist finds its expert ids by account
        await self.backfill_owed_index()
        for fy in fiscal_years:  # seed programmes; an edited programme is never overwritten
            await self.db.programmes.update_one({"_id": f"dispatch-{fy}"},
                                                {"$setOnInsert": programme_to_doc(default_programme(fy))},
                                                upsert=True)

    async def programme(self, fiscal_year: int) -> Programme:
        """The fiscal year's programme, kept for `PROGRAMME_TTL` seconds (read on every request; an operator's edit of
        the document takes effect within that time on every replica)."""
        at = time.monotonic()
        kept = self._programmes.get(fiscal_year)
        if kept and at - kept[0] < PROGRAMME_TTL:
            return kept[1]
        doc = await self.db.programmes.find_one({"_id": f"dispatch-{fiscal_year}"})
        if doc is None:
            raise Rejected("conflict", "No dispatch programme", f"There is no dispatch programme for fiscal year {fiscal_year}.")
        self._programmes[fiscal_year] = (at, programme := programme_from_doc(doc))
        return programme

    # --- audit of changes that publish no event ------------------------------------------------------
    async def audit(self, actor: str | None, action: str, key: str, payload: dict) -> None:
        await record_audit(self.db, actor=actor, action=action, key=key, payload=payload)

    # --- the dispatch aggregate ----------------------------------------------------------------------
    async def get(self, dispatch_id: str) -> dict | None:
        return await self.dispatches.find_one({"_id": dispatch_id}, {"_outbox": 0, "_seen": 0})

    def written(self, doc: dict, ch: Change, *, actor: str | None, cause=None) -> tuple[dict, list[dict]]:
        """A Change of the aggregate as one MongoDB update and the envelopes of its events (same write: outbox)."""
        update: dict = {"$set": dict(ch.set)}
        if ch.gives_back_slot:
            update["$set"].update(gives_back())
        if ch.history:
            update["$push"] = {"history": {"$each": ch.history}}
        after = {**doc, **{k: v for k, v in ch.set.items() if "." not in k}}
        events = [self.status_event(after, e.status, actor=actor, cause=cause, reason_code=e.reason_code,
                                    reason=e.reason, fee=e.fee, travel=e.travel) if isinstance(e, Step)
                  else self.svc.event(e, actor=actor, cause=cause) for e in ch.emits]
        return update, events

    async def create(self, doc: dict, ch: Change, *, actor: str) -> dict:
        """Writes a new dispatch with the Change that made it (request, and for route A its screening) in one insert;
        returns it as written (as a read would give it back)."""
        update, events = self.written(doc, ch, actor=actor)
        full = {**doc, **update["$set"]}
        full["history"] = doc["history"] + ch.history
        try:
            await self.svc.insert(self.dispatches, full, events=events)
        except Exception:
            if full.get("counts_free"):  # the slot screening claimed: given back at once (else the reconciler does)
                await self.release_slot(full["business_id"], full["fiscal_year"], full["_id"])
            raise
        self.watched(full)
        return as_stored({k: v for k, v in full.items() if k not in ("_outbox", "_seen")})

    async def change(self, dispatch_id: str, decide: Callable[[dict], Awaitable[Change | None] | Change | None], *,
                     actor: str | None, cause=None, reload: bool = True) -> dict | None:
        """Read → `decide(doc)` (a method of the aggregate: a Change, or None for nothing to do) → one conditional
        write with its events, retried on a concurrent change. A change that gives the free dispatch back finishes that
        here (the reconciler finishes it after a crash). Returns the dispatch after (or as it was, with `_changed`,
        when `reload` is false)."""
        out = await self.mutate(dispatch_id, decide, actor=actor, cause=cause, reload=reload)
        if out is not None and out.pop("_released", False):
            await self.release_slot(out["business_id"], out["fiscal_year"], dispatch_id)
        return out

    async def mutate(self, dispatch_id: str, decide, *, actor: str | None = None, cause=None,
                     action: str = "dispatch.changed", reload: bool = True) -> dict | None:
        """Read → decide → conditional write guarded by the version read, retried on a concurrent change.

        `decide(doc)` returns a Change of the aggregate, or None for "nothing to do" (e.g. a duplicate message); it
        may raise. A change without events still leaves an audit record.
        """
        async with self.lock(dispatch_id):
            return await self._mutate(dispatch_id, decide, actor, cause, action, reload)

    async def _mutate(self, dispatch_id, decide, actor, cause, action, reload):
        released = False

        async def decided(doc: dict) -> aggregate.Change | None:
            nonlocal released
            out = decide(doc)
            if hasattr(out, "__await__"):
                out = await out
            if out is None:
                return None
            released = out.gives_back_slot
            update, events = self.written(doc, out, actor=actor, cause=cause)
            return aggregate.Change(set=update["$set"], push=update.get("$push", {}), events=events, action=out.action)

        done = await aggregate.update(
            self.svc, self.dispatches, dispatch_id, decided, actor=actor, action=action,
            missing=Rejected("not_found", "Not found", f"No dispatch request {dispatch_id}."),
            busy=Rejected("conflict", "Changed concurrently", "The dispatch changed while you acted on it; please try again."))
        if not done.changed:
            return done.doc
        self.watched(done.doc)
        after = await self.get(dispatch_id) if reload else {**done.doc, "_changed": True}
        return {**after, "_released": True} if released else after

    def watched(self, doc: dict) -> None:
        """Keeps `waiting` in step with a dispatch just written: watched from the first write that leaves it waiting for a
        budget answer (a later one, e.g. a re-send, keeps that time: the clock reads it and finds when it was sent), no
        longer once it has its answer."""
        if doc.get("status") not in WAITING:
            self.waiting.drop(doc["_id"])
        elif doc["_id"] not in self.waiting:
            self.waiting.add(doc["_id"])

    def status_event(self, doc: dict, status: str, *, actor: str | None = None, cause=None,
                     reason_code: str | None = None, reason: str | None = None,
                     fee: int | None = None, travel: int | None = None) -> dict:
        msg = DispatchStatusChanged(
            dispatch_id=doc["_id"], status=status, route=doc["route"], fiscal_year=doc["fiscal_year"],
            business_id=doc["business_id"], expert_id=doc["expert_id"], institution_id=doc.get("institution_id"),
            platform_id=doc.get("platform_id"), reason_code=reason_code, reason=reason, fee=fee, travel=travel)
        return self.svc.event(msg, actor=actor, cause=cause)

    # --- free dispatches (R-DSP-03) -------------------------------------------------------------------
    # One document per slot, `_id` = business:year:n. A duplicate-key insert is atomic on every server
    # (unlike a conditional update on FerretDB), so concurrent requests can never take more than the cap.
    async def used_free_by_id(self, business_id: str, fiscal_year: int, programme: Programme | None = None) -> list[str]:
        """The dispatches holding the business's free dispatches of the year, in slot order. The slots are read by their
        ids (`_id: {$in}`, served from the `_id` index; a filter on other fields scans the collection on the local
        server). Slot numbers never exceed the cap at the time of the claim; the range covers any cap up to 100, and
        `programme`'s larger one."""
        caps = (programme.free_dispatches, programme.free_dispatches_extended) if programme else ()
        upto = max((SLOT_NUMBERS, *caps))
        ids = [f"{business_id}:{fiscal_year}:{n}" for n in range(1, upto + 1)]
        found = (await self.svc.by_ids("free_slots", {"n": 1, "dispatch_id": 1}).many(ids)).values()
        return [d["dispatch_id"] for d in sorted(found, key=lambda d: d["n"])]

    async def claim_slot(self, business_id: str, fiscal_year: int, dispatch_id: str, cap: int,
                         used: list[str] | None = None) -> bool:
        """Takes one of the business's `cap` free dispatches of the year for `dispatch_id` (idempotent). `used`: the
        dispatches holding the business's slots, as just read (spares reading them again)."""
        if used is not None:
            if dispatch_id in used:
                return True
        elif await self.slots.find_one({"business_id": business_id, "fiscal_year": fiscal_year,
                                        "dispatch_id": dispatch_id}, {"_id": 1}):
            return True
        for n in range(1, cap + 1):
            try:
                await self.svc.inserts(self.slots).one({"_id": (slot_id := f"{business_id}:{fiscal_year}:{n}"), "n": n,
                                                        "business_id": business_id, "fiscal_year": fiscal_year,
                                                        "dispatch_id": dispatch_id, "at": now()})
                self.claims.add(slot_id)  # the reconciler looks at it after the grace period
                return True
            except DuplicateKeyError:
                continue
        return False

    async def release_slot(self, business_id: str, fiscal_year: int, dispatch_id: str) -> None:
        """Gives the free dispatch back; finishes a `slot_release: pending` the dispatch recorded (idempotent)."""
        await self.slots.delete_many({"business_id": business_id, "fiscal_year": fiscal_year,
                                      "dispatch_id": dispatch_id})
        await self.dispatches.update_one({"_id": dispatch_id, "slot_release": "pending"}, {"$unset": {"slot_release": ""}})

    async def reconcile_slots(self, grace_seconds: float, *, full: bool = False) -> int:
        """R-DSP-03 after a crash: a slot claimed for a dispatch that was never written (or never accepted) is freed;
        a slot its dispatch holds is settled (never looked at again). Every claim passes here once, after the grace
        period: the slots this process claimed (`claims`), read by `_id`; with `full`, every unsettled slot in the
        database and every release a dispatch recorded but did not finish (the safety net for other replicas and
        restarts: dispatch_service.watch). Returns how many slots were freed."""
        from datetime import timedelta

        at, mono = now(), time.monotonic()
        cutoff, freed = at - timedelta(seconds=grace_seconds), 0
        if full:
            old = []
            async for s in self.slots.find({"settled": {"$ne": True}}, {"dispatch_id": 1, "at": 1}):
                if s["at"] < cutoff:
                    old.append(s)
                else:  # still in its grace period: looked at when that is over
                    self.claims.add(s["_id"], since=mono - (at - s["at"]).total_seconds())
            for lo in range(0, len(old), SLOT_BATCH):
                freed += await self._settle(old[lo:lo + SLOT_BATCH])
        due = self.claims.due(mono - grace_seconds)
        for lo in range(0, len(due), SLOT_BATCH):
            ids = due[lo:lo + SLOT_BATCH]
            slots = [s async for s in self.slots.find({"_id": {"$in": ids}}, {"dispatch_id": 1, "settled": 1})]
            freed += await self._settle([s for s in slots if not s.get("settled")])
            for slot_id in ids:
                self.claims.drop(slot_id)
        if full:
            async for d in self.dispatches.find({"slot_release": "pending", "updated_at": {"$lt": cutoff}},
                                                {"business_id": 1, "fiscal_year": 1}):
                freed += await self.slots.count_documents({"dispatch_id": d["_id"]})
                await self.release_slot(d["business_id"], d["fiscal_year"], d["_id"])
        return freed

    async def _settle(self, slots: list[dict]) -> int:
        """One batch of slots past their grace period: their dispatches read with one `_id: {$in}`, the held slots
        settled with one statement, a stranded one (its dispatch never written, or it gave the slot back) deleted.
        Returns how many were freed."""
        from dispatch_service.domain.slots import holds_slot

        if not slots:
            return 0
        holders = {d["_id"]: d async for d in self.dispatches.find(
            {"_id": {"$in": sorted({s["dispatch_id"] for s in slots})}}, {"counts_free": 1})}
        held = {s["_id"]: holds_slot(holders.get(s["dispatch_id"])) for s in slots}
        if settled := [slot_id for slot_id, holds in held.items() if holds]:
            await self.slots.update_many({"_id": {"$in": settled}}, {"$set": {"settled": True}})
        freed = 0
        for slot in slots:
            if not held[slot["_id"]]:
                freed += (await self.slots.delete_one({"_id": slot["_id"],
                                                       "dispatch_id": slot["dispatch_id"]})).deleted_count
        return freed

    # --- read models -----------------------------------------------------------------------------------
    async def expert(self, expert_id: str) -> tuple[dict | None, ExpertState | None]:
        doc = await self.svc.by_ids("experts").one(expert_id)
        if doc is None:
            return None, None
        revoked = await self.svc.by_ids("revoked_subjects", {"struck": 1}).one(doc["account_id"]) is not None
        state = ExpertState(
            status=doc["status"], registered_fiscal_year=doc.get("registered_fiscal_year"),
            employer_org_id=doc.get("employer_org_id"),
            personnel_cost_subsidised=bool(doc.get("personnel_cost_subsidised")),
            related_business_ids=frozenset(doc.get("related_business_ids", ())),
            unavailable=tuple((date.fromisoformat(u["start"]), date.fromisoformat(u["end"]))
                              for u in doc.get("unavailable", ())),
            revoked=revoked, paused=bool(doc.get("paused")), open_cap=doc.get("open_cap"),
            weekdays=frozenset(doc.get("weekdays") or ()),
            # R-EX-06: the count matters only to an expert who capped their open dispatches (it scans the expert's)
            open_now=await self.open_dispatches(expert_id) if doc.get("open_cap") is not None else 0)
        return doc, state

    async def open_dispatches(self, expert_id: str, excluding: str | None = None) -> int:
        """R-EX-06: the expert's dispatches accepted and not yet reported."""
        from dispatch_service.domain.lifecycle import OPEN_FOR_EXPERT
        q = {"expert_id": expert_id, "status": {"$in": sorted(OPEN_FOR_EXPERT)}}
        if excluding:
            q["_id"] = {"$ne": excluding}
        return await self.dispatches.count_documents(q)

    async def rating_owed(self, doc: dict) -> None:
        """R-DSP-12: the business owes a rating from the moment the dispatch is confirmed (ratings records the same
        id when DispatchCompleted reaches it, and RatingGiven lifts it). Idempotent."""
        owed = owed_rating_id(doc["_id"], "business")
        await self.index_owed(doc["business_id"], owed)
        await self.db.pending_ratings.update_one(
            {"_id": owed},
            {"$setOnInsert": {"business_id": doc["business_id"], "dispatch_id": doc["_id"], "expert_id": doc["expert_id"],
                              "rater_kind": "business", "since": now(), "given": False}}, upsert=True)

    # `owed_index`: per business (`_id`), the ids of every rating it was ever owed as the rater (`ids`, only ever added
    # to, before the rating's own document is written), so the request path reads a business's pending ratings by
    # `_id` (a filter on `business_id` scans every pending rating on the local server). Filled, once per database,
    # from the ratings owed before it existed (marker in `migrations`).
    async def index_owed(self, business_id: str, owed_id: str) -> None:
        await self.db.owed_index.update_one({"_id": business_id}, {"$addToSet": {"ids": owed_id}}, upsert=True)

    async def backfill_owed_index(self) -> int:
        return await backfill_id_lists(self.db, OWED_MARKER, self.db.pending_ratings.find(
            {"rater_kind": "business"}, {"business_id": 1}), lambda r: r["business_id"], self.db.owed_index)

    async def pending_ratings(self, business_id: str) -> int:
        """R-DSP-12: ratings the business owes and has not given: its owed ids from `owed_index`, then read by `_id`."""
        ids = (await self.svc.by_ids("owed_index").one(business_id) or {}).get("ids") or []
        if not ids:
            return 0
        return len([r async for r in self.db.pending_ratings.find(
            {"_id": {"$in": ids}, "rater_kind": "business", "given": False}, {"_id": 1})])

    async def membership(self, platform_id: str | None, org_id: str) -> dict | None:
        if not platform_id:
            return None
        return await self.svc.by_ids("memberships").one(f"{platform_id}:{org_id}")

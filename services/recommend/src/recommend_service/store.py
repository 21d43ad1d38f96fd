"""MongoDB access of the recommend service: catalogue seeding, push bookkeeping (R-NOT-01) and the read models
kept by events (R-OPS-03), so no request reads a whole collection.

Collections (every request-path read is a lookup by `_id`, the one index every MongoDB-wire server uses):
- `business_profiles` {_id: business}: attributes, `segment`, `indicators`, `items` (programmes used or
  favoured), `uses` ("<programme>:<kind>"), `notified`, `owner`; `pend` while its sketch deltas are being applied.
- `segments` {_id: "<industry>|<size>|<prefecture>"}: the catalogue's programmes a business of the segment may
  be recommended (`candidates`, with `candidate_ids` flat for `$ne` guards); kept when a programme is added.
- `segment_members` {_id: "<segment>#<chunk>"}: the segment index, `m: {business: owner}` in MEMBER_CHUNKS
  chunks per segment, so a new programme reaches its businesses by reading a few documents, not every profile.
- `peer_groups` {_id: "<industry>|<size>"}: per-indicator quantile sketches (diagnosis.py) and the member count;
  `open`: the op ids of batches applied whose profiles may still hold `pend` (see below).
- `industry_peers` {_id: industry}: the six local-benchmark indicators' sketches of the industry's businesses
  (R-REC-06: scored against peers of the same industry) and the member count; `open` as `peer_groups`.
- `catalogue_state` {_id: "segments", v}: bumped whenever a programme joins segments (the learners' cache key).
- `programme_stats` {_id: programme}: item-item counts (`users`, `co`) and uptake counters (`uptake`).

Profiles are learnt in batches (issue 22 item 1: the consumer hands over what one poll returned; one event alone is
a batch of one). Idempotency scheme, exact and without a window of remembered ids on the shared documents:
- a profile is written once per batch, guarded by its own event ids (`_seen`, per business), and in the same write
  records what it owes the shared sketches: `pend` = {op, contributions}, the deltas from the contribution it had
  (old peer group and figures) to its new one, tagged with the batch's op id (a fresh uuid per attempt);
- then ONE `$inc` per peer group / industry document, the deltas of the whole batch merged, guarded by the op id
  (`open.<op>` absent; the write sets it); then the profiles' `pend` is cleared, and only after that the op id
  leaves `open` (with the group's next write by this process);
- a profile found holding `pend` of op P (a crash, or a batch that failed half-way) has each contribution looked up:
  P in the group's `open` -> applied, dropped; absent -> not applied (P leaves `open` only once no `pend` of P is
  left), carried into the current batch. A crash therefore never loses and never repeats a delta, however the
  redelivered events are split into polls. `learn_profiles` has the step-by-step argument.
Reads are `_id` lookups, one `$in` for many (the local FerretDB serves `_id $in` from the index too, see mongo.sh);
writes are ordered `update` commands of many statements.
"""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
import zlib

from pymongo import UpdateOne
from pymongo.errors import DuplicateKeyError, OperationFailure

from contracts import Envelope
from contracts.events.notifications import Notify
from recommend_service import diagnosis, domain, learning
from servicekit.store import apply_once, with_outbox

log = logging.getLogger("recommend.store")

CACHE_SECONDS = 5.0  # how long a replica serves a segment, a peer group or a programme's counts from memory
MEMBER_CHUNKS = 64  # ~16,000 businesses per chunk document in the largest segment at 1,000,000
BULK = 1000  # writes per bulk_write when a programme is pushed


async def seed_catalogue(db, catalogue: list[dict]) -> None:
    """R-REC-04: loads the seeded programmes; idempotent by programme id (an operator's edits are kept). Segments
    built before a programme was seeded learn it here, as they would from ProgrammeAdded."""
    for p in catalogue:
        await db.programmes.update_one({"_id": p["programme_id"]},
                                       {"$setOnInsert": {k: v for k, v in p.items() if k != "programme_id"}}, upsert=True)
        if p.get("form"):  # R-POR-05: a programme seeded before forms existed gets its form (an operator's is kept)
            await db.programmes.update_one({"_id": p["programme_id"], "form": {"$exists": False}},
                                           {"$set": {"form": p["form"]}})
    for p in catalogue:
        await add_to_segments(db, p)


def _programme(d: dict) -> dict:
    return {"programme_id": d["_id"], **{k: v for k, v in d.items() if k not in ("_id", "_outbox", "added_by")}}


async def programmes_page(db, after: str, limit: int) -> list[dict]:
    """A page of the catalogue in programme-id order (cursor paging; the `_id` index serves range and order)."""
    return [_programme(d) async for d in db.programmes.find({"_id": {"$gt": after}}, {"_outbox": 0}).sort("_id").limit(limit)]


async def programme(db, programme_id: str) -> dict | None:
    doc = await db.programmes.find_one({"_id": programme_id}, {"_outbox": 0})
    return _programme(doc) if doc else None


async def catalogue(db) -> list[dict]:
    """The whole catalogue; only for building a segment, never on a request path."""
    return [_programme(d) async for d in db.programmes.find({}, {"_outbox": 0}).sort("_id")]


def notify_events(svc, business_id: str, owner: str | None, picked: list[dict], cause: Envelope | None) -> list[dict]:
    """R-NOT-01: one Notify per newly matching programme, with an id that never changes for the pair."""
    if not owner:
        return []
    return [svc.event(Notify(notification_id=domain.notification_id(business_id, p["programme_id"]), recipient_id=owner,
                             template="programme_recommended",
                             params={"title": p["name"], "url": f"/programmes/{p['programme_id']}",
                                     "business_id": business_id, "programme_id": p["programme_id"]}),
                      cause=cause) for p in picked]


# --- what requests read, cached per replica ---------------------------------------------------------------------
# Segments, peer groups and programme counts are shared by thousands of businesses and change by small steps; a
# request reads them from a few seconds' cache (decoding a sketch of hundreds of buckets costs the local server more
# than the lookup), so a recommendation or a diagnosis costs one lookup of the business's own profile. An entry older
# than CACHE_SECONDS is still served while ONE background read renews it (stale-while-revalidate), so no request
# waits on a renewal; only an entry older than STALE_SECONDS (the database away, say) is read in the request again.
STALE_SECONDS = 60.0
_cache: dict[tuple, tuple[float, object]] = {}
_renewing: dict[tuple, asyncio.Task] = {}


def _keep(k: tuple, value, now: float) -> None:
    if len(_cache) > 100_000:
        _cache.clear()
    _cache[k] = (now + CACHE_SECONDS, value)


async def _renew(k: tuple, load) -> None:
    try:
        _keep(k, await load(), time.monotonic())
    except Exception:  # noqa: BLE001 - the next request past STALE_SECONDS reads it itself and sees the error
        log.warning("cache renewal failed", extra={"fields": {"key": list(k)}}, exc_info=True)
    finally:
        _renewing.pop(k, None)


async def cached(db, kind: str, key: str, load):
    now = time.monotonic()
    k = (db.name, kind, key)
    hit = _cache.get(k)
    if hit and hit[0] > now:
        return hit[1]
    if hit and hit[0] + STALE_SECONDS - CACHE_SECONDS > now:
        if k not in _renewing:
            _renewing[k] = asyncio.create_task(_renew(k, load))
        return hit[1]
    value = await load()
    _keep(k, value, now)
    return value


async def segment_for_request(db, seg: str) -> dict:
    return await cached(db, "segment", seg, lambda: segment(db, seg))


async def peer_group_for_request(db, group: str | None) -> dict:
    async def load() -> dict:  # its size and its sketch ranked once for every request the cache serves
        doc = await db.peer_groups.find_one({"_id": group}, {"sketch": 1, "n": 1}) or {}
        return {"n": doc.get("n"), "ranked": diagnosis.rank_sketch(doc.get("sketch") or {})}
    return await cached(db, "peers", str(group), load)


async def industry_peers_for_request(db, industry: str | None) -> dict:
    return await cached(db, "industry", str(industry),
                        lambda: db.industry_peers.find_one({"_id": industry}, {"sketch": 1, "n": 1}))


# --- segments ------------------------------------------------------------------------------------------------
def member_chunk(seg: str, business_id: str) -> str:
    return f"{seg}#{zlib.crc32(business_id.encode()) % MEMBER_CHUNKS:02d}"


def segment_of(profile: dict) -> str:
    return profile.get("segment") or domain.segment(profile["industry"], domain.size_class(
        profile["industry"], profile["employees"]), profile["prefecture"])


async def segment(db, seg: str) -> dict:
    """The segment's candidates; a segment seen for the first time is built from the catalogue once."""
    doc = await db.segments.find_one({"_id": seg})
    if doc is None:
        cands = domain.segment_candidates(await catalogue(db), seg)
        try:
            await db.segments.update_one({"_id": seg}, {"$setOnInsert": {
                "candidates": cands, "candidate_ids": [p["programme_id"] for p in cands]}}, upsert=True)
        except DuplicateKeyError:
            pass  # built at the same moment by another consumer
        await _catch_up(db, seg)
        doc = await db.segments.find_one({"_id": seg})
    # FerretDB 1.24 stores no field for an empty array set by an upsert's $setOnInsert (a segment nothing fits)
    return {"candidates": [], "candidate_ids": [], **doc}


async def _catch_up(db, seg: str) -> None:
    """A programme added while a segment was being built found no such segment to join (`add_to_segments` goes
    through the segments there are), so once the segment exists the catalogue is read again and what it missed joins
    it, guarded as in `add_to_segments`; the segments' version moves so every replica's cache renews. (A programme is
    in the catalogue before its ProgrammeAdded is consumed: one added after this read finds the segment.)"""
    doc = await db.segments.find_one({"_id": seg}, {"candidate_ids": 1}) or {}
    have = set(doc.get("candidate_ids") or ())
    missed = [p for p in domain.segment_candidates(await catalogue(db), seg) if p["programme_id"] not in have]
    if missed:
        await db.segments.bulk_write([_join(seg, p) for p in missed], ordered=True)
        await _bump_segments_version(db)


def _join(seg: str, programme: dict) -> UpdateOne:
    """The programme becomes a candidate of the segment, unless it already is (a redelivery or a concurrent join)."""
    return UpdateOne({"_id": seg, "candidate_ids": {"$ne": programme["programme_id"]}},
                     {"$push": {"candidates": programme, "candidate_ids": programme["programme_id"]}})


async def _bump_segments_version(db) -> None:
    """Called after programmes joined segments: every replica's cached candidates are stale from now on."""
    await db.catalogue_state.update_one({"_id": "segments"}, {"$inc": {"v": 1}}, upsert=True)


_candidates: dict[tuple, tuple[int, tuple, list[dict]]] = {}  # (database, segment) -> (version, ids, candidates)


async def segments_version(db) -> int:
    """How many times programmes were added to segments (`catalogue_state` {_id: "segments", v}); `add_to_segments`
    bumps it after its writes, so a replica whose cached candidates carry the current version has them all."""
    return ((await db.catalogue_state.find_one({"_id": "segments"}, {"v": 1})) or {}).get("v", 0)


async def segments_candidates(db, segs: list[str]) -> dict[str, list[dict]]:
    """Each segment's candidates as of now for learning profiles (a programme added a moment ago is pushed): kept per
    replica with the segments' version they were read at. While the version stays, a batch costs one small read;
    when it moved, the candidate ids of the batch's segments are read (one `_id $in`), and a segment whose ids
    changed, or not built yet, is read whole. The version is read before the ids, so ids cached are never older
    than the version they are filed under."""
    v = await segments_version(db)
    stale = [seg for seg in segs if (_candidates.get((db.name, seg)) or (None,))[0] != v]
    ids = {}
    for i in range(0, len(stale), 500):
        ids.update({d["_id"]: tuple(d.get("candidate_ids") or ())
                    async for d in db.segments.find({"_id": {"$in": stale[i:i + 500]}}, {"candidate_ids": 1})})
    for seg in stale:
        hit = _candidates.get((db.name, seg))
        if hit and seg in ids and hit[1] == ids[seg]:
            _candidates[(db.name, seg)] = (v, hit[1], hit[2])
            continue
        if len(_candidates) > 100_000:
            _candidates.clear()
        full = await segment(db, seg)
        _candidates[(db.name, seg)] = (v, tuple(full["candidate_ids"]), full["candidates"])
    return {seg: _candidates[(db.name, seg)][2] for seg in segs}


async def add_to_segments(db, programme: dict) -> list[str]:
    """A programme becomes a candidate of every segment it is eligible in (idempotent); returns those segments.
    Reads the `segments` collection whole: it holds one document per segment seen (a few thousand at most)."""
    ops, segs = [], []
    async for s in db.segments.find({}, {"candidate_ids": 1}):
        if domain.segment_candidates([programme], s["_id"]):
            segs.append(s["_id"])
            if programme["programme_id"] in s.get("candidate_ids", []):
                continue  # already there (a redelivery, or a restart seeding the catalogue again)
            ops.append(_join(s["_id"], programme))
    for i in range(0, len(ops), BULK):
        await db.segments.bulk_write(ops[i:i + BULK], ordered=False)
    if ops:  # after the writes: a learner that sees the new version reads the new ids
        await _bump_segments_version(db)
    return segs


# --- profiles --------------------------------------------------------------------------------------------------
PROFILE_FIELDS = {"notified": 1, "owner": 1, "_seen": 1, "segment": 1, "peer_group": 1, "indicators": 1,
                  "employees": 1, "financials": 1, "industry_group": 1, "bench_values": 1, "pend": 1}
_closing: dict[tuple[str, str, str], set[str]] = {}  # (database, collection, group) -> ops to drop from `open`


async def learn_profile(svc, business_id: str, profile: dict, owner: str | None, env: Envelope) -> bool:
    """One event: a batch of one (the same protocol, see `learn_profiles`); False for an event already learnt."""
    return await learn_profiles(svc, [(business_id, profile, owner, env)]) == 1


async def learn_profiles(svc, items: list[tuple[str, dict, str | None, Envelope]]) -> int:
    """Learns a batch of profile events [(business, profile, owner, envelope)] in order; returns how many were new.

    Per batch: the profiles are read with one `_id $in` per 500 businesses, the segments' candidates from the
    replica's cache while the segments' version stays (`segments_candidates`), each business's new events are folded
    in order
    (`learning.fold`), and the writes are:
    1. the segment index, one update per chunk document (`$set`/`$unset`, idempotent);
    2. the profiles, ONE bulk write, one statement per business, guarded by its event ids (`_seen`, per business):
       the new state, the Notify events of new pushes (outbox), and `pend` = {op, contributions}: the sketch deltas
       this business owes its peer groups, tagged with this call's op id (a fresh uuid);
    3. the sketches, ONE bulk write per collection (`peer_groups`, `industry_peers`), one `$inc` per group document
       with the deltas of the whole batch merged, guarded by the op id: filter `open.<op>` absent, `$set open.<op>`;
    4. the profiles' `pend` cleared (one statement per 100 profiles, `_id $in` and guarded by the op id);
    5. the op id is dropped from each group's `open` with that group's next write by this process (only after 4:
       while a profile still holds `pend` of an op, that op stays in `open` of every group it was applied to).
    So a group's `open` holds the ops in flight, never a growing list of event ids (the old `_seen` of up to 500 ids
    per shared document, rewritten by every event), and the dedupe is exact, with no window:
    - a crash before 2: nothing happened; the redelivery does it all.
    - a crash after 2 (before or during 3): the redelivered events are in `_seen`, but the profile still holds
      `pend` of op P. Before anything else, every pending contribution is looked up in its group: P in `open` ->
      applied, dropped; P absent -> not applied (P leaves `open` only after every `pend` of P was cleared), so it is
      carried into this call's merged deltas and this call's `pend`. A profile whose events come in a later poll is
      recovered when they come.
    - a crash after 3, before 4: every `pend` of P is found applied and dropped. After 4 only P stays in `open`
      (one 32-character key per crash, dropped by nothing; harmless).
    - a statement of 2 that fails (a duplicate upsert: the profile was written meanwhile) writes no `pend` and its
      deltas are left out of 3; any other failure raises before 3, and the consumer applies the batch again message
      by message through `learn_profile`, which recovers the written profiles' `pend` as above.
    Assumes, as the consumer does, that one business's events are applied by one consumer at a time (one key, one
    partition)."""
    db = svc.db
    by_business: dict[str, list] = {}
    for business_id, profile, owner, env in items:
        by_business.setdefault(business_id, []).append((profile, owner, env))
    ids = list(by_business)
    docs: dict[str, dict | None] = dict.fromkeys(ids)
    for i in range(0, len(ids), 500):
        docs.update({d["_id"]: d async for d in db.business_profiles.find({"_id": {"$in": ids[i:i + 500]}},
                                                                           PROFILE_FIELDS)})
    # the segments the events land in (read once each), and the groups holding ops of pending contributions
    segs = sorted({segment_of(p) for evs in by_business.values() for p, _, _ in evs})
    candidates = await segments_candidates(db, segs)
    pending = {(c["c"], c["g"], (d["pend"])["op"]) for d in docs.values() if d and d.get("pend")
               for c in d["pend"]["contributions"]}
    applied = dict(zip(pending, await asyncio.gather(*(db[c].find_one({"_id": g, f"open.{op}": {"$exists": True}},
                                                                      {"_id": 1}) for c, g, op in pending))))
    op = uuid.uuid4().hex
    plans, new = [], 0
    for b in ids:
        old = docs[b] or {}
        seen = set(old.get("_seen") or [])
        events = []
        for profile, owner, env in by_business[b]:
            if env.event_id not in seen:
                seen.add(env.event_id)
                events.append((profile, owner, env))
        carried = []
        if old.get("pend"):
            carried = [c for c in old["pend"]["contributions"]
                       if applied[(c["c"], c["g"], old["pend"]["op"])] is None]
        if not events and not old.get("pend"):
            continue
        folded = learning.fold(old, [(p, o) for p, o, _ in events], candidates)
        new += len(events)
        plans.append((b, old, events, folded, carried + folded.moves))

    await _segment_index(db, plans)
    written = await _write_profiles(svc, plans, op)
    contributions = [c for b, _, _, _, cs in plans if b in written for c in cs]
    if contributions:
        await _apply_to_groups(db, learning.merge(contributions), op)
        owing = [b for b, _, _, _, cs in plans if b in written and cs]
        for i in range(0, len(owing), 100):  # one statement per 100 profiles (the local server's cost is per statement)
            await db.business_profiles.update_many({"_id": {"$in": owing[i:i + 100]}, "pend.op": op},
                                                   {"$unset": {"pend": ""}})
        for c, g in {(c["c"], c["g"]) for c in contributions}:
            _closing.setdefault((db.name, c, g), set()).add(op)
    return new


async def _segment_index(db, plans) -> None:
    """The segment index of a batch: the business is found through its segment when a programme is added."""
    chunks: dict[str, dict] = {}
    for b, old, events, folded, _ in plans:
        if not events:
            continue
        if old.get("segment") and old["segment"] != folded.segment:
            chunks.setdefault(member_chunk(old["segment"], b), {"$set": {}, "$unset": {}})["$unset"][f"m.{b}"] = ""
        chunks.setdefault(member_chunk(folded.segment, b), {"$set": {}, "$unset": {}})["$set"][f"m.{b}"] = folded.owner
    statements = [{"q": {"_id": k}, "u": {op: v for op, v in u.items() if v}, "upsert": True}
                  for k, u in sorted(chunks.items())]

    async def again(st: dict) -> None:  # lost the race to create the chunk: it exists now
        await db.segment_members.update_one(st["q"], st["u"], upsert=True)
    await _update_in_order(db.segment_members, statements, again)


async def _write_profiles(svc, plans, op: str) -> set[str]:
    """Step 2: one statement per business; returns the businesses whose statement was applied (those with
    contributions now hold `pend` of `op`)."""
    db, statements, who = svc.db, [], []
    for b, old, events, folded, contributions in plans:
        filt: dict = {"_id": b}
        update: dict = {}
        if events:
            filt["_seen"] = {"$nin": [env.event_id for _, _, env in events]}
            update["$set"] = dict(folded.set)
            update["$push"] = {"_seen": {"$each": [env.event_id for _, _, env in events], "$slice": -50}}
            if folded.notified:
                update["$addToSet"] = {"notified": {"$each": folded.notified}}
        filt["pend.op" if old.get("pend") else "pend"] = old["pend"]["op"] if old.get("pend") else {"$exists": False}
        if contributions:
            update.setdefault("$set", {})["pend"] = {"op": op, "contributions": contributions}
        else:
            update["$unset"] = {"pend": ""}
        outbox = [e for i, p in folded.pushes
                  for e in notify_events(svc, b, folded.owner, [p], events[i][2])]
        statements.append({"q": filt, "u": with_outbox(update, outbox), "upsert": not old})
        who.append((b, outbox))
    refused: set[int] = set()

    async def refuse(st: dict) -> None:  # a new business written meanwhile (by another consumer): not ours
        refused.add(next(i for i, s in enumerate(statements) if s is st))
    matched = await _update_in_order(db.business_profiles, statements, refuse)
    every = matched == len(statements) - len(refused)
    for i, (b, outbox) in enumerate(who):
        if outbox and i not in refused:
            # When every statement was applied, its entries are handed over, not read back: the relay publishes them
            # and pulls exactly them. Other entries the profile may hold (a programme's push) are kicked by their own
            # write; the order of two Notify of different programmes does not matter (each is its own inbox item).
            # Otherwise the relay reads the document: an entry whose statement matched nothing was never stored.
            svc.relay.kick(db.business_profiles, b, outbox if every else None)
    if every:
        return {b for i, (b, _) in enumerate(who) if i not in refused}
    # a guard did not match (or the server did not say): which profiles hold this op's `pend`, read back
    docs = await asyncio.gather(*(db.business_profiles.find_one({"_id": b, "pend.op": op}, {"_id": 1}) for b, _ in who))
    return {d["_id"] for d in docs if d}


async def _apply_to_groups(db, merged: dict[tuple[str, str], dict], op: str) -> None:
    """Step 3: one `$inc` per group document of the batch, applied once per op id."""
    for collection in learning.GROUPS:
        statements = []
        for (c, g), inc in sorted(merged.items()):
            if c != collection:
                continue
            update: dict = {"$set": {f"open.{op}": 1}}
            if inc:
                update["$inc"] = inc
            done = _closing.pop((db.name, c, g), set())
            if done:
                update["$unset"] = {f"open.{x}": "" for x in sorted(done)}
            statements.append({"q": {"_id": g, f"open.{op}": {"$exists": False}}, "u": update, "upsert": True})

        async def again(st: dict, col=db[collection]) -> None:
            # a duplicate: the group was created meanwhile by another consumer (or already has this op)
            while not await col.find_one({**st["q"], f"open.{op}": {"$exists": True}}, {"_id": 1}):
                try:
                    await col.update_one(st["q"], st["u"], upsert=True)
                except DuplicateKeyError:
                    continue
        await _update_in_order(db[collection], statements, again)


async def _update_in_order(col, statements: list[dict], on_duplicate) -> int | None:
    """Sends update statements ({q, u, upsert}) as ordered `update` commands of up to BULK statements. A statement
    refused as a duplicate key goes to `on_duplicate(statement)` and the ones after it are sent again (FerretDB
    stops a command at its first error, ordered or not, and then reports no counts). Returns how many statements
    matched or upserted, or None when a command with an error left that unknown. Any other error is raised."""
    n: int | None = 0
    start = 0
    while start < len(statements):
        part = statements[start:start + BULK]
        res = await col.database.command({"update": col.name, "updates": part, "ordered": True})
        errors = res.get("writeErrors") or []
        if not errors:
            n = None if n is None or "n" not in res else n + res["n"]
            start += len(part)
            continue
        first = min(errors, key=lambda e: e["index"])
        if first.get("code") != 11000 or on_duplicate is None:
            raise OperationFailure(first.get("errmsg", "write error"), first.get("code"), res)
        n = None
        await on_duplicate(statements[start + first["index"]])
        start += first["index"] + 1
    return n


async def push_programme(svc, programme: dict, env: Envelope) -> int:
    """R-NOT-01: a new programme becomes a candidate of its segments and is pushed to every business of the
    segments it matches well enough that has not had it yet: found through the segment index, written in bulk
    (one guarded update per business: a redelivery notifies nobody twice)."""
    db, pid, n = svc.db, programme["programme_id"], 0
    for seg in await add_to_segments(db, programme):
        if not domain.segment_pushes(programme, seg):
            continue
        for chunk in range(MEMBER_CHUNKS):
            doc = await db.segment_members.find_one({"_id": f"{seg}#{chunk:02d}"})
            members = sorted((doc or {}).get("m", {}).items())
            for i in range(0, len(members), BULK):
                part = members[i:i + BULK]
                ops = [UpdateOne({"_id": b, "notified": {"$ne": pid}},
                                 with_outbox({"$addToSet": {"notified": pid}},
                                             notify_events(svc, b, owner, [programme], env))) for b, owner in part]
                res = await db.business_profiles.bulk_write(ops, ordered=False)
                n += res.modified_count
                for b, _ in part:
                    svc.relay.kick(db.business_profiles, b)
    return n


# --- interactions ----------------------------------------------------------------------------------------------
async def count_interaction(db, event_id: str, business_id: str, programme_id: str, kind: str,
                            before: list[str], new_programme: bool, cell: str) -> None:
    """R-REC-02 / R-REC-05 kept by events: item-item counts and uptake counters, each document changed once per
    event (`apply_once`), so a redelivered event counts nothing twice."""
    incs = domain.co_count_increments(set(before), programme_id) if new_programme else {}
    if kind == "used":
        incs.setdefault(programme_id, {})[f"uptake.{cell}"] = 1
    for pid, inc in incs.items():
        await apply_once(db.programme_stats, pid, event_id, {"$inc": inc})


async def programme_stats(db, ids: list[str]) -> dict[str, dict]:
    """The counts documents of the given programmes (one `_id` lookup each; a business uses a handful)."""
    out = {}
    for pid in ids:
        doc = await cached(db, "stats", pid, lambda pid=pid: db.programme_stats.find_one({"_id": pid}, {"users": 1, "co": 1}))
        if doc:
            out[pid] = doc
    return out


async def stats_page(db, after: str, limit: int) -> list[dict]:
    """Uptake counters of a page of programmes, in programme-id order."""
    return [{"programme_id": d["_id"], "uptake": d.get("uptake") or {}}
            async for d in db.programme_stats.find({"_id": {"$gt": after}}, {"uptake": 1}).sort("_id").limit(limit)]


# --- the community's needs and offers, as a read model kept by community.events (R-POR-03 with R-REC-01) ------------
POSTING_FACETS = ("region", "industry")


def posting_index_ids(posting: dict) -> list[str]:
    """`<facet>=<value>|<newest first key>|<id>`: a business's candidates are one `_id` range per facet."""
    return [f"{f}={posting[f]}|{posting['key']}|{posting['_id']}" for f in POSTING_FACETS if posting.get(f)]


async def learn_posting(db, posting: dict) -> None:
    """Idempotent: a redelivered PostingPublished finds its document and index entries there already."""
    try:
        await db.postings.insert_one(posting)
    except DuplicateKeyError:
        posting = await db.postings.find_one({"_id": posting["_id"]}) or posting
        if posting.get("status") != "open":
            return  # closed meanwhile: not listed again
    for i in posting_index_ids(posting):
        try:
            await db.posting_index.insert_one({"_id": i, "posting_id": posting["_id"]})
        except DuplicateKeyError:
            pass


async def close_posting(db, posting_id: str) -> None:
    doc = await db.postings.find_one_and_update({"_id": posting_id}, {"$set": {"status": "closed"}})
    if doc is not None:
        await db.posting_index.delete_many({"_id": {"$in": posting_index_ids(doc)}})


async def posting_candidates(db, profile: dict, per_facet: int = 50) -> list[dict]:
    """The newest open postings of the business's prefecture and of its industry: two `_id` ranges and one read by
    `_id`s, never a scan."""
    ids: list[str] = []
    for facet, value in (("region", profile.get("prefecture")), ("industry", profile.get("industry"))):
        if not value:
            continue
        prefix = f"{facet}={value}|"
        async for e in db.posting_index.find({"_id": {"$gt": prefix, "$lt": prefix + "~"}}).sort("_id", 1).limit(
                per_facet):
            ids.append(e["posting_id"])
    if not ids:
        return []
    return [d async for d in db.postings.find({"_id": {"$in": sorted(set(ids))}})]

"""MongoDB access of the recommend service: catalogue seeding, push bookkeeping (R-NOT-01) and the read models
kept by events (R-OPS-03), so no request reads a whole collection.

Collections (every request-path read is a lookup by `_id`, the one index every MongoDB-wire server uses):
- `business_profiles` {_id: business}: attributes, `segment`, `indicators`, `items` (programmes used or
  favoured), `uses` ("<programme>:<kind>"), `notified`, `owner`.
- `segments` {_id: "<industry>|<size>|<prefecture>"}: the catalogue's programmes a business of the segment may
  be recommended (`candidates`, with `candidate_ids` flat for `$ne` guards); kept when a programme is added.
- `segment_members` {_id: "<segment>#<chunk>"}: the segment index, `m: {business: owner}` in MEMBER_CHUNKS
  chunks per segment, so a new programme reaches its businesses by reading a few documents, not every profile.
- `peer_groups` {_id: "<industry>|<size>"}: per-indicator quantile sketches (diagnosis.py) and the member count.
- `industry_peers` {_id: industry}: the six local-benchmark indicators' sketches of the industry's businesses
  (R-REC-06: scored against peers of the same industry) and the member count.
- `programme_stats` {_id: programme}: item-item counts (`users`, `co`) and uptake counters (`uptake`).
"""
from __future__ import annotations

import time
import zlib

from pymongo import UpdateOne
from pymongo.errors import DuplicateKeyError

from contracts import Envelope
from contracts.events.notifications import Notify
from recommend_service import benchmark, diagnosis, domain
from servicekit.store import apply_once, with_outbox

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
# than the lookup), so a recommendation or a diagnosis costs one lookup of the business's own profile.
_cache: dict[tuple, tuple[float, object]] = {}


async def cached(db, kind: str, key: str, load):
    now = time.monotonic()
    hit = _cache.get((db.name, kind, key))
    if hit and hit[0] > now:
        return hit[1]
    value = await load()
    if len(_cache) > 100_000:
        _cache.clear()
    _cache[(db.name, kind, key)] = (now + CACHE_SECONDS, value)
    return value


async def segment_for_request(db, seg: str) -> dict:
    return await cached(db, "segment", seg, lambda: segment(db, seg))


async def peer_group_for_request(db, group: str | None) -> dict:
    return await cached(db, "peers", str(group), lambda: db.peer_groups.find_one({"_id": group}, {"sketch": 1, "n": 1}))


async def industry_peers_for_request(db, industry: str | None) -> dict:
    return await cached(db, "industry", str(industry),
                        lambda: db.industry_peers.find_one({"_id": industry}, {"sketch": 1, "n": 1}))


def _sketch_moves(old_group: str | None, old_values: dict | None, group: str, values: dict,
                  keys: tuple[str, ...]) -> dict[str, dict]:
    """The `$inc` per group document that moves one business's figures out of its old group's sketch and into the
    new one's (one document when the group is the same; unchanged figures cancel out)."""
    moves: dict[str, dict] = {}
    if old_group:
        moves[old_group] = {**{f"sketch.{k}": n for k, n in diagnosis.sketch_delta(old_values, None, keys).items()},
                            "n": -1}
    inc = moves.setdefault(group, {})
    for k, n in {**{f"sketch.{k}": n for k, n in diagnosis.sketch_delta(None, values, keys).items()}, "n": 1}.items():
        inc[k] = inc.get(k, 0) + n
    return {g: {k: n for k, n in inc.items() if n} for g, inc in moves.items()}


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
        doc = await db.segments.find_one({"_id": seg})
    # FerretDB 1.24 stores no field for an empty array set by an upsert's $setOnInsert (a segment nothing fits)
    return {"candidates": [], "candidate_ids": [], **doc}


async def add_to_segments(db, programme: dict) -> list[str]:
    """A programme becomes a candidate of every segment it is eligible in (idempotent); returns those segments.
    Reads the `segments` collection whole: it holds one document per segment seen (a few thousand at most)."""
    ops, segs = [], []
    async for s in db.segments.find({}, {"candidate_ids": 1}):
        if domain.segment_candidates([programme], s["_id"]):
            segs.append(s["_id"])
            if programme["programme_id"] in s.get("candidate_ids", []):
                continue  # already there (a redelivery, or a restart seeding the catalogue again)
            ops.append(UpdateOne({"_id": s["_id"], "candidate_ids": {"$ne": programme["programme_id"]}},
                                 {"$push": {"candidates": programme, "candidate_ids": programme["programme_id"]}}))
    for i in range(0, len(ops), BULK):
        await db.segments.bulk_write(ops[i:i + BULK], ordered=False)
    return segs


# --- profiles --------------------------------------------------------------------------------------------------
async def learn_profile(svc, business_id: str, profile: dict, owner: str | None, env: Envelope) -> bool:
    """Stores the profile, keeps the segment index and the peer sketch, and pushes the programmes that now match and
    were never pushed. The profile write (guarded by the event id) comes last: a redelivery after a crash redoes
    the read-model steps, each idempotent on its own (`$set`/`$unset`, or `apply_once` with the same event id)."""
    db = svc.db
    old = await db.business_profiles.find_one({"_id": business_id}, {
        "notified": 1, "owner": 1, "_seen": 1, "segment": 1, "peer_group": 1, "indicators": 1, "employees": 1,
        "financials": 1, "industry_group": 1, "bench_values": 1})
    if old and env.event_id in (old.get("_seen") or []):
        return False
    old = old or {}
    owner = old.get("owner") or owner
    size = domain.size_class(profile["industry"], profile["employees"])
    seg = domain.segment(profile["industry"], size, profile["prefecture"])
    group = domain.peer_group(profile["industry"], size)
    financials = profile["financials"] if "financials" in profile else (old.get("financials") or [])
    indicators = diagnosis.indicators(financials, profile["employees"])
    bench_values = benchmark.values(financials, profile["employees"])

    # the segment index: the business is found through its segment when a programme is added
    if old.get("segment") and old["segment"] != seg:
        await db.segment_members.update_one({"_id": member_chunk(old["segment"], business_id)},
                                            {"$unset": {f"m.{business_id}": ""}})
    await db.segment_members.update_one({"_id": member_chunk(seg, business_id)},
                                        {"$set": {f"m.{business_id}": owner}}, upsert=True)
    # the peer sketch: leave the old group, join the new one (one document if the group is the same)
    old_ind = old.get("indicators") if old.get("peer_group") else None
    moves = {}
    if old.get("peer_group"):
        moves[old["peer_group"]] = {"$inc": {**{f"sketch.{k}": n for k, n in diagnosis.sketch_delta(old_ind, None).items()},
                                             "n": -1}}
    join = {**{f"sketch.{k}": n for k, n in diagnosis.sketch_delta(None, indicators).items()}, "n": 1}
    if group in moves:
        inc = moves[group]["$inc"]
        for k, n in join.items():
            inc[k] = inc.get(k, 0) + n
        moves[group] = {"$inc": {k: n for k, n in inc.items() if n}}
    else:
        moves[group] = {"$inc": join}
    for g, update in moves.items():
        if update["$inc"]:
            await apply_once(db.peer_groups, g, env.event_id, update)

    # R-REC-06: the industry's sketch of the six local-benchmark indicators, kept the same way
    for g, inc in _sketch_moves(old.get("industry_group"), old.get("bench_values"), profile["industry"], bench_values,
                                benchmark.KEYS).items():
        if inc:
            await apply_once(db.industry_peers, g, env.event_id, {"$inc": inc})

    cands = (await segment(db, seg))["candidates"]
    ids = set(domain.to_push(cands, {**profile, "size": size}, set(old.get("notified") or [])))
    picked = [p for p in cands if p["programme_id"] in ids] if owner else []
    update = {"$set": {**profile, "owner": owner, "size": size, "segment": seg, "peer_group": group,
                       "indicators": indicators, "industry_group": profile["industry"], "bench_values": bench_values},
              "$push": {"_seen": {"$each": [env.event_id], "$slice": -50}}}
    if picked:
        update["$addToSet"] = {"notified": {"$each": [p["programme_id"] for p in picked]}}
    try:
        res = await svc.write(db.business_profiles, {"_id": business_id, "_seen": {"$ne": env.event_id}}, update,
                              events=notify_events(svc, business_id, owner, picked, env), upsert=True)
    except DuplicateKeyError:
        return False
    return res.matched_count == 1 or res.upserted_id is not None


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

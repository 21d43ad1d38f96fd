"""Counters of the EBPM reports (R-REC-07) kept by dispatch's own events and writes, so a report reads O(cells)
instead of its scope's rows (R-OPS-03). Rules and cell layout in `domain.ebpm`. Every read and write here is by `_id`
(on FerretDB any other query scans the collection).

`ebpm_counters`: one document per report × grouping × scope (`domain.ebpm.counter_doc`), its cells inside
(`cells.<fiscal year|block|industry>`: the dimension values, `n` distinct businesses, `k_hi`/`k_lo` the sums of their
record keys' halves, `s.<measure>` each measure's total). `ebpm_businesses`: one document per business holding a copy
of its rows the reports need (`rows.d` its dispatches as the worklist has them, paid or not; `rows.c` its web
consultations; `rows.s` its outcome surveys) and what it adds to each cell (`cells`: the cell and its values), so a
business counts once per cell however many records or redeliveries it has.

Maintenance is a *recount* of one business: its contributions are computed from its rows' copy, compared with what it
added so far, and each counter document moved by the difference. Recounting is idempotent — a second recount finds
nothing to move — so every trigger may repeat: a dispatch status event (its worklist document copied), a business's
industry or a platform's block learnt from identity, a web consultation opened, an outcome survey scheduled or answered
(copied by `outcomes.tally`, which leaves the survey pending until this is done). One recount changes the counters
once, without transactions: (1) claimed on the business's document (`rev` compare-and-set; the changes and an op id
kept in `pending`), (2) each counter document moved, guarded by the op id in its `_seen`, (3) the business's document
takes the new contributions, (4) the op id leaves `_seen`. A claim left by a crash (older than `stale_claim`) is
finished by the next recount of the business.

Whoever triggers a recount records the business in `ebpm_dirty` (a revision) before and again after copying its rows;
the recount removes it only if no newer trigger came, so a trigger whose copy a recount may not have seen is never
cleared, and the sweep recounts whatever is left (a crash, a busy business). A batch of dispatch events marks only the
businesses it could not count (Kafka redelivers the batch after a crash). A mark that says `refresh` (a web
consultation whose copy may not have been written) first copies the business's rows again from the sources.
At start-up, a database with rows but no counters yet copies every business's rows once (marker `ebpm-counters:v1`
in `migrations`) and marks them; the sweep counts them.

Only count measures are kept (dispatch's reports have no amounts).
"""
from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from bson import Int64
from pymongo import ReturnDocument, UpdateOne
from pymongo.errors import DuplicateKeyError

from dispatch_service import sweeps
from dispatch_service.domain.ebpm import (MEASURES, UNKNOWN, business_contributions, cell_field, counter_doc, delta,
                                          field, plan, report_status)
from servicekit import ebpm

log = logging.getLogger("dispatch.ebpm")
MARKER = "ebpm-counters:v1"
DISPATCH_FIELDS = ("fiscal_year", "platform_id", "status", "institution_id")
SURVEY_FIELDS = ("dispatch_id", "fiscal_year", "block", "answered_at", "results")


def _now() -> datetime:
    return datetime.now(UTC)


def _utc(v: datetime) -> datetime:
    return v if v.tzinfo else v.replace(tzinfo=UTC)


def dispatch_row(d: dict) -> dict:
    """A dispatch's row as the reports need it: its status only as paid or not (`report_status`), so a status event
    between two unpaid steps copies a row equal to the stored one (the server writes nothing) and moves no counter."""
    return {"id": d["_id"], **{k: d.get(k) for k in DISPATCH_FIELDS}, "status": report_status(d.get("status"))}


def survey_row(s: dict) -> dict:
    return {"id": s["_id"], **{k: s.get(k) for k in SURVEY_FIELDS}}


class Counters:
    def __init__(self, db, params):
        """`params`: an async callable giving the `ebpm.Params` (the record keys' secret, kept in the database)."""
        self.db, self.params = db, params
        self.counters, self.businesses, self.dirty = db.ebpm_counters, db.ebpm_businesses, db.ebpm_dirty
        self.stale_claim = timedelta(minutes=5)

    async def setup(self) -> None:
        await self.dirty.create_index("at")
        await self.backfill()

    async def backfill(self) -> int:
        """Once per database, before the consumers start: every business's rows copied (one pass over each source) and
        the business marked for counting (the sweep counts it). A business another replica's trigger already copied is
        marked to be copied again from its sources instead (the pass may have read an older state)."""
        if await self.db.migrations.find_one({"_id": MARKER}, {"_id": 1}):
            return 0
        rows: dict[str, dict] = defaultdict(dict)
        async for d in self.db.worklist.find({}, {"business_id": 1, **dict.fromkeys(DISPATCH_FIELDS, 1)}):
            rows[d["business_id"]][f"rows.d.{field(d['_id'])}"] = dispatch_row(d)
        async for c in self.db.consultations.find({}, {"business_id": 1, "created_at": 1}):
            rows[c["business_id"]][f"rows.c.{field(c['_id'])}"] = c["created_at"]
        async for s in self.db.outcome_surveys.find({}, {"business_id": 1, **dict.fromkeys(SURVEY_FIELDS, 1)}):
            rows[s["business_id"]][f"rows.s.{field(s['_id'])}"] = survey_row(s)
        for bid, sets in rows.items():
            doc: dict = {"_id": bid, "rows": {"d": {}, "c": {}, "s": {}}}
            for path, v in sets.items():
                _, part, k = path.split(".", 2)
                doc["rows"][part][k] = v
            try:
                await self.businesses.insert_one(doc)
                await self.mark(bid)
            except DuplicateKeyError:  # a trigger (another replica) was first: copy its rows again from the sources
                await self.mark(bid, refresh=True)
        await self.db.migrations.update_one({"_id": MARKER}, {"$set": {"businesses": len(rows), "at": _now()}},
                                            upsert=True)
        return len(rows)

    # --- triggers ---------------------------------------------------------------------------------------------
    async def mark(self, business_id: str, *, refresh: bool = False) -> int:
        sets = {"at": _now(), **({"refresh": True} if refresh else {})}
        doc = await self.dirty.find_one_and_update({"_id": business_id}, {"$inc": {"rev": 1}, "$set": sets},
                                                   upsert=True, return_document=ReturnDocument.AFTER)
        return doc["rev"]

    async def touch(self, business_id: str, rows: dict | None = None) -> bool:
        """Marks the business, copies `rows` ({"rows.d.<id>": …}) into its document, recounts it, and clears the mark
        unless a newer trigger came meanwhile. False: left to the sweep."""
        rev = await self.mark(business_id)  # first: a crash after the copy leaves the business marked
        if rows:
            await self.businesses.update_one({"_id": business_id}, {"$set": rows}, upsert=True)
            # and again after the copy: a recount that clears a mark read the business after every copy marked before
            # it, and a trigger whose copy landed later marks a newer revision, so its mark is never cleared unseen
            rev = await self.mark(business_id)
        return await self.recount_marked(business_id, rev)

    async def recount_marked(self, business_id: str, rev: int) -> bool:
        if done := await self.recount(business_id):
            await self.dirty.delete_one({"_id": business_id, "rev": rev})
        return done

    async def on_dispatch(self, env, e) -> None:
        d = await self.db.worklist.find_one({"_id": e.dispatch_id}, dict.fromkeys(DISPATCH_FIELDS, 1))
        if d is not None:
            await self.touch(e.business_id, {f"rows.d.{field(e.dispatch_id)}": dispatch_row(d)})

    async def on_dispatches(self, items) -> None:
        """A batch of status events: each business's dispatch rows read from the worklist (one `_id: {$in}`), and every
        business of the batch recounted together (each counter document moved once for the batch), however many of its
        dispatches moved, and however often, in the batch. The businesses' documents are read first: a business whose
        rows and counts are already as the worklist says is not written at all (most status events: a row changes
        only when its dispatch is paid, `dispatch_row`), and a changed row is copied by the recount's own claim (one
        compare-and-set write: rows and claim together). A business whose claim is lost, or whose recount another is
        doing, has its rows copied and is marked for the sweep."""
        by_business: dict[str, dict[str, None]] = {}
        for _, e in items:
            by_business.setdefault(e.business_id, {})[e.dispatch_id] = None
        ids = [d for ds in by_business.values() for d in ds]
        docs = {d["_id"]: d async for d in self.db.worklist.find({"_id": {"$in": ids}}, dict.fromkeys(DISPATCH_FIELDS, 1))}
        rows = {bid: {field(d): dispatch_row(docs[d]) for d in ds if d in docs} for bid, ds in by_business.items()}
        rows = {bid: r for bid, r in rows.items() if r}
        if not rows:
            return
        # No mark first (unlike `touch`): a crash before the recount is done redelivers the batch, which copies and
        # recounts again; only a business whose recount cannot be done now is marked, for the sweep.
        stored = {d["_id"]: d async for d in self.businesses.find({"_id": {"$in": list(rows)}})}
        copies: dict[str, dict] = {}   # business -> its changed rows, by path
        merged = []
        for bid, r in rows.items():
            doc = stored.get(bid) or {"_id": bid}
            have = (doc.get("rows") or {}).get("d") or {}
            copies[bid] = {f"rows.d.{k}": v for k, v in r.items() if have.get(k) != v}
            if copies[bid]:
                doc = {**doc, "rows": {**(doc.get("rows") or {}), "d": {**have, **r}}}
            merged.append(doc)
        alone = [d["_id"] for d in merged if d.get("pending")]
        fresh = [d for d in merged if not d.get("pending")]
        wants = await self.wanted(fresh) if fresh else {}
        claims, later = {}, list(alone)
        for doc in fresh:
            bid = doc["_id"]
            changes = self.changes(doc, wants[bid])
            if not changes and not copies[bid]:
                continue   # nothing to copy, nothing to count
            pend = self._pending(bid, await self.params(), changes) if changes else None
            if not await self._write(doc, copies[bid], pend):
                later.append(bid)
            elif pend is not None:
                claims[bid] = pend
        if claims:
            await self._apply(claims)
        for bid in later:   # the rows copied as they are now; counted alone, or by the sweep
            if copies[bid]:
                await self.businesses.update_one({"_id": bid}, {"$set": copies[bid], "$inc": {"rev": 1}}, upsert=True)
            if bid not in alone or not await self.recount(bid):
                await self.mark(bid)

    async def on_business(self, env, e) -> None:
        await self.touch(e.business_id)

    async def on_platform(self, env, e) -> None:
        """A platform's block learnt (or changed): its businesses' cells move (a rare event: one pass over the
        worklist)."""
        for bid in await self.db.worklist.distinct("business_id", {"platform_id": e.platform_id}):
            await self.touch(bid)

    async def on_consultation(self, doc: dict) -> bool:
        return await self.touch(doc["business_id"], {f"rows.c.{field(doc['_id'])}": doc["created_at"]})

    async def on_survey(self, s: dict) -> bool:
        return await self.touch(s["business_id"], {f"rows.s.{field(s['_id'])}": survey_row(s)})

    async def refresh(self, business_id: str) -> None:
        """The business's rows copied again from the sources (after a crash between a write and its copy)."""
        rows = {"d": {field(d["_id"]): dispatch_row(d) async for d in self.db.worklist.find(
                    {"business_id": business_id}, dict.fromkeys(DISPATCH_FIELDS, 1))},
                "c": {field(c["_id"]): c["created_at"] async for c in self.db.consultations.find(
                    {"business_id": business_id}, {"created_at": 1})},
                "s": {field(s["_id"]): survey_row(s) async for s in self.db.outcome_surveys.find(
                    {"business_id": business_id}, dict.fromkeys(SURVEY_FIELDS, 1))}}
        old = (await self.businesses.find_one({"_id": business_id}, {"rows": 1}) or {}).get("rows") or {}
        gone = {f"rows.{t}.{k}": "" for t, kept in old.items() for k in kept if k not in rows.get(t, {})}
        sets = {f"rows.{t}.{k}": v for t, part in rows.items() for k, v in part.items()}  # path by path (see _apply)
        update = {**({"$set": sets} if sets else {}), **({"$unset": gone} if gone else {})}
        if update:
            await self.businesses.update_one({"_id": business_id}, update, upsert=True)

    async def sweep(self, limit: int = 1000) -> int:
        n = 0
        async for d in self.dirty.find({}).sort("at", 1).limit(limit):
            try:
                if d.get("refresh"):
                    await self.refresh(d["_id"])
                n += await self.recount_marked(d["_id"], d["rev"])
            except Exception:
                log.warning("ebpm recount failed; retried next sweep", extra={"fields": {"business": d["_id"]}},
                            exc_info=True)
        return n

    # --- the recount ------------------------------------------------------------------------------------------
    async def wanted(self, docs: list[dict]) -> dict[str, dict[str, tuple[dict, dict]]]:
        """Each business's contributions to every counter cell, from its rows' copy (the platforms' blocks and the
        businesses' industries read once for all of `docs`)."""
        rows = {}
        for doc in docs:
            r = doc.get("rows") or {}
            rows[doc["_id"]] = ([{"_id": v["id"], **v} for v in (r.get("d") or {}).values()],
                                [{"created_at": v} for v in (r.get("c") or {}).values()],
                                [{"_id": v["id"], **v} for v in (r.get("s") or {}).values()])
        pids = sorted({d["platform_id"] for ds, _, _ in rows.values() for d in ds if d.get("platform_id")})
        block = {p["_id"]: p.get("bureau_id") async for p in self.db.platforms.find({"_id": {"$in": pids}}, {"bureau_id": 1})}
        industry = {b["_id"]: b.get("industry") async for b in self.db.businesses.find({"_id": {"$in": list(rows)}},
                                                                                      {"industry": 1})}
        out = {}
        for bid, (dispatches, consultations, surveys) in rows.items():
            blocks = {pid: block.get(pid) for pid in sorted({d.get("platform_id") for d in dispatches if d.get("platform_id")})}
            out[bid] = business_contributions(dispatches, consultations, surveys, blocks, industry.get(bid) or UNKNOWN)
        return out

    @staticmethod
    def changes(doc: dict, want: dict[str, tuple[dict, dict]]) -> list[dict]:
        """The cells whose values the business's contributions move: from what it added so far to what it adds now."""
        have = {k: c["v"] for k, c in (doc.get("cells") or {}).items()}
        # every measure present, in the report's order: the stored values differ by their values only (see _apply)
        new = {field(cid): {m.name: values.get(m.name, 0) for m in MEASURES[cell["report"]]}
               for cid, (cell, values) in want.items()}
        cell_of = {field(cid): cell for cid, (cell, _) in want.items()}
        return [{"k": k, "cell": cell_of.get(k) or doc["cells"][k]["cell"], "from": have.get(k), "to": new.get(k)}
                for k in set(new) | set(have) if new.get(k) != have.get(k)]

    async def recount(self, business_id: str) -> bool:
        """Brings every counter the business is in up to date; False if another recount of it is under way now (the
        mark stays and the sweep looks again)."""
        doc = await self.businesses.find_one({"_id": business_id}) or {"_id": business_id}
        if pend := doc.get("pending"):
            if _utc(pend["at"]) > _now() - self.stale_claim:
                return False  # another recount is on it
            res = await self.businesses.update_one({"_id": business_id, "pending.op": pend["op"],
                                                    "pending.at": pend["at"]}, {"$set": {"pending.at": _now()}})
            if res.modified_count != 1:
                return False
            await self._apply({business_id: pend})  # a crash's claim, taken over: each move happened once at most
            doc = await self.businesses.find_one({"_id": business_id})
        changes = self.changes(doc, (await self.wanted([doc]))[business_id])
        if not changes:
            return True
        pend = await self._claim(doc, changes)
        if pend is None:
            return False
        await self._apply({business_id: pend})
        return True

    async def _claim(self, doc: dict, changes: list[dict]) -> dict | None:
        """(1) of a recount: the changes and a new op id kept in the business's `pending`, by compare-and-set on `rev`.
        None: another recount claimed it meanwhile."""
        pend = self._pending(doc["_id"], await self.params(), changes)
        return pend if await self._write(doc, {}, pend) else None

    @staticmethod
    def _pending(business_id: str, p: ebpm.Params, changes: list[dict]) -> dict:
        return {"op": uuid.uuid4().hex, "at": _now(), "key": list(ebpm.key_halves(business_id, p)), "changes": changes}

    async def _write(self, doc: dict, sets: dict, pend: dict | None) -> bool:
        """`sets` (rows copied) and the claim `pend` if any, written by compare-and-set on the `rev` read with `doc`
        (every write of rows or a claim moves `rev`, so a recount that read older rows loses its claim). False: the
        business's document changed meanwhile, nothing written."""
        business_id = doc["_id"]
        sets = {**sets, **({"pending": pend} if pend is not None else {})}
        if "rev" not in doc:
            try:
                res = await self.businesses.update_one({"_id": business_id, "rev": {"$exists": False}},
                                                       {"$set": {**sets, "rev": 1}}, upsert=True)
            except DuplicateKeyError:  # written by another trigger meanwhile
                return False
            return res.modified_count == 1 or res.upserted_id is not None
        res = await self.businesses.update_one({"_id": business_id, "rev": doc["rev"]},
                                               {"$set": sets, "$inc": {"rev": 1}})
        return res.modified_count == 1

    @staticmethod
    def _moves(pend: dict) -> dict[str, tuple[dict, dict]]:
        """A claim's moves per counter document: (`$inc` by path, `$set` by path)."""
        per_doc: dict[str, tuple[dict, dict]] = defaultdict(lambda: ({}, {}))
        key = tuple(pend["key"])
        for ch in pend["changes"]:
            cell = ch["cell"]
            inc, sets = per_doc[counter_doc(cell)]
            f = cell_field(cell)
            for k, v in delta(ch["from"], ch["to"], key, MEASURES[cell["report"]]).items():
                inc[f"cells.{f}.{k}"] = inc.get(f"cells.{f}.{k}", 0) + v
            for k in ("fiscal_year", "block", "industry"):
                sets[f"cells.{f}.{k}"] = cell[k]
        return per_doc

    async def _move(self, doc_id: str, inc: dict, sets: dict, ops: list[str]) -> None:
        """(2) of a recount: one counter document moved, guarded by the ops in its `_seen` (nothing moves if it has seen
        them: a crashed recount taken over)."""
        report, g, org = doc_id.split("|", 2)
        inc = {k: Int64(v) if k.endswith((".k_hi", ".k_lo")) else v for k, v in inc.items()}  # 64-bit from the start
        update = {**({"$inc": inc} if inc else {}), **({"$set": sets} if sets else {}),
                  "$push": {"_seen": {"$each": ops}}, "$setOnInsert": {"report": report, "g": g, "org": org}}
        guard = {"_id": doc_id, "_seen": {"$nin": ops}}
        try:
            await self.counters.update_one(guard, update, upsert=True)
        except DuplicateKeyError:  # the counter exists: created meanwhile, or it has seen the ops
            update.pop("$setOnInsert")
            await self.counters.update_one(guard, update)

    async def _apply(self, claims: dict[str, dict]) -> None:
        """(2)–(4) of a recount for the claims of one or more businesses (business -> its `pending`). Each counter
        document is moved once by the sum of the claims' moves, guarded by all their ops. Several claims come only from
        `on_dispatches`, all just made (no document can have seen their new ops); a crashed recount's claim is taken
        over alone (`recount`), so its single op decides for each document whether it moved already."""
        shares: dict[str, dict[str, tuple[dict, dict]]] = defaultdict(dict)  # counter doc -> business -> its moves
        for bid, pend in claims.items():
            for doc_id, moves in self._moves(pend).items():
                shares[doc_id][bid] = moves
        for doc_id, by_business in shares.items():
            inc: dict = {}
            sets: dict = {}
            for i, s in by_business.values():
                for k, v in i.items():
                    inc[k] = inc.get(k, 0) + v
                sets.update(s)
            await self._move(doc_id, inc, sets, [claims[b]["op"] for b in by_business])
        finish = []
        for bid, pend in claims.items():
            # cell by cell: FerretDB 1.24 takes a `$set` of a whole sub-document whose keys changed but whose values
            # did not for no change at all
            sets = {f"cells.{ch['k']}": {"cell": ch["cell"], "v": ch["to"]} for ch in pend["changes"] if ch["to"] is not None}
            unsets = {f"cells.{ch['k']}": "" for ch in pend["changes"] if ch["to"] is None}
            finish.append(({"_id": bid, "pending.op": pend["op"]},
                           {**({"$set": sets} if sets else {}), "$unset": {"pending": "", **unsets}, "$inc": {"rev": 1}}))
        if len(finish) == 1:
            await self.businesses.update_one(*finish[0])
        else:  # one command for the batch's businesses
            await self.businesses.bulk_write([UpdateOne(f, u) for f, u in finish], ordered=False)
        for doc_id, by_business in shares.items():
            await self.counters.update_one({"_id": doc_id}, {"$pullAll": {"_seen": [claims[b]["op"] for b in by_business]}})

    # --- reads ------------------------------------------------------------------------------------------------
    async def table(self, report: str, by: list[str], fiscal_year: int | None, scope: dict,
                    params: ebpm.Params, labels: dict) -> ebpm.Table:
        """The report's table from the counters: two `_id` reads; the rows' cells merged per value of `by`, the
        total's into one. O(cells)."""
        measures = MEASURES[report]
        rows_id, total_id, filt = plan(report, by, fiscal_year, scope)
        table = ebpm.Table(tuple(by), measures, params, labels=labels)

        async def cells_of(doc_id: str):
            doc = await self.counters.find_one({"_id": doc_id}, {"_seen": 0}) or {}
            return [c for c in (doc.get("cells") or {}).values() if all(c.get(k) == v for k, v in filt.items())]
        merged: dict[tuple, ebpm.Summary] = {}
        for c in await cells_of(rows_id):
            merged.setdefault(tuple(c[k] for k in by), ebpm.Summary()).merge(_summary(c, measures))
        for k, s in merged.items():
            if s.n > 0:  # a cell every business left (e.g. moved to another industry) is no cell
                table.put(k, s)
        total = ebpm.Summary()
        for c in await cells_of(total_id):
            total.merge(_summary(c, measures))
        table.put_total(total)
        return table


def _summary(d: dict, measures) -> ebpm.Summary:
    s = d.get("s") or {}
    return ebpm.Summary(n=int(d.get("n", 0)), key_sum=ebpm.join_halves(int(d.get("k_hi", 0)), int(d.get("k_lo", 0))),
                        sums={m.name: s.get(m.name, 0) for m in measures})


async def run(counters: Counters, interval: float) -> None:
    await sweeps.every(interval, counters.sweep, log=log, did="ebpm counters recounted", unit="businesses",
                       failed="ebpm counter sweep failed")

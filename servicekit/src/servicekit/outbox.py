"""The outbox relay: publishes events stored in documents' `_outbox` arrays, then removes them.

At least once: a crash after publishing but before the removal publishes again after restart, and
consumers drop the duplicate by event id. Several replicas may run the relay at once for the same reason.

A write tells the relay which document it changed (`kick(col, id)`), so the event goes out at once by a
lookup on `_id`. An insert, and a write guarded by the version read while the outbox was empty, hand their entries
over too (`kick(col, id, entries)`, see `Service.write`): the document's outbox holds exactly those, so the relay
publishes and clears them without reading the document back. The scan of whole collections for leftover entries
(after a crash, or a write by another replica that died) runs only every `scan_seconds`, because `_outbox.0 $exists`
cannot use an index — and never more often than keeps it under a hundredth of the time, so a collection of millions
is not read whole every few seconds. It runs beside the passes and hands what it finds to the next one: a scan of a
year's documents takes seconds, and the events writes hand over meanwhile go out at once (awaited in the passes'
loop, it held every event back for as long: 35 s at 200,000 dispatches).
A pass publishes the entries of all the documents it found as one batch: each send is handed to the
producer in order without awaiting its acknowledgement, the acknowledgements are awaited together, and the
documents' entries are cleared `clear_after` seconds later with one statement per 100 documents. Order matters only
per aggregate (= per Kafka key), and one document's entries are always handed over in order.

Why later: removing entries rewrites the whole document, and an aggregate that just published often changes again
within a second (a dispatch's budget answer follows its ReserveBudget). Its next events then go out too, and one clear
removes both: one rewrite of the document fewer per change. A document with `WHOLE_CLEAR` entries or more waiting (a
budget frame's batch) is cleared at once: its outbox would otherwise grow by hundreds of entries a second. Meanwhile
the published entries stay in the document, remembered as acknowledged: this relay never sends them again, and a
write that finds only such entries in the outbox counts it as empty (`settled`). A crash in that second publishes
them again after restart (at least once, as a crash before any clear does).

While the broker or the database is down a pass fails; the relay then waits with capped exponential
backoff (logging one line per kind of failure now and then, see `servicekit.logs.RateLimit`) instead of
retrying in a tight loop, and the entries simply stay in their documents until it can publish them.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import random
from collections import OrderedDict

from opentelemetry import context, propagate
from pymongo.errors import BulkWriteError
from pymongo.asynchronous.collection import AsyncCollection

from servicekit.faults import Health, backoff, dependency_of

log = logging.getLogger("servicekit.outbox")
CLEAR_CHUNK = 100  # documents cleared per statement (each compares its entries with all the chunk's)
WHOLE_CLEAR = 8  # a document with at least this many entries published at once is emptied by its own statement
ACKED_KEEP = 50_000  # event ids this relay remembers as acknowledged by Kafka (a handoff waits one pass at most)
SCAN_FIND = 5_000  # documents with waiting entries a scan hands over per collection (then it scans again)
# The next full scan waits at least this many times as long as the last one took (≤ 1% of the time). A scan keeps one
# of the database's cores busy for as long as it runs, and everything else waits for the other: at 20 (≤ 5%) the
# relay's and the saga-state scans of 23,000 dispatches (~1 s each on the local server) came every ~20 s, and each
# doubled the saga's latency for the dispatches in flight (its p99 was theirs).
SCAN_SHARE = 100


def paced(interval: float, took: float) -> float:
    """How long to wait before the next pass that reads a whole collection (the relay's leftover scan, dispatch's
    safety-net scans and status counts): `interval`, or SCAN_SHARE times as long as the last pass took, whichever is
    longer, so such passes never take more than 1/SCAN_SHARE of the time however much the collection holds; then up to
    half as long again, at random, so that passes of one process (the relay's scan and the saga-state count both a
    minute apart) and of a service's replicas (started together by a rollout) drift apart instead of reading the
    database at the same moment every time."""
    return max(interval, SCAN_SHARE * took) * random.uniform(1.0, 1.5)


class OutboxRelay:
    def __init__(self, publish, collections: list[AsyncCollection], audit: AsyncCollection,
                 poll_seconds: float = 0.5, crash_before_publish: bool = False, scan_seconds: float = 5.0,
                 health: Health | None = None, clear_after: float = 0.0):
        self._publish = publish  # async (topic, key, value, headers) -> awaitable that Kafka's acknowledgement ends
        self.collections = collections
        self.audit = audit  # every published event is also the audit entry of the change that caused it
        self.poll_seconds = poll_seconds
        self.crash_before_publish = crash_before_publish
        self.scan_seconds = scan_seconds
        self.scan_every = scan_seconds  # grows with what a scan costs (`paced`)
        self._wake = asyncio.Event()
        self._hot: list[tuple[AsyncCollection, object]] = []
        self._handed: list[tuple[AsyncCollection, object, list[dict]]] = []  # entries handed over (kick with entries)
        self._acked: OrderedDict[str, None] = OrderedDict()  # event ids Kafka acknowledged, the latest ACKED_KEEP
        self.clear_after = clear_after  # 0: published entries are cleared at once (module docstring)
        # (collection name, _id) -> (collection, its published entries by event id, when the first was acknowledged):
        # what waits to be cleared, oldest first
        self._uncleared: dict[tuple[str, object], tuple[AsyncCollection, dict[str, dict], float]] = {}
        self._scan_now = True  # the first pass after start-up picks up what a crash left behind
        self._task: asyncio.Task | None = None
        self.depth: dict[str, int] = {}  # collection -> entries the last full scan found waiting (metrics)
        self.published: dict[str, int] = {}  # topic -> events published since start (metrics)
        self.health = health or Health()
        self.failed_passes = 0  # consecutive failed passes (0 while publishing works)

    def kick(self, col: AsyncCollection | None = None, doc_id=None, entries: list[dict] | None = None) -> None:
        """Called after a write so its events go out now; without a document, a full scan runs now.
        `entries`: the document's whole outbox as the write left it, when the writer knows it (`Service.write`): they
        go out unread. (A write that reaches the document afterwards kicks it as usual; if both wait in one pass, the
        document is read.)"""
        if col is None or doc_id is None:
            self._scan_now = True
        elif entries is not None:
            self._handed.append((col, doc_id, entries))
        else:
            self._hot.append((col, doc_id))
        self._wake.set()

    async def drain_once(self) -> int:
        """The full scan: finds every document of every collection with entries waiting and hands it to the next pass
        (as a write's `kick` does); returns how many it found. It runs beside the passes, never in their way: a scan
        of millions of documents takes seconds, and the events that writes are handing over go out meanwhile."""
        found = 0
        for col in self.collections:
            docs = [d async for d in col.find({"_outbox.0": {"$exists": True}}, {"_outbox": 1}).limit(SCAN_FIND)]
            self.depth[col.name] = sum(e["event_id"] not in self._acked for d in docs for e in d["_outbox"])
            for d in docs:
                self.kick(col, d["_id"])
            found += len(docs)
            if len(docs) == SCAN_FIND:  # a backlog (after an outage): the next scan follows the pass at once
                self._scan_now = True
        return found

    async def drain_hot(self) -> int:
        """Publishes the entries of the documents that writes just reported: one read per collection and 500
        documents (`_id: {$in}`, served from the `_id` index)."""
        hot, self._hot = self._hot, []
        handed, self._handed = self._handed, []
        by_col: dict[str, tuple[AsyncCollection, list]] = {}
        for col, doc_id in dict.fromkeys(hot):  # each document once
            by_col.setdefault(col.name, (col, []))[1].append(doc_id)
        sent = 0
        kicked = {(col.name, doc_id) for col, doc_id in hot}
        unread: dict[str, tuple[AsyncCollection, list]] = {}
        for col, doc_id, entries in handed:
            if (col.name, doc_id) not in kicked:  # else the read below finds them too
                unread.setdefault(col.name, (col, []))[1].append({"_id": doc_id, "_outbox": entries})
        for col, docs in unread.values():
            sent += await self._send(col, docs)
        for col, ids in by_col.values():
            for i in range(0, len(ids), 500):
                docs = [d async for d in col.find({"_id": {"$in": ids[i:i + 500]}, "_outbox.0": {"$exists": True}},
                                                  {"_outbox": 1})]
                sent += await self._send(col, docs)
        return sent

    def settled(self, entries: list[dict]) -> bool:
        """Whether every entry of an outbox as read has been published by this relay (it clears them itself): a write
        guarded by the version read then leaves in the outbox nothing to publish but its own events (`Service.write`).
        True for an empty outbox."""
        return all(e["event_id"] in self._acked for e in entries)

    async def _send(self, col: AsyncCollection, docs: list[dict]) -> int:
        """Publishes the entries of `docs` as one batch; they are cleared in bulk later (`clear_due`). Every send is
        handed to the producer in order (a document's entries keep their order: same key, same partition) without
        waiting for Kafka's acknowledgement; the acknowledgements are awaited together. The entries are removed only
        after all were acknowledged (a failure leaves them all to be published again: at least once).

        An entry this relay has already had acknowledged is not sent again, only cleared: a document read by one pass
        (or the scan) may hold entries that a write also handed over for the next pass, or that a failed clear left."""
        if not docs:
            return 0
        acks, fresh = [], []
        for doc in docs:
            for e in doc["_outbox"]:
                if e["event_id"] in self._acked:
                    continue
                fresh.append(e)
                if self.crash_before_publish:
                    log.error("fault injection: exiting between the database write and the publish")
                    os._exit(137)
                token = context.attach(propagate.extract(e.get("trace") or {}))
                try:
                    acks.append(await self._publish(e["topic"], e["key"], e["value"], {}))
                finally:
                    context.detach(token)
        # the audit entries are written while Kafka acknowledges (they record changes already made; a pass that
        # fails leaves the entries to be published again, and their audit entries are then already there)
        await asyncio.gather(*acks, *([self._record_audit(fresh)] if fresh else []))
        for e in fresh:
            self.published[e["topic"]] = self.published.get(e["topic"], 0) + 1
            self._acked[e["event_id"]] = None
        while len(self._acked) > ACKED_KEEP:
            self._acked.popitem(last=False)
        at, at_once = asyncio.get_running_loop().time(), []
        for doc in docs:
            key = (col.name, doc["_id"])
            _, entries, since = self._uncleared.pop(key, (col, {}, at))
            for e in doc["_outbox"]:
                entries.setdefault(e["event_id"], e)
            if len(entries) >= WHOLE_CLEAR or not self.clear_after:
                # a batch's document (a budget frame takes hundreds of events a second) is cleared at once: waiting,
                # its outbox would grow to megabytes that every write of it rewrites
                at_once.append({"_id": doc["_id"], "_outbox": list(entries.values())})
            else:
                self._uncleared[key] = (col, entries, since)
        await self._clear_docs(col, at_once)
        return len(fresh)

    def next_clear_in(self) -> float | None:
        """Seconds until the oldest published entries are due to be cleared; None when none wait."""
        for _, _, since in self._uncleared.values():
            return max(0.0, since + self.clear_after - asyncio.get_running_loop().time())
        return None

    async def clear_due(self, everything: bool = False) -> int:
        """Removes from their documents the published entries that waited `clear_after` seconds (all of them with
        `everything`: at shutdown); returns how many documents it cleared. A failure leaves the rest to the leftover
        scan (it finds the entries, this relay skips them as published, and they come back here)."""
        cutoff = asyncio.get_running_loop().time() - self.clear_after
        due: dict[str, tuple[AsyncCollection, list[dict]]] = {}
        for key, (col, entries, since) in self._uncleared.items():
            if since > cutoff and not everything:
                break  # oldest first: the rest are younger
            due.setdefault(col.name, (col, []))[1].append({"_id": key[1], "_outbox": list(entries.values())})
        for col, docs in due.values():
            for d in docs:
                del self._uncleared[(col.name, d["_id"])]
        for col, docs in due.values():
            await self._clear_docs(col, docs)
        return sum(len(docs) for _, docs in due.values())

    async def _clear_docs(self, col: AsyncCollection, docs: list[dict]) -> None:
        """Removes published entries (`_outbox` of each of `docs`) from their documents: a document with many emptied
        by its own statement when nothing was added since (`_clear_whole`), the others `CLEAR_CHUNK` at a time."""
        small = [d for d in docs if len(d["_outbox"]) < WHOLE_CLEAR]
        for doc in docs:
            if len(doc["_outbox"]) >= WHOLE_CLEAR and not await self._clear_whole(col, doc):
                small.append(doc)  # a write added entries since: those stay, ours go one by one
        for i in range(0, len(small), CLEAR_CHUNK):
            await self._clear(col, small[i:i + CLEAR_CHUNK])

    @staticmethod
    async def _clear(col: AsyncCollection, docs: list[dict]) -> None:
        """Removes the published entries from their documents with ONE statement: `$pullAll` of all the chunk's
        entries on each of its documents (an entry is only ever in its own document, and entries a write added
        since they were read stay). One statement for a chunk instead of one per document: the local server's
        cost is mostly per statement."""
        await col.update_many({"_id": {"$in": [d["_id"] for d in docs]}},
                              {"$pullAll": {"_outbox": [e for d in docs for e in d["_outbox"]]}})

    @staticmethod
    async def _clear_whole(col: AsyncCollection, doc: dict) -> bool:
        """Empties a document's outbox that still holds exactly the entries published (a batch's hundreds): writes
        only append and relays only remove, so an outbox of the same length whose first and last entries are ours
        holds nothing else. `$pullAll` would compare each entry with every published one (the local server does it
        pairwise: quadratic). False when the outbox changed since it was read."""
        entries = doc["_outbox"]
        res = await col.update_one({"_id": doc["_id"], "_outbox": {"$size": len(entries)},
                                    "_outbox.0.event_id": entries[0]["event_id"],
                                    f"_outbox.{len(entries) - 1}.event_id": entries[-1]["event_id"]},
                                   {"$set": {"_outbox": []}})
        return res.matched_count == 1

    async def _record_audit(self, entries: list[dict]) -> None:
        """One insert for a batch's entries, each under its event id: a republished event is already there and
        stays one entry (one insert command of many documents costs the server far less than as many upserts)."""
        docs = {}
        for e in entries:
            env = json.loads(e["value"])
            docs[e["event_id"]] = {"_id": e["event_id"], "at": env["occurred_at"], "actor": env.get("actor"),
                                   "client_id": env.get("client_id"), "action": env["event_type"],
                                   "key": env["key"], "topic": e["topic"], "payload": env["payload"]}
        try:
            await self.audit.insert_many(list(docs.values()), ordered=False)
        except BulkWriteError as e:  # recorded before (a republished event, or a concurrent relay won the race)
            if any(w["code"] != 11000 for w in e.details["writeErrors"]):
                raise

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        last_scan, scan, scanned = 0.0, None, False  # scanned: a scan went through since the last failure
        try:
            while True:
                try:
                    if scan is not None and scan.done():  # the full scan runs beside the passes (drain_once)
                        done, scan = scan, None
                        done.result()  # its failure is handled here as a failed pass's
                        self.scan_every = paced(self.scan_seconds, loop.time() - last_scan)
                        scanned = True
                    await self.drain_hot()  # with what the scan found, if it just ended
                    await self.clear_due()
                    if scan is None and (self._scan_now or loop.time() - last_scan >= self.scan_every):
                        self._scan_now, last_scan = False, loop.time()
                        scan = asyncio.create_task(self.drain_once(), name="outbox-scan")
                        scan.add_done_callback(lambda _: self._wake.set())
                except asyncio.CancelledError:
                    raise
                except Exception as e:
                    scanned = False
                    await self._failed(e)
                    continue
                if self.failed_passes and scanned:  # a scan, and a pass publishing what it found, after failed ones
                    log.info("outbox relay publishing again", extra={"fields": {"failed_passes": self.failed_passes}})
                    self.failed_passes = 0
                    self.health.recovered("kafka")
                if self._hot or self._handed or (self._scan_now and scan is None):  # (a running scan wakes the loop)
                    continue
                clear_in = self.next_clear_in()
                try:
                    await asyncio.wait_for(self._wake.wait(), self.poll_seconds if clear_in is None
                                           else min(self.poll_seconds, clear_in))
                except TimeoutError:
                    pass
                self._wake.clear()
        finally:
            if scan is not None:
                scan.cancel()

    async def _failed(self, e: Exception) -> None:
        """A pass or the scan failed: reports the dependency, backs off, and asks for a scan (it finds again what the
        pass had taken out of `_hot`)."""
        dependency = dependency_of(e)
        if dependency in ("mongodb", "kafka"):
            self.health.failed(dependency)
        delay = backoff(self.failed_passes, first=0.5, cap=5.0)
        self.failed_passes += 1
        log.exception("outbox relay pass failed; retrying", extra={"fields": {
            "dependency": dependency, "error_kind": type(e).__name__, "retry_in": delay}})
        self._scan_now = True
        await asyncio.sleep(delay)

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="outbox-relay")

    async def stop(self) -> None:
        """Stops the loop and clears what it has published (else the next start would publish it again)."""
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        if self._uncleared:
            try:
                await self.clear_due(everything=True)
            except Exception as e:  # the database is gone: published again after restart (at least once)
                log.warning("outbox relay could not clear published entries at shutdown",
                            extra={"fields": {"documents": len(self._uncleared), "error_kind": type(e).__name__}})

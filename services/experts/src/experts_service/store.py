"""MongoDB access of the experts service, and the feed that keeps each replica's search index current.

Collections: `experts` (the aggregate, with its outbox), `orgs` (platform members learnt from identity),
`radars` (newest ratings summary per expert), `settings` (programme settings), `audit`, `first_places` (R-EX-07: how
often each expert was suggested first, one counter document per expert and day, shared by every replica).
"""
from __future__ import annotations

import asyncio
import gc
import json
import logging
import time
from datetime import date, timedelta

from aiokafka import AIOKafkaConsumer, TopicPartition
from pymongo.errors import DuplicateKeyError

from contracts import TOPICS, Envelope
from contracts.events.experts import ExpertChanged, Unavailability
from contracts.events.identity import AccountRevoked
from contracts.events.ratings import ExpertRadarUpdated
from experts_service.search import ExpertIndex
from servicekit import aggregate, paging
from servicekit.bus import Undeliverable, decode
from servicekit.faults import backoff, is_transient
from servicekit.refusals import Rejected
from servicekit.store import now, record_audit

log = logging.getLogger("experts.store")
STATE_KEYS = ("expert_id", "account_id", "name", "status", "profile", "availability", "version", "history",
              "application", "recommendations", "registered_fiscal_year", "registered_years", "renewal",
              "suspension", "record", "exit", "capacity")
# The compare-and-set version of an expert document. Not `version` (servicekit.aggregate's name elsewhere): in an
# expert document `version` is the page's own version (R-EX-03), shown to users and moved only by an edit of the page.
REV = "_rev"


def now_iso() -> str:
    """Times inside the expert's state (history, recommendations, reviews) are ISO strings: the API shows them as they
    are stored. Times about the document (`updated_at`, audit entries) are datetimes of `servicekit.store.now`."""
    return now().isoformat()


def stamp(expert_id: str) -> dict:
    """`updated_at` and the `key` the agency's queues are ordered and paged by (oldest change first, R-OPS-03)."""
    at = now()
    return {"updated_at": at, "key": paging.sort_key(at, expert_id)}


def state_of(doc: dict) -> dict:
    """The domain's view of a stored document (without Mongo metadata)."""
    return {k: doc.get(k) for k in STATE_KEYS}


def changed_event(state: dict, change: str) -> ExpertChanged:
    """Event-carried state: the whole dispatch-relevant state of the expert with the kind of change."""
    p = state["profile"]
    return ExpertChanged(
        expert_id=state["expert_id"], account_id=state["account_id"], change=change, status=state["status"],
        registered_fiscal_year=state.get("registered_fiscal_year"), name=state["name"], fields=p["fields"],
        regions=p["regions"], qualifications=p["qualifications"], employer_org_id=p.get("employer_org_id"),
        personnel_cost_subsidised=p.get("personnel_cost_subsidised", False),
        related_business_ids=p.get("related_business_ids", []),
        unavailable=[Unavailability(start=w["start"], end=w["end"], note=w.get("note", ""))
                     for w in state["availability"]["windows"]],
        paused=bool((state.get("capacity") or {}).get("paused")), open_cap=(state.get("capacity") or {}).get("open_cap"),
        weekdays=sorted(set(state["availability"].get("weekdays") or ())))


class Store:
    def __init__(self, svc):
        self.svc = svc
        self.db = svc.db
        self.experts = svc.db.experts
        self.index = ExpertIndex()
        self.revoked: set[str] = set()  # R-ID-06: revoked subjects, held in memory like the index
        self._visibility: tuple[float, str] | None = None
        self.first_places = FirstPlaces(svc.db.first_places)

    async def ensure_indexes(self) -> None:
        await self.experts.create_index("account_id", unique=True)
        await self.experts.create_index("status")
        await self.experts.create_index("recommender_ids")
        await self.experts.create_index("recommendations.org_id")  # an institution's recommendees (and the asked)
        await self.experts.create_index([("status", 1), ("key", 1)])  # the agency's queues, paged
        await self.experts.create_index([("renewal.state", 1), ("key", 1)])
        await paging.add_keys(self.db, "experts", "updated_at")
        await self.first_places.ensure_indexes()

    # --- writes -----------------------------------------------------------------------------
    async def create(self, state: dict, change: str, *, actor: str) -> dict:
        doc = {"_id": state["expert_id"], **state, REV: 1, "recommender_ids": [], **stamp(state["expert_id"])}
        try:
            await self.svc.insert(self.experts, doc, events=[self.svc.event(changed_event(state, change), actor=actor)])
        except DuplicateKeyError:
            raise Rejected("conflict", "Expert page exists", "This account already has an expert page; edit it instead.") from None
        self.index.upsert(doc)
        return doc

    async def mutate(self, expert_id: str, fn, *, actor: str, cause: Envelope | None = None,
                     action: str = "", with_radar: bool = False) -> dict:
        """Applies a domain operation `fn(state) -> (new state, ExpertChanged kind or None)` through
        `servicekit.aggregate.update` (compare-and-set on `_rev`): the change and its event are one write, a change
        without an event gets its own audit entry."""
        async def decide(doc: dict) -> aggregate.Change | None:
            state = state_of(doc)
            if with_radar:
                state["radar"] = await self.radar(expert_id)
            new, change = fn(state)
            new.pop("radar", None)
            state.pop("radar", None)
            if new == state:
                return None
            sets = {k: v for k, v in new.items() if state.get(k) != v}
            sets["recommender_ids"] = [r["org_id"] for r in new["recommendations"] if r["recommended"]]
            sets.update(stamp(expert_id))
            events = [self.svc.event(changed_event(new, change), actor=actor, cause=cause)] if change else []
            return aggregate.Change(set=sets, events=events, audit=json.loads(json.dumps(sets, default=str)))

        done = await aggregate.update(
            self.svc, self.experts, expert_id, decide, actor=actor, action=action or "experts.changed", attempts=5,
            version=REV,
            missing=Rejected("not_found", "No such expert", f"There is no expert {expert_id}."),
            busy=Rejected("conflict", "Busy", "The expert record changed several times meanwhile; please try again."))
        if done.changed:
            self.index.upsert(done.doc)
        return done.doc

    async def audit(self, actor: str | None, action: str, key: str, payload: dict) -> None:
        """An audit entry for a change that publishes no event (events are audited by the outbox relay)."""
        await record_audit(self.db, actor=actor, action=action, key=key,
                           payload=json.loads(json.dumps(payload, default=str)))

    # --- reads ------------------------------------------------------------------------------
    async def by_account(self, account_id: str) -> dict:
        doc = await self.experts.find_one({"account_id": account_id})
        if doc is None:
            raise Rejected("not_found", "No expert page",
                           "This account has no expert page yet; create it with POST /experts/me.")
        return doc

    async def get(self, expert_id: str) -> dict | None:
        return await self.experts.find_one({"_id": expert_id})

    async def orgs(self, ids) -> dict[str, dict]:
        return {o["_id"]: o async for o in self.db.orgs.find({"_id": {"$in": list(ids)}})}

    async def radar(self, expert_id: str) -> dict | None:
        r = await self.db.radars.find_one({"_id": expert_id})
        return {k: r[k] for k in ("averages", "count", "window_days", "as_of")} if r else None

    async def save_radar(self, expert_id: str, radar: dict) -> None:
        """Keeps the newest summary only (by `as_of`), whatever order the events arrive in."""
        try:
            await self.db.radars.update_one({"_id": expert_id, "as_of": {"$lt": radar["as_of"]}},
                                            {"$set": radar}, upsert=True)
        except DuplicateKeyError:
            pass  # a newer (or the same) summary is already stored

    # --- programme setting (R-ANC-02) -------------------------------------------------------
    async def visibility(self) -> str:
        """Who may search the directory: "public" or "institutions". A settings document overrides the
        environment; cached briefly so every replica follows a change within seconds."""
        if self._visibility and time.monotonic() - self._visibility[0] < 2:
            return self._visibility[1]
        doc = await self.db.settings.find_one({"_id": "directory"})
        value = (doc or {}).get("visibility") or self.svc.settings.experts_directory_visibility
        self._visibility = (time.monotonic(), value)
        return value

    async def set_visibility(self, value: str, actor: str) -> None:
        await self.db.settings.update_one({"_id": "directory"}, {"$set": {"visibility": value, "by": actor,
                                                                            "at": now()}}, upsert=True)
        await self.audit(actor, "experts.DirectoryVisibilitySet", "directory", {"visibility": value})
        self._visibility = None


class FirstPlaces:
    """R-EX-07: the times each expert was suggested first, counted in MongoDB so that every replica spreads work
    with the same figures (a fairness nudge, not a rule). One document per expert and day (`{expert_id}|{day}`, `n`
    raised by `$inc`); days older than `keep_days` are pruned (at most once a day per replica)."""

    def __init__(self, col, keep_days: int = 60):
        self.col, self.keep_days = col, keep_days
        self._pruned: date | None = None

    async def ensure_indexes(self) -> None:
        await self.col.create_index("day")  # pruning

    async def note(self, expert_id: str, day: date) -> None:
        """One more first place for the expert on `day` (one upsert, safe from any number of replicas)."""
        await self.col.update_one({"_id": f"{expert_id}|{day.isoformat()}"},
                                  {"$inc": {"n": 1}, "$setOnInsert": {"expert_id": expert_id, "day": day.isoformat()}},
                                  upsert=True)
        if self._pruned != day:
            self._pruned = day
            await self.prune(day)

    async def prune(self, today: date) -> int:
        res = await self.col.delete_many({"day": {"$lt": (today - timedelta(days=self.keep_days)).isoformat()}})
        return res.deleted_count

    async def since(self, expert_ids, first_day: date, today: date) -> dict[str, int]:
        """First places of each of `expert_ids` from `first_day` to `today`: one `_id: {$in}` query (each expert's
        days named), whatever the number of experts."""
        ids = list(dict.fromkeys(expert_ids))
        out: dict[str, int] = dict.fromkeys(ids, 0)
        days = [(first_day + timedelta(days=k)).isoformat() for k in range((today - first_day).days + 1)]
        if not ids or not days:
            return out
        async for d in self.col.find({"_id": {"$in": [f"{e}|{day}" for e in ids for day in days]}},
                                     {"expert_id": 1, "n": 1}):
            out[d["expert_id"]] += int(d.get("n", 0))
        return out


class IndexFeed:
    """Keeps this replica's in-memory views current (search index, revoked subjects): a snapshot from
    MongoDB at start-up, then every `experts.events`, `ratings.events` and `identity.events` record read
    with NO consumer group, so every replica sees every change (the service's group consumers see each
    record on one replica only)."""

    def __init__(self, svc, store: Store):
        self.svc, self.store = svc, store
        self._consumer: AIOKafkaConsumer | None = None
        self.ready = False
        self.skipped = 0  # records that broke the contracts (their group consumer dead-letters them)

    async def open(self) -> None:
        s = self.svc.settings
        self._consumer = AIOKafkaConsumer(bootstrap_servers=s.kafka_bootstrap, group_id=None,
                                          enable_auto_commit=False, client_id=f"{s.service_name}-index")
        await self._consumer.start()
        tps = [TopicPartition(s.topic(t), p) for t in ("experts.events", "ratings.events", "identity.events")
               for p in range(s.topic_partitions or TOPICS[t].partitions)]
        self._consumer.assign(tps)
        # Offsets first, snapshot second: whatever changes after the snapshot is replayed from here.
        for tp, offset in (await self._consumer.end_offsets(tps)).items():
            self._consumer.seek(tp, offset)
        await self.load()

    async def load(self) -> None:
        async for r in self.svc.db.revoked_subjects.find({}, {"_id": 1}):
            self.store.revoked.add(r["_id"])
        async for r in self.svc.db.radars.find({}):
            self.store.index.set_radar(r["_id"], r)
        async for doc in self.store.experts.find({"status": {"$ne": "exited"}}, {"history": 0, "_outbox": 0}):
            self.store.index.upsert(doc)
        self.ready = True
        # The index is a million long-lived small objects: keep them out of the cyclic GC's full
        # collections, which would otherwise pause requests for tens of milliseconds.
        gc.collect()
        gc.freeze()
        log.info("search index loaded", extra={"fields": {"experts": len(self.store.index)}})

    async def run(self) -> None:
        """Follows the topics until cancelled (servicekit runs it as a background job), then closes."""
        try:
            await self._follow()
        finally:
            await self._consumer.stop()

    async def _follow(self) -> None:
        while True:
            try:
                batch = await self._consumer.getmany(timeout_ms=1000, max_records=500)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the broker is down: aiokafka reconnects by itself
                log.warning("search index feed cannot read", extra={"fields": {"error_kind": type(e).__name__}})
                await asyncio.sleep(1)
                continue
            changed: set[str] = set()
            for records in batch.values():
                for rec in records:
                    try:
                        self.apply(rec, changed)
                    except Exception:  # a bug here must not end the feed or skip the rest of the batch
                        log.exception("search index feed could not apply a record", extra={"fields": {
                            "source": f"{rec.topic}/{rec.partition}/{rec.offset}"}})
            try:
                await self._reload(changed)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("search index feed could not reload changed experts; continuing")

    def apply(self, rec, changed: set[str]) -> None:
        """One record, read by the rules of every consumer (`servicekit.bus.decode`): a record that breaks them is
        skipped here, never acted on, and the rest of the batch goes on. The service's group consumers read the
        same topics and put such a record on the dead-letter topic once (not once per replica)."""
        try:
            if rec.key is None:
                raise Undeliverable("no key")
            decoded = decode(rec.value, FEED_MODELS)
        except Undeliverable as e:
            self.skipped += 1
            log.warning("search index feed skipped a record", extra={"fields": {
                "source": f"{rec.topic}/{rec.partition}/{rec.offset}", "reason": str(e)}})
            return
        if decoded is None:
            return
        env, msg = decoded
        if isinstance(msg, ExpertChanged):
            changed.add(env.key)
        elif isinstance(msg, AccountRevoked):
            self.store.revoked.add(msg.account_id)
        elif isinstance(msg, ExpertRadarUpdated):
            self.store.index.set_radar(msg.expert_id, {**msg.model_dump(mode="json"), "as_of": msg.as_of.isoformat()})

    async def _reload(self, changed: set[str]) -> None:
        """The stored state is the truth: reload each changed expert, never replay payloads. While the database is
        down this waits (with backoff) rather than losing the change, since the offsets have moved on."""
        for expert_id in changed:
            attempt = 0
            while True:
                try:
                    doc = await self.store.get(expert_id)
                    break
                except Exception as e:
                    if not is_transient(e):
                        raise
                    await asyncio.sleep(backoff(attempt))
                    attempt += 1
            if doc is None or doc["status"] == "exited":
                self.store.index.remove(expert_id)
            else:
                self.store.index.upsert(doc)


FEED_MODELS = {m.message_type: m for m in (ExpertChanged, AccountRevoked, ExpertRadarUpdated)}


def parse_day(v: str | date | None) -> date | None:
    return v if isinstance(v, date) or v is None else date.fromisoformat(v)

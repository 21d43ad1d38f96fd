"""servicekit.aggregate: read → decide → compare-and-set with events and audit, on a tiny in-memory fake (the
conflict path made deterministic). The same helper on the real server: tests/integration/test_aggregate.py."""
from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
from pymongo.errors import DuplicateKeyError

from servicekit import aggregate
from servicekit.aggregate import Change
from servicekit.refusals import Rejected
from servicekit.store import with_outbox


def _matches(doc: dict, filter_: dict) -> bool:
    for k, want in filter_.items():
        got = doc.get(k)
        if isinstance(want, dict) and "$ne" in want:
            if got == want["$ne"] or (isinstance(got, list) and want["$ne"] in got):
                return False
        elif got != want and not (isinstance(got, list) and want in got):
            return False
    return True


class FakeCollection:
    """Equality filters ($ne), $set/$unset/$inc/$push/$addToSet on top-level fields; `race(n)`: the next n reads are
    each followed by another writer's change (a version bump) before our write."""

    def __init__(self):
        self.docs: dict = {}
        self._races = 0

    def race(self, n: int) -> None:
        self._races = n

    async def find_one(self, filter_, projection=None):
        doc = next((d for d in self.docs.values() if _matches(d, filter_)), None)
        out = copy.deepcopy(doc)
        if doc is not None and self._races:
            self._races -= 1
            for f in ("version", "_rev", "v", "_v"):
                if f in doc:
                    doc[f] += 1
                    break
            else:
                doc["version"] = 1
        return out

    async def insert_one(self, doc):
        if doc["_id"] in self.docs:
            raise DuplicateKeyError("E11000 duplicate key")
        self.docs[doc["_id"]] = copy.deepcopy(doc)
        return SimpleNamespace(inserted_id=doc["_id"])

    async def update_one(self, filter_, update, upsert=False):
        doc = next((d for d in self.docs.values() if _matches(d, filter_)), None)
        if doc is None:
            return SimpleNamespace(matched_count=0, modified_count=0, upserted_id=None)
        for k, v in update.get("$set", {}).items():
            doc[k] = v
        for k in update.get("$unset", {}):
            doc.pop(k, None)
        for k, v in update.get("$inc", {}).items():
            doc[k] = doc.get(k, 0) + v
        for k, v in update.get("$push", {}).items():
            doc.setdefault(k, []).extend(v["$each"] if isinstance(v, dict) else [v])
        for k, v in update.get("$addToSet", {}).items():
            if v not in doc.setdefault(k, []):
                doc[k].append(v)
        return SimpleNamespace(matched_count=1, modified_count=1, upserted_id=None)


class FakeService:
    def __init__(self):
        self.db = SimpleNamespace(audit=FakeCollection(), things=FakeCollection())
        self.published: set[str] = set()  # event ids the relay has had acknowledged

    def nothing_to_publish(self, outbox):  # as Service: empty, or only what its relay published
        return outbox is not None and all(e["event_id"] in self.published for e in outbox)

    async def write(self, col, filter_, update, *, events=(), upsert=False, outbox_was_empty=False):
        self.handed = outbox_was_empty
        return await col.update_one(filter_, with_outbox(update, list(events)))

    async def insert(self, col, doc, *, events=()):
        return await col.insert_one({**doc, "_outbox": list(events)})


EVENT = {"event_id": "e1", "topic": "t", "key": "k", "value": "{}", "trace": {}}


async def test_a_change_is_written_with_its_events_and_the_version_moves_on():
    svc = FakeService()
    await svc.db.things.insert_one({"_id": "a", "version": 3, "n": 1})
    out = await aggregate.update(svc, svc.db.things, "a", lambda d: Change(set={"n": d["n"] + 1}, events=[EVENT]),
                                 actor="u1", action="thing.changed")
    stored = svc.db.things.docs["a"]
    assert stored["n"] == 2 and stored["version"] == 4 and stored["_outbox"] == [EVENT]
    assert out.changed and out.doc["n"] == 2 and out.doc["version"] == 4
    assert svc.db.audit.docs == {}  # an event is audited by the relay, not twice


async def test_a_write_on_an_empty_outbox_hands_its_events_over_and_decide_never_sees_the_outbox():
    """The relay need not read a document back when the version-guarded write found its outbox empty (Service.write):
    only then is `outbox_was_empty` passed; entries still waiting, or an outbox the projection left out, mean a read."""
    svc = FakeService()
    await svc.db.things.insert_one({"_id": "a", "version": 1, "n": 1, "_outbox": []})
    await svc.db.things.insert_one({"_id": "b", "version": 1, "n": 1, "_outbox": [EVENT]})
    seen = []

    def decide(d):
        seen.append(set(d))
        return Change(set={"n": 2}, events=[EVENT])
    await aggregate.update(svc, svc.db.things, "a", decide, actor="u", action="x")
    assert svc.handed is True
    await aggregate.update(svc, svc.db.things, "b", decide, actor="u", action="x")
    assert svc.handed is False
    await svc.db.things.insert_one({"_id": "c", "version": 1, "n": 1})  # as read through a projection without it
    await aggregate.update(svc, svc.db.things, "c", decide, actor="u", action="x")
    assert svc.handed is False
    # entries the relay has published and not yet cleared (it clears a moment later) wait for nothing: handed over
    await svc.db.things.insert_one({"_id": "d", "version": 1, "n": 1, "_outbox": [{**EVENT, "event_id": "e0"}]})
    svc.published.add("e0")
    await aggregate.update(svc, svc.db.things, "d", decide, actor="u", action="x")
    assert svc.handed is True
    assert all("_outbox" not in keys for keys in seen)


async def test_R_OPS_02_a_change_without_events_leaves_an_audit_entry_with_a_datetime():
    svc = FakeService()
    await svc.db.things.insert_one({"_id": "a", "version": 1, "n": 1})
    await aggregate.update(svc, svc.db.things, "a", lambda d: Change(set={"n": 5, "x.y": "z", "big": {"no": 1}}),
                           actor="u1", action="thing.changed")
    [entry] = svc.db.audit.docs.values()
    assert (entry["actor"], entry["action"], entry["key"]) == ("u1", "thing.changed", "a")
    assert entry["payload"] == {"n": 5, "x/y": "z"} and entry["at"].tzinfo is not None


async def test_nothing_to_do_writes_nothing():
    svc = FakeService()
    await svc.db.things.insert_one({"_id": "a", "version": 1})
    out = await aggregate.update(svc, svc.db.things, "a", lambda d: None, actor="u", action="x")
    assert not out.changed and svc.db.things.docs["a"]["version"] == 1 and svc.db.audit.docs == {}


async def test_a_concurrent_change_makes_it_read_and_decide_again():
    svc = FakeService()
    await svc.db.things.insert_one({"_id": "a", "version": 1, "n": 10})
    seen = []

    def decide(d):
        seen.append(d["version"])
        return Change(inc={"n": 1}, events=[EVENT])

    svc.db.things.race(2)
    await aggregate.update(svc, svc.db.things, "a", decide, actor="u", action="x")
    assert seen == [1, 2, 3] and svc.db.things.docs["a"]["version"] == 4 and svc.db.things.docs["a"]["n"] == 11


async def test_after_the_attempts_it_refuses_with_the_callers_conflict():
    svc = FakeService()
    await svc.db.things.insert_one({"_id": "a", "version": 1})
    svc.db.things.race(100)
    busy = Rejected("conflict", "Busy", "try again")
    with pytest.raises(Rejected) as r:
        await aggregate.update(svc, svc.db.things, "a", lambda d: Change(set={"n": 1}), actor="u", action="x",
                               attempts=3, busy=busy)
    assert (r.value.kind, r.value.title, r.value.detail) == ("conflict", "Busy", "try again") and r.value is not busy
    assert "n" not in svc.db.things.docs["a"] and svc.db.audit.docs == {}


async def test_a_missing_document_is_the_callers_refusal_or_created():
    svc = FakeService()
    with pytest.raises(Rejected) as r:
        await aggregate.update(svc, svc.db.things, "a", lambda d: Change(set={"n": 1}), actor="u", action="x",
                               missing=Rejected("not_found", "No such thing", "none"))
    assert r.value.kind == "not_found" and r.value.title == "No such thing"
    out = await aggregate.update(svc, svc.db.things, "a", lambda d: Change(set={"n": 1}, events=[EVENT]),
                                 actor="u", action="x", create=True)
    assert svc.db.things.docs["a"] == {"_id": "a", "n": 1, "version": 1, "_outbox": [EVENT]} and out.changed


@pytest.mark.parametrize("legacy", ["_rev", "v", "_v"])
async def test_an_old_document_is_read_at_its_old_version_and_written_with_version(legacy):
    svc = FakeService()
    await svc.db.things.insert_one({"_id": "a", legacy: 7})
    out = await aggregate.update(svc, svc.db.things, "a", lambda d: Change(set={"n": aggregate.version_of(d)}),
                                 actor="u", action="x")
    assert svc.db.things.docs["a"] == {"_id": "a", "n": 7, "version": 8} and out.doc == svc.db.things.docs["a"]


async def test_a_write_under_an_old_version_loses_to_a_concurrent_one():
    svc = FakeService()
    await svc.db.things.insert_one({"_id": "a", "_rev": 2})
    svc.db.things.race(1)  # another writer moves _rev to 3 after our read
    seen = []

    def decide(d):
        seen.append(aggregate.version_of(d))
        return Change(set={"n": 1})

    await aggregate.update(svc, svc.db.things, "a", decide, actor="u", action="x")
    assert seen == [2, 3] and svc.db.things.docs["a"]["version"] == 4 and "_rev" not in svc.db.things.docs["a"]


async def test_a_refusal_of_the_decision_reaches_the_caller_unchanged():
    svc = FakeService()
    await svc.db.things.insert_one({"_id": "a", "version": 1})

    def decide(d):
        raise Rejected("invalid", "Bad", "no")

    with pytest.raises(Rejected) as r:
        await aggregate.update(svc, svc.db.things, "a", decide, actor="u", action="x")
    assert r.value.title == "Bad" and svc.db.things.docs["a"]["version"] == 1


async def test_create_inserts_at_version_one_and_refuses_a_duplicate():
    svc = FakeService()
    await aggregate.create(svc, svc.db.things, {"_id": "a", "n": 1}, actor="u", action="thing.created")
    assert svc.db.things.docs["a"]["version"] == 1 and len(svc.db.audit.docs) == 1
    with pytest.raises(Rejected) as r:
        await aggregate.create(svc, svc.db.things, {"_id": "a"}, events=[EVENT], actor="u", action="x",
                               duplicate=Rejected("conflict", "Exists", "already"))
    assert r.value.title == "Exists"

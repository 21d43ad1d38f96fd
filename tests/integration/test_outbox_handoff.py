"""The outbox relay on the real MongoDB-wire server: an inserted document's entries are handed to the relay in memory
(`kick` with the entries), published without reading the document back, and then cleared from it — the stored entries must equal
the handed ones for `$pullAll` to find them, or they would be published again by every leftover scan."""
from __future__ import annotations

import asyncio

from pymongo import AsyncMongoClient

from contracts import Envelope
from contracts.events.notifications import Notify
from servicekit.outbox import OutboxRelay
from servicekit.store import outbox_entry, with_outbox


def entry(n: str) -> dict:
    msg = Notify(notification_id=n, recipient_id="acc-1", template="t", params={"message": "x"})
    return outbox_entry(Envelope.wrap(msg, producer="test"), "t.notifications.commands")


class Recorder:
    def __init__(self):
        self.sent: list[str] = []

    async def publish(self, topic, key, value, headers):
        self.sent.append(Envelope.model_validate_json(value).payload["notification_id"])
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


async def test_an_inserted_documents_entries_are_published_unread_and_cleared(infra, ns):
    db = AsyncMongoClient(infra.mongo, tz_aware=True)[ns.db("handoff")]
    col = db.things  # one object: the relay's reads are counted on it
    rec = Recorder()
    relay = OutboxRelay(rec.publish, [col], db.audit)
    reads = []
    real_find = col.find
    col.find = lambda *a, **kw: reads.append(a) or real_find(*a, **kw)

    events = [entry("n1"), entry("n2")]
    await col.insert_one({"_id": "a", "_outbox": list(events)})
    relay.kick(col, "a", events)
    assert await relay.drain_hot() == 2
    assert rec.sent == ["n1", "n2"] and reads == []  # published in order, the document not read back
    assert (await col.find_one({"_id": "a"}))["_outbox"] == []  # and cleared: the stored entries matched
    assert await db.audit.count_documents({}) == 2

    # a write that reaches the new document before the relay's pass: one read publishes both writes' entries, in order
    e3 = entry("n3")
    await col.insert_one({"_id": "b", "_outbox": [e3]})
    relay.kick(col, "b", [e3])
    await col.update_one({"_id": "b"}, with_outbox({"$set": {"x": 1}}, [entry("n4")]))
    relay.kick(col, "b")
    rec.sent.clear(), reads.clear()
    assert await relay.drain_hot() == 2
    assert rec.sent == ["n3", "n4"] and len(reads) == 1
    assert (await col.find_one({"_id": "b"}))["_outbox"] == []


async def test_entries_a_pass_read_are_not_published_again_when_their_handoff_comes_next(infra, ns):
    """A write hands its entries over while a pass is about to read the same document (kicked earlier by a write
    whose entries were already out): the read publishes them, so the handoff, taken by the next pass, must not publish
    them again (the clean-clone run of 2026-12-01 saw an approval published twice this way)."""
    db = AsyncMongoClient(infra.mongo, tz_aware=True)[ns.db("handoff")]
    col = db.twice
    rec = Recorder()
    relay = OutboxRelay(rec.publish, [col], db.audit)
    await col.insert_one({"_id": "d", "_outbox": []})
    relay.kick(col, "d")  # an earlier write's kick, still queued
    e1 = entry("n1")
    await col.update_one({"_id": "d"}, with_outbox({"$set": {"v": 2}}, [e1]))
    real_find = col.find

    def find_then_handoff(*a, **kw):  # the handing write's kick lands while the pass reads the document
        relay.kick(col, "d", [e1])
        return real_find(*a, **kw)

    col.find = find_then_handoff
    assert await relay.drain_hot() == 1
    col.find = real_find
    assert await relay.drain_hot() == 0  # the handoff's pass: already published, nothing sent
    assert rec.sent == ["n1"]
    assert (await col.find_one({"_id": "d"}))["_outbox"] == []


async def test_a_batchs_many_entries_are_cleared_whole_and_entries_written_meanwhile_stay(infra, ns):
    """A write of a batch hands hundreds of entries over; once published they are cleared by emptying the outbox
    (guarded: same length, same first and last entry) instead of `$pullAll`, which the local server compares pairwise.
    An entry another write added while they were being published stays, and goes out with its own kick."""
    db = AsyncMongoClient(infra.mongo, tz_aware=True)[ns.db("handoff")]
    col = db.batches
    rec = Recorder()
    relay = OutboxRelay(rec.publish, [col], db.audit)
    statements = []
    for name in ("update_one", "update_many"):
        real = getattr(col, name)
        setattr(col, name, lambda *a, _real=real, _name=name, **kw: statements.append(_name) or _real(*a, **kw))

    batch = [entry(f"a{i}") for i in range(300)]
    await col.insert_one({"_id": "frame", "_outbox": list(batch)})
    relay.kick(col, "frame", batch)
    assert await relay.drain_hot() == 300
    assert (await col.find_one({"_id": "frame"}))["_outbox"] == [] and statements == ["update_one"]  # one, emptied

    second = [entry(f"b{i}") for i in range(20)]
    await col.update_one({"_id": "frame"}, with_outbox({"$set": {"v": 2}}, second))
    late = entry("late")
    real_publish = rec.publish

    async def publish_while_a_write_lands(topic, key, value, headers):
        if Envelope.model_validate_json(value).payload["notification_id"] == "b19":
            await col.update_one({"_id": "frame"}, with_outbox({"$set": {"v": 3}}, [late]))
        return await real_publish(topic, key, value, headers)

    relay._publish = publish_while_a_write_lands
    relay.kick(col, "frame", second)
    statements.clear()
    assert await relay.drain_hot() == 20
    left = (await col.find_one({"_id": "frame"}))["_outbox"]
    assert [e["event_id"] for e in left] == [late["event_id"]]  # ours removed one by one, the new one kept
    relay.kick(col, "frame")
    assert await relay.drain_hot() == 1 and rec.sent[-1] == "late"
    assert (await col.find_one({"_id": "frame"}))["_outbox"] == []


async def test_published_entries_are_cleared_later_together_with_the_next_changes(infra, ns):
    """`clear_after`: removing entries rewrites the whole document, and an aggregate that just published often changes
    again at once (a dispatch's budget answer follows its ReserveBudget). Its published entries stay a moment, count as
    nothing to publish for the next guarded write (which hands its own over), are never sent again (not by a pass, not
    after the leftover scan finds them), and one statement then clears both writes' entries."""
    db = AsyncMongoClient(infra.mongo, tz_aware=True)[ns.db("handoff")]
    col = db.later
    rec = Recorder()
    relay = OutboxRelay(rec.publish, [col], db.audit, clear_after=0.5)
    statements = []
    for name in ("update_one", "update_many"):
        real = getattr(col, name)
        setattr(col, name, lambda *a, _real=real, _name=name, **kw: statements.append(_name) or _real(*a, **kw))

    first = [entry("r1"), entry("r2")]
    await col.insert_one({"_id": "dsp", "v": 1, "_outbox": list(first)})
    relay.kick(col, "dsp", first)
    assert await relay.drain_hot() == 2 and await relay.clear_due() == 0
    doc = await col.find_one({"_id": "dsp"})
    assert doc["_outbox"] == first and statements == []  # published, still there: not due yet
    assert relay.settled(doc["_outbox"]) and not relay.settled([*doc["_outbox"], entry("x")])

    answer = [entry("a1")]
    await db["later"].update_one({"_id": "dsp", "v": 1}, with_outbox({"$set": {"v": 2}}, answer))  # (not counted)
    relay.kick(col, "dsp", answer)  # handed over: what was in the outbox was published already
    assert await relay.drain_hot() == 1
    assert await relay.drain_once() == 1 and await relay.drain_hot() == 0  # the scan finds it; nothing sent again
    assert rec.sent == ["r1", "r2", "a1"] and relay.depth["later"] == 0

    await asyncio.sleep(0.6)
    statements.clear()
    assert await relay.clear_due() == 1
    assert (await col.find_one({"_id": "dsp"}))["_outbox"] == [] and statements == ["update_many"]  # one, both writes
    assert relay.next_clear_in() is None


async def test_a_batchs_document_is_cleared_at_once_even_when_clears_wait(infra, ns):
    """A budget frame takes hundreds of events a second: waiting a second before its clear, its outbox would grow to
    megabytes that every write of the frame rewrites. A document with a batch's worth of entries is emptied at once."""
    db = AsyncMongoClient(infra.mongo, tz_aware=True)[ns.db("handoff")]
    col = db.frames
    rec = Recorder()
    relay = OutboxRelay(rec.publish, [col], db.audit, clear_after=30.0)
    batch = [entry(f"f{i}") for i in range(12)]
    await col.insert_one({"_id": "frame", "_outbox": list(batch)})
    relay.kick(col, "frame", batch)
    assert await relay.drain_hot() == 12
    assert (await col.find_one({"_id": "frame"}))["_outbox"] == [] and relay.next_clear_in() is None

"""R-BUD-03 under load on real Kafka + MongoDB: 1,000 concurrent ReserveBudget commands against a frame that
fits exactly 300 dispatches yield exactly 300 reservations and 700 refusals — with the service killed
(SIGKILL) and restarted mid-run and some commands published twice. Plus the store's conditional update
raced directly by concurrent writers."""
from __future__ import annotations

import asyncio
import json
import random

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from pymongo import AsyncMongoClient

from budget_service.domain import Frame
from budget_service.store import FrameStore, step
from contracts.events.budget import ReserveBudget, frame_id
from servicekit.store import with_outbox
from tests.integration.budget_helpers import MEMBER, PLATFORM, answers, bureau, publish, register_platform, representative
from tests.support import eventually

FID = frame_id(2026, PLATFORM)
FEE, TRAVEL, FITS, TOTAL = 30_000, 2_000, 300, 1_000


class AnswerCounter:
    """Follows budget.events from the start and keeps the answers per dispatch id."""

    def __init__(self, bootstrap: str, topic: str):
        self.consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                         enable_auto_commit=False, group_id=None)
        self.records = []

    async def __aenter__(self):
        await self.consumer.start()
        self.task = asyncio.create_task(self._run())
        return self

    async def _run(self):
        while True:
            batch = await self.consumer.getmany(timeout_ms=200)
            for recs in batch.values():
                self.records.extend(recs)

    def answered(self) -> int:
        return len(set().union(*answers(self.records).values())) if self.records else 0

    async def __aexit__(self, *exc):
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.consumer.stop()


def command(i: int) -> ReserveBudget:
    return ReserveBudget(command_id=f"cmd-{i}", frame_id=FID, dispatch_id=f"disp-{i}", member_id=MEMBER,
                         fee=FEE, travel=TRAVEL)


@pytest.mark.timeout(900)  # ~1 min alone; the shared local server serialises every update of every engineer
async def test_R_BUD_03_1000_concurrent_reservations_exactly_300_fit_across_sigkill_and_duplicates(services, infra, ns):
    svc = services("budget")
    await register_platform(infra, ns)
    per = FEE + TRAVEL
    async with httpx.AsyncClient(base_url=svc.url, timeout=20) as http:
        r = await http.post("/frames", json={"fiscal_year": 2026, "platform_id": PLATFORM, "fee": FEE * FITS,
                                             "travel": TRAVEL * FITS}, headers=bureau())
        assert r.status_code == 201, r.text
        r = await http.put(f"/frames/{FID}/shares/{MEMBER}", json={"amount": per * FITS}, headers=representative())
        assert r.status_code == 200, r.text

    topic = ns.topic("budget.commands")
    order = list(range(TOTAL))
    random.Random(7).shuffle(order)
    first, second = order[:600], order[600:]
    async with AnswerCounter(infra.kafka, ns.topic("budget.events")) as seen:
        # 600 commands published concurrently from 4 producers, 50 of them twice
        await asyncio.gather(*(publish(infra.kafka, topic, [command(i) for i in first[k::4]]) for k in range(4)),
                             publish(infra.kafka, topic, [command(i) for i in first[:50]]))
        await eventually(lambda: asyncio.sleep(0, seen.answered() >= 100), timeout=300)
        svc.proc.kill()  # SIGKILL mid-run: no shutdown, no offset commit, outbox possibly unpublished
        svc.proc.wait()
        killed_at = seen.answered()
        # the rest arrives while the service is down, plus duplicates of commands answered before the kill
        await asyncio.gather(*(publish(infra.kafka, topic, [command(i) for i in second[k::4]]) for k in range(4)),
                             publish(infra.kafka, topic, [command(i) for i in first[:100] + second[:50]]))
        svc.start()
        await eventually(lambda: asyncio.sleep(0, seen.answered() >= TOTAL), timeout=600, interval=0.5)
        got = answers(seen.records)

    assert killed_at < TOTAL  # the kill really happened mid-run
    reserved, refused = got.get("BudgetReserved", set()), got.get("BudgetRefused", set())
    assert len(reserved) == FITS and len(refused) == TOTAL - FITS
    assert not reserved & refused  # a duplicate always got its original answer
    async with httpx.AsyncClient(base_url=svc.url, timeout=20) as http:
        f = (await http.get(f"/frames/{FID}", headers=bureau())).json()
        chk = (await http.get(f"/frames/{FID}/check", headers=bureau())).json()
    assert f["reserved"] == per * FITS and f["remaining"] == 0 and len(f["open_reservations"]) == FITS
    assert chk["consistent"] and chk["violations"] == [] and chk["ledger_entries"] == 2 + FITS
    refusal_codes = {json.loads(r.value)["payload"]["reason_code"] for r in seen.records
                     if json.loads(r.value)["event_type"] == "budget.BudgetRefused"}
    assert refusal_codes == {"insufficient_balance"}


class _Svc:
    """The two writes FrameStore needs from the service kit, without Kafka (outbox entries stay stored)."""

    def __init__(self, db):
        self.db = db

    def nothing_to_publish(self, outbox):  # as a Service whose relay has published nothing yet
        return outbox == []

    async def write(self, col, filter, update, events=(), outbox_was_empty=False):
        return await col.update_one(filter, with_outbox(update, list(events)))

    async def insert(self, col, doc, events=()):
        return await col.insert_one({**doc, "_outbox": list(events)})


async def test_R_BUD_03_two_writers_racing_on_one_frame_cannot_spend_the_same_yen(infra, ns):
    client = AsyncMongoClient(infra.mongo)
    try:
        db = client[ns.db("budget")]
        stores = [FrameStore(_Svc(db)), FrameStore(_Svc(db))]  # two replicas, one database
        f = Frame.allocate(frame_id="f-race", fiscal_year=2026, platform_id="p", representative_id="rep",
                           bureau_id="b", fee=10_000, travel=0, actor="bureau", why="race", at="t")
        assert await stores[0].save(None, f, [])

        def reserve(i):
            async def decide(loaded):
                a = loaded.frame.reserve(command_id=f"c{i}", dispatch_id=f"d{i}", member_id="rep",
                                         member_role="representative", fee=1_000, travel=0, actor="t", at="t")
                return loaded.frame, [], a
            return stores[i % 2].mutate("f-race", decide)

        results = await asyncio.gather(*(reserve(i) for i in range(30)))
        assert sum(a.kind == "reserved" for a in results) == 10
        assert sum(a.kind == "refused" for a in results) == 20
        doc = await db.frames.find_one({"_id": "f-race"})
        assert await db.ledger.count_documents({"frame_id": "f-race", "kind": "reservation"}) == 10
        assert len(await stores[1].open_reservations("f-race")) == 10
        assert doc["balances"]["reserved_total"] == 10_000 and await db.answers.count_documents({}) == 30
        assert doc["version"] == 31
    finally:
        await client.drop_database(ns.db("budget"))
        await client.close()


async def test_R_BUD_05_a_step_whose_writer_died_before_its_documents_is_completed_by_the_next_load(infra, ns):
    """The frame's update carries the step (`pending`, stored packed) and the step's ledger line, reservation and
    answer follow as inserts; a writer that dies in between leaves them to whoever loads the frame next. A frame
    stored before the step was packed (a document) completes the same way. A repeated command is answered again
    through the frame's outbox with the version moved, and moves no yen."""
    client = AsyncMongoClient(infra.mongo)
    try:
        db = client[ns.db("budget")]
        store = FrameStore(_Svc(db))
        f = Frame.allocate(frame_id="f-died", fiscal_year=2026, platform_id="p", representative_id="rep",
                           bureau_id="b", fee=10_000, travel=0, actor="bureau", why="t", at="t")
        assert await store.save(None, f, [])

        def reserve(i):
            async def decide(loaded):
                a = loaded.frame.reserve(command_id=f"c{i}", dispatch_id=f"d{i}", member_id="rep",
                                         member_role="representative", fee=1_000, travel=0, actor="t", at="t")
                return loaded.frame, [{"event_id": f"e{i}-{loaded.version}", "answer": a.kind}], a
            return decide

        async def died(*a):
            return None  # the process ended right after the frame's update
        store._materialize, materialize = died, store._materialize
        await store.mutate("f-died", reserve(1), command_id="c1", dispatch_id="d1")
        store._materialize = materialize
        stored = await db.frames.find_one({"_id": "f-died"})
        assert isinstance(stored["pending"], bytes) and await db.answers.count_documents({}) == 0

        loaded = await FrameStore(_Svc(db)).load("f-died", command_id="c1", dispatch_id="d1")  # another replica
        assert loaded.frame.answers["c1"].kind == "reserved" and loaded.frame.reservations["d1"].amount == 1_000
        assert await db.ledger.count_documents({"frame_id": "f-died", "kind": "reservation"}) == 1

        # the same step as the earlier version stored it: a document; its inserts gone again
        await db.frames.update_one({"_id": "f-died"}, {"$set": {"pending": step(stored["pending"])}})
        for col in (db.ledger, db.reservations, db.answers):
            await col.delete_many({"frame_id": "f-died", "seq": {"$ne": 1}} if col is db.ledger else {})
        loaded = await store.load("f-died", command_id="c1", dispatch_id="d1")
        assert loaded.frame.answers["c1"].kind == "reserved" and await db.answers.count_documents({}) == 1

        before = await db.frames.find_one({"_id": "f-died"})
        again = await store.mutate("f-died", reserve(1), command_id="c1", dispatch_id="d1")  # a repeat: its answer again, nothing else moves
        after = await db.frames.find_one({"_id": "f-died"})
        assert again.kind == "reserved" and after["balances"] == before["balances"]
        assert after["version"] == before["version"] + 1
        assert [e["event_id"] for e in after["_outbox"]][-1] == f"e1-{before['version']}"
    finally:
        await client.drop_database(ns.db("budget"))
        await client.close()

"""Dispatch's batch of budget answers (issue 22): the answers one poll returns are decided by the aggregate's own methods
and written with one bulk write of per-dispatch guarded updates, each with its outbox entries (R-DSP-08, R-DSP-14);
a duplicate answer in the same batch is applied once, a freed slot goes back (R-DSP-03), and a bad message is
dead-lettered alone while the rest of its batch is applied (R-OPS-02)."""
from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace

from pymongo import AsyncMongoClient

from contracts import Envelope
from contracts.events.budget import BudgetRefused, BudgetReserved, ReserveBudget
from dispatch_service.consumers import budget_handlers
from dispatch_service.domain.dispatch import Dispatch
from dispatch_service.store import Store
from servicekit.bus import Consumer
from servicekit.settings import Settings
from servicekit.store import outbox_entry, with_outbox

T0 = datetime.now(UTC)


class FakeBroker:
    def __init__(self):
        self.published = []

    def subscriber(self, *args, **options):
        return lambda handler: handler

    async def publish(self, body, topic, key=None, headers=None):
        self.published.append((topic, body, headers))


def fake_service(db, settings: Settings):
    """What Store needs of a Service: the database, events as outbox entries, a relay to tell (its kicks
    recorded in `kicks`)."""
    kicks: list = []

    def event(msg, *, actor=None, cause=None, event_id=None):
        env = Envelope.wrap(msg, producer="dispatch", actor=actor, event_id=event_id,
                            causation_id=cause.event_id if cause else None)
        return outbox_entry(env, settings.topic(msg.topic))

    async def write(col, filter, update, *, events=(), upsert=False, outbox_was_empty=False):
        res = await col.update_one(filter, with_outbox(update, list(events)), upsert=upsert)
        if events:
            kicks.append(filter["_id"])
        return res

    async def insert(col, doc, *, events=()):
        return await col.insert_one({**doc, "_outbox": list(events)})

    return SimpleNamespace(db=db, settings=settings, event=event, write=write, insert=insert,
                           nothing_to_publish=lambda outbox: outbox == [],
                           inserts=lambda col: SimpleNamespace(one=col.insert_one),
                           relay=SimpleNamespace(kick=lambda col, doc_id, entries=None: kicks.append(doc_id)),
                           kicks=kicks)


def accepted_doc(dispatch_id: str) -> tuple[dict, ReserveBudget]:
    """An accepted route-A dispatch waiting for its reservation, built by the aggregate itself."""
    fy = T0.year if T0.month >= 4 else T0.year - 1
    doc, _ = Dispatch.request({"_id": dispatch_id, "business_id": f"biz-{dispatch_id}", "expert_id": "ex-1",
                               "issue": "x" * 30, "planned_visits": [{"day": T0.date().isoformat(), "hours": 2,
                                                                       "mode": "onsite"}], "travel_estimate": 0},
                              actor="staff-1", now=T0)
    doc.update(route="A", institution_id="org-1", platform_id="pf-1", business_account_id="acct-biz",
               expert_account_id="acct-ex", accompanying_staff=["staff-1"], fiscal_year=fy)
    cmd = ReserveBudget(command_id=f"reserve-{dispatch_id}", frame_id=f"frame-{fy}-pf-1", dispatch_id=dispatch_id,
                        member_id="org-1", fee=15000, travel=0)
    ch = Dispatch(doc, T0).accept(reserve=cmd, exemption=None, actor="staff-1")
    doc = {**doc, **ch.set, "history": doc["history"] + ch.history, "version": 1}
    return doc, cmd


def reserved(cmd: ReserveBudget) -> tuple[Envelope, BudgetReserved]:
    e = BudgetReserved(frame_id=cmd.frame_id, dispatch_id=cmd.dispatch_id, command_id=cmd.command_id,
                       member_id=cmd.member_id, amount=cmd.fee + cmd.travel)
    return Envelope.wrap(e, producer="budget"), e


def refused(cmd: ReserveBudget) -> tuple[Envelope, BudgetRefused]:
    e = BudgetRefused(frame_id=cmd.frame_id, dispatch_id=cmd.dispatch_id, command_id=cmd.command_id,
                      reason_code="insufficient_balance", reason="The frame is spent.")
    return Envelope.wrap(e, producer="budget"), e


async def world(infra, ns, *names: str):
    db = AsyncMongoClient(infra.mongo, tz_aware=True)[ns.db("dispatch")]
    settings = Settings(service_name="dispatch", topic_prefix=ns.prefix, consumer_max_attempts=1)
    svc = fake_service(db, settings)
    store = Store(svc)
    cmds = {}
    for name in names:
        doc, cmds[name] = accepted_doc(name)
        await db.dispatches.insert_one(doc)
    return svc, store, cmds


def status_events(doc: dict) -> list[str]:
    return [json.loads(e["value"])["payload"]["status"] for e in doc.get("_outbox", [])
            if json.loads(e["value"])["event_type"] == "dispatch.DispatchStatusChanged"]


async def test_R_DSP_14_a_duplicate_answer_in_one_batch_is_applied_once_and_each_dispatch_gets_its_events(infra, ns):
    svc, store, cmds = await world(infra, ns, "dsp-a", "dsp-b", "dsp-c")
    fy = (await store.get("dsp-c"))["fiscal_year"]
    await store.slots.insert_one({"_id": f"biz-dsp-c:{fy}:1", "n": 1, "business_id": "biz-dsp-c", "fiscal_year": fy,
                                  "dispatch_id": "dsp-c", "at": T0})
    single, batch = budget_handlers(store)
    dup = reserved(cmds["dsp-a"])
    await batch[BudgetReserved]([dup, reserved(cmds["dsp-b"]), dup, reserved(cmds["dsp-a"]), refused(cmds["dsp-c"])])

    a, b, c = [await store.dispatches.find_one({"_id": d}) for d in ("dsp-a", "dsp-b", "dsp-c")]
    assert a["status"] == "approved" and b["status"] == "approved"
    assert status_events(a) == ["reserved", "approved"] and status_events(b) == ["reserved", "approved"]
    assert [h["status"] for h in a["history"]].count("approved") == 1 and a["version"] == 2
    assert a["reserved"]["event_id"] == dup[0].event_id
    # R-DSP-08 / R-DSP-03: the refusal is written with its event and the free dispatch goes back at once
    assert c["status"] == "refused" and c["reason_code"] == "budget_insufficient_balance"
    assert status_events(c) == ["refused"] and "slot_release" not in c
    assert await store.slots.count_documents({"dispatch_id": "dsp-c"}) == 0
    assert set(svc.kicks) == {"dsp-a", "dsp-b", "dsp-c"}  # the relay publishes them right after the write

    # redelivered whole (e.g. after a dependency failure): nothing moves again
    await batch[BudgetReserved]([dup, reserved(cmds["dsp-b"]), refused(cmds["dsp-c"])])
    again = await store.dispatches.find_one({"_id": "dsp-a"})
    assert again["version"] == 2 and status_events(again) == ["reserved", "approved"]


async def test_R_DSP_14_an_answer_for_a_dispatch_changed_meanwhile_is_decided_again_on_what_is_stored(infra, ns):
    """The bulk write's guard is the version read: a dispatch cancelled between the read and the write is decided
    again one by one, so a late reservation releases the money instead of approving a cancelled dispatch."""
    svc, store, cmds = await world(infra, ns, "dsp-d", "dsp-e")
    single, batch = budget_handlers(store)
    real_find = store.dispatches.find

    raced = []

    class Racing:  # cancels dsp-d right after the batch read it (once)
        def __getattr__(self, name):
            return getattr(real_find.__self__, name)

        def find(self, *args, **kw):
            cur = real_find(*args, **kw)

            async def gen():
                docs = [d async for d in cur]
                if not raced:
                    raced.append(1)
                    await store.change("dsp-d", lambda d: Dispatch(d, T0).cancel("plans changed", actor="acct-biz"),
                                       actor="acct-biz")
                for d in docs:
                    yield d
            return gen()

    store.dispatches = Racing()
    await batch[BudgetReserved]([reserved(cmds["dsp-d"]), reserved(cmds["dsp-e"])])
    store.dispatches = real_find.__self__
    d, e = [await store.dispatches.find_one({"_id": x}) for x in ("dsp-d", "dsp-e")]
    assert d["status"] == "cancelled" and d["release"]["command_id"] and "approved" not in status_events(d)
    assert e["status"] == "approved" and status_events(e) == ["reserved", "approved"]


async def test_R_OPS_02_a_bad_answer_in_a_batch_is_dead_lettered_alone_and_the_rest_applied(infra, ns):
    svc, store, cmds = await world(infra, ns, "dsp-f", "dsp-g", "dsp-h")
    await store.dispatches.update_one({"_id": "dsp-g"}, {"$set": {"status": "no-such-status"}})  # corrupt record
    single, batch = budget_handlers(store)
    broker = FakeBroker()
    consumer = Consumer(broker, svc.settings, "budget.events", single, batch_handlers=batch)
    records = []
    for i, name in enumerate(("dsp-f", "dsp-g", "dsp-h")):
        env, _ = reserved(cmds[name])
        records.append(SimpleNamespace(topic=svc.settings.topic("budget.events"), partition=0, offset=i,
                                       key=name.encode(), value=env.model_dump_json().encode(), headers=[]))
    await consumer.handle_batch([r.value for r in records], SimpleNamespace(raw_message=tuple(records)))

    f, g, h = [await store.dispatches.find_one({"_id": x}) for x in ("dsp-f", "dsp-g", "dsp-h")]
    assert f["status"] == "approved" and h["status"] == "approved"
    assert g["status"] == "no-such-status" and not g.get("_outbox")
    assert [(t, b) for t, b, _ in broker.published] == [(svc.settings.topic("budget.events.dlq"), records[1].value)]
    assert consumer.dead_letters == 1


async def test_R_DSP_14_a_batch_of_status_events_leaves_each_dispatch_at_its_newest_state_in_the_worklist(infra, ns):
    """The worklist (the agency's queue) from a batch: one write per dispatch, the newest state, the first event's
    request time; an older event redelivered after a newer one changes nothing."""
    from datetime import timedelta

    from contracts.events.dispatch import DispatchStatusChanged
    from dispatch_service import worklists
    from servicekit import paging

    db = AsyncMongoClient(infra.mongo, tz_aware=True)[ns.db("dispatch")]

    def status(dispatch_id: str, s: str, minutes: int):
        e = DispatchStatusChanged(dispatch_id=dispatch_id, status=s, route="A", fiscal_year=2026, business_id="biz-1",
                                  expert_id="ex-1", institution_id="org-1", platform_id="pf-1")
        env = Envelope.wrap(e, producer="dispatch")
        env.occurred_at = T0 + timedelta(minutes=minutes)
        return env, e

    await worklists.on_statuses(db, [status("dsp-w", "approved", 9)])  # already further along than the batch below
    batch = [status("dsp-v", "accepted", 1), status("dsp-w", "accepted", 1), status("dsp-v", "reserved", 2),
             status("dsp-v", "approved", 2)]
    await worklists.on_statuses(db, batch)
    v, w = [await db.worklist.find_one({"_id": x}) for x in ("dsp-v", "dsp-w")]
    assert v["status"] == "approved" and v["requested_at"] == batch[0][0].occurred_at.replace(microsecond=(
        batch[0][0].occurred_at.microsecond // 1000) * 1000)
    assert v["key"] == paging.sort_key(batch[0][0].occurred_at, "dsp-v")
    assert w["status"] == "approved" and w["at"] > v["at"]


async def test_R_DSP_03_the_slot_reconciler_settles_held_slots_in_bulk_and_frees_only_the_stranded(infra, ns, monkeypatch):
    """Every free-dispatch slot passes the reconciler once after its grace period: the slots of written, accepted
    dispatches are settled (kept, not looked at again), a slot whose dispatch was never written or gave it back is
    freed, and a slot still in its grace period is left alone. Under sustained load this runs for every dispatch, so
    the pass reads the dispatches with one query and settles with one statement, whatever the number of slots."""
    from datetime import timedelta

    svc, store, _ = await world(infra, ns, "d-held-1", "d-held-2", "d-gave-back")
    await svc.db.dispatches.update_one({"_id": "d-gave-back"}, {"$set": {"counts_free": False}})
    young = datetime.now(UTC)  # not T0: the module may have been imported minutes before this test runs
    old = young - timedelta(minutes=5)
    for n, (dispatch_id, at) in enumerate([("d-held-1", old), ("d-held-2", old), ("d-gave-back", old),
                                           ("d-never-written", old), ("d-being-screened", young)], 1):
        await svc.db.free_slots.insert_one({"_id": f"biz:2026:{n}", "n": n, "business_id": "biz", "fiscal_year": 2026,
                                            "dispatch_id": dispatch_id, "at": at})
    reads = []
    real_find = store.dispatches.find
    store.dispatches.find = lambda *a, **kw: reads.append(a) or real_find(*a, **kw)

    assert await store.reconcile_slots(grace_seconds=60) == 0  # none of these was claimed by this process
    assert reads == []  # and nothing was read: only the safety-net pass looks at slots it does not watch
    assert await store.reconcile_slots(grace_seconds=60, full=True) == 2
    slots = {s["dispatch_id"]: s async for s in svc.db.free_slots.find({})}
    assert sorted(slots) == ["d-being-screened", "d-held-1", "d-held-2"]
    assert slots["d-held-1"]["settled"] is True and slots["d-held-2"]["settled"] is True
    assert "settled" not in slots["d-being-screened"]
    assert len([r for r in reads if "_id" in r[0]]) == 1  # the slots' dispatches, read together
    reads.clear()
    assert await store.reconcile_slots(grace_seconds=60, full=True) == 0  # settled slots are not looked at again
    assert [r for r in reads if "_id" in r[0]] == []
    assert "biz:2026:5" in store.claims  # the young slot the full pass saw: looked at when its grace period is over

    # a backlog larger than one batch is settled in the same pass, batch after batch
    monkeypatch.setattr("dispatch_service.store.SLOT_BATCH", 2)
    for n in range(10, 15):
        await svc.db.free_slots.insert_one({"_id": f"biz:2026:{n}", "n": n, "business_id": "biz", "fiscal_year": 2026,
                                            "dispatch_id": "d-held-1" if n % 2 else "d-never-written", "at": old})
    assert await store.reconcile_slots(grace_seconds=60, full=True) == 3
    assert await svc.db.free_slots.count_documents({"settled": True}) == 4


async def test_R_DSP_03_R_DSP_14_the_clocks_read_what_this_process_left_behind_by_id_never_the_whole_collection(
        infra, ns):
    """The slot reconciler and the re-send clock look at the slots this process claimed and the dispatches it left
    waiting for budget, read by `_id` when their time comes; a year of other dispatches and slots is never read on a
    regular pass (only the rare safety-net pass filters the collections)."""
    from datetime import timedelta

    from dispatch_service import saga
    from dispatch_service.domain.saga import SagaParams

    svc, store, cmds = await world(infra, ns, "d-wait", "d-answered")
    fy = (await store.get("d-wait"))["fiscal_year"]
    old = datetime.now(UTC) - timedelta(days=30)
    await svc.db.dispatches.insert_many([{**(await store.get("d-answered")), "_id": f"hist-{i}", "status": "paid"}
                                         for i in range(300)])
    await svc.db.free_slots.insert_many([{"_id": f"h{i}:{fy}:1", "n": 1, "business_id": f"h{i}", "fiscal_year": fy,
                                          "dispatch_id": f"hist-{i}", "at": old, "settled": True} for i in range(300)])
    for name in ("d-wait", "d-answered"):  # as the request path leaves them: slot claimed, dispatch waiting
        assert await store.claim_slot(f"biz-{name}", fy, name, cap=3, used=[])
        store.watched(await store.get(name))
    single, batch = budget_handlers(store)
    await batch[BudgetReserved]([reserved(cmds["d-answered"])])
    assert "d-answered" not in store.waiting and "d-wait" in store.waiting  # the answer ended its watch
    await svc.db.free_slots.update_many({"dispatch_id": {"$in": ["d-wait", "d-answered"]}}, {"$set": {"at": old}})
    await svc.db.free_slots.insert_one({"_id": "stranded:1", "n": 1, "business_id": "x", "fiscal_year": fy,
                                        "dispatch_id": "d-never-written", "at": datetime.now(UTC)})
    store.claims.add("stranded:1", since=0.0)  # claimed long ago by this process, its request never written

    filters = []
    for col in (store.dispatches, store.slots):
        real = col.find
        col.find = lambda f=None, *a, _real=real, **kw: filters.append(f) or _real(f, *a, **kw)
    params = SagaParams(answer_seconds=0.0, max_attempts=3)
    assert await saga.sweep(store, params) == 1  # d-wait's reservation re-sent
    assert await store.reconcile_slots(grace_seconds=0.0) == 1  # the stranded slot freed, the two held ones settled
    assert filters and all(set(f) == {"_id"} for f in filters), filters
    assert (await store.get("d-wait"))["reserve"]["attempts"] == 2
    assert await svc.db.free_slots.count_documents({"settled": True}) == 302
    assert await svc.db.free_slots.find_one({"_id": "stranded:1"}) is None and len(store.claims) == 0
    assert "d-wait" in store.waiting  # still waiting: due again one answer period after the re-send

"""Notify in batches (issue 22: a new programme reaches its ~200,000 businesses' inboxes in minutes) on real Kafka and
MongoDB: the commands of one poll are applied together (`command_handlers` → `store.notify_many`) with the rules of
one at a time (R-NOT-03 people of a party, R-NOT-04 channels, digests and dedupe keys), and stay at-least-once safe:
a duplicate inside a batch or a redelivered batch adds nothing twice; a bad command is dead-lettered alone (R-OPS-02).

The commands are published before the service starts, on a topic of one partition, so its first poll holds them all.
"""
from __future__ import annotations

import asyncio
import json
import uuid

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pymongo import AsyncMongoClient

from contracts.events.notifications import Notify
from tests.integration.test_notifications_service import publish
from tests.support import eventually, read_topic


async def one_partition(infra, ns) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(ns.topic("notifications.commands"), num_partitions=1,
                                            replication_factor=1)])
    finally:
        await admin.close()


def programme(notification_id: str, recipient_id: str, kind: str = "account", **params) -> Notify:
    return Notify(notification_id=notification_id, recipient_id=recipient_id, recipient_kind=kind,
                  template="programme_recommended",
                  params={"programme_id": "prog-1", "business_id": "biz-x", "title": "事業承継補助金", **params})


async def test_R_NOT_03_R_NOT_04_a_batch_with_a_duplicate_notify_adds_one_inbox_item_and_one_delivery(
        infra, ns, services, smtp):
    _, port = smtp
    u = uuid.uuid4().hex[:6]
    alone, prime, digester, revoked = (f"{n}-{u}" for n in ("alone", "prime", "digester", "revoked"))
    db = AsyncMongoClient(infra.mongo)[ns.db("notifications")]
    # what identity's events taught the service: a business with three people (one revoked), one with nobody
    await db.parties.insert_many([{"_id": f"business:b-{u}", "account_ids": [prime, digester, revoked]},
                                  {"_id": f"business:empty-{u}", "account_ids": []}])
    await db.accounts.insert_many([{"_id": a, "email": f"{a}@example.jp", "revoked": a == revoked}
                                   for a in (alone, prime, digester, revoked)])
    await db.contacts.insert_one({"_id": digester, "digest": ["programme"]})  # programme news in the daily digest
    batch = [programme(f"n-a-{u}", alone), programme(f"n-b-{u}", f"b-{u}", "business"),
             programme(f"n-a-{u}", alone),  # the same command twice in one batch
             programme(f"n-b-{u}", f"b-{u}", "business"), programme(f"n-e-{u}", f"empty-{u}", "business")]
    await one_partition(infra, ns)
    await publish(infra, ns, *batch, producer="recommend")
    services("notifications", SMTP_HOST="127.0.0.1", SMTP_PORT=str(port))

    async def inbox():
        return [d async for d in db.inbox.find({})]

    items = await eventually(lambda: _enough(inbox(), 3), timeout=60)
    assert sorted(i["_id"] for i in items) == sorted([f"notify:n-a-{u}", f"notify:n-b-{u}:{prime}",
                                                      f"notify:n-b-{u}:{digester}"])
    assert len({i["at"] for i in items}) == 1  # written together: one batch, one clock reading

    async def state():
        audit = [d async for d in db.audit.find({})]
        return {"inbox": sorted(i["_id"] for i in await inbox()),
                "deliveries": sorted([(d["_id"], d["channel"], d["to"]) async for d in db.deliveries.find({})]),
                "digests": [(d["_id"], d["keys"], len(d["items"])) async for d in db.digests.find({})],
                "follows": sorted([d["_id"] async for d in db.follows.find({})]),
                "added": sorted(a["payload"]["item_id"] for a in audit if a["action"] == "notifications.InboxItemAdded"),
                "nobody": [a["key"] for a in audit if a["action"] == "notifications.NobodyToTell"]}

    first = await eventually(lambda: _when(state(), lambda s: s["follows"] and s["nobody"]), timeout=30)
    assert first["deliveries"] == sorted([(f"inbox:notify:n-a-{u}", "email", f"{alone}@example.jp"),
                                          (f"inbox:notify:n-b-{u}:{prime}", "email", f"{prime}@example.jp")])
    digest = first["digests"]
    assert len(digest) == 1 and digest[0][0].startswith(f"{digester}:") \
        and digest[0][1:] == ([f"inbox:notify:n-b-{u}:{digester}"], 1)
    assert first["follows"] == sorted(f"prog-1:{a}" for a in (alone, prime, digester))
    assert first["added"] == first["inbox"] and first["nobody"] == [f"empty-{u}"]

    # The whole batch redelivered (a crash before the commit): nothing is added twice; one more programme for the
    # digester joins the digest already made. A last command behind them on the same partition tells when they were
    # consumed.
    await publish(infra, ns, *batch, programme(f"n-more-{u}", digester), programme(f"n-last-{u}", alone),
                  producer="recommend")
    await eventually(lambda: _enough(inbox(), 5), timeout=60)
    again = await state()
    assert again["inbox"] == sorted([*first["inbox"], f"notify:n-more-{u}", f"notify:n-last-{u}"])
    assert again["deliveries"] == sorted([*first["deliveries"],
                                          (f"inbox:notify:n-last-{u}", "email", f"{alone}@example.jp")])
    assert again["digests"] == [(digest[0][0], [f"inbox:notify:n-b-{u}:{digester}", f"inbox:notify:n-more-{u}"], 2)]
    assert again["follows"] == first["follows"] and again["added"] == again["inbox"]
    assert again["nobody"] == [f"empty-{u}"] * 2  # nobody to tell is recorded each time it is found


async def test_R_OPS_02_a_bad_notify_in_a_batch_is_dead_lettered_alone_and_the_rest_applied(infra, ns, services, smtp):
    _, port = smtp
    u = uuid.uuid4().hex[:6]
    db = AsyncMongoClient(infra.mongo)[ns.db("notifications")]
    bad = Notify(notification_id=f"n-bad-{u}", recipient_id=f"acc-{u}", template="generic",
                 params={"bad\x00key": "a key MongoDB cannot store"})
    await one_partition(infra, ns)
    await publish(infra, ns, programme(f"n-1-{u}", f"acc-{u}"), bad, programme(f"n-2-{u}", f"acc-{u}"),
                  producer="recommend")
    svc = services("notifications", SMTP_HOST="127.0.0.1", SMTP_PORT=str(port), CONSUMER_MAX_ATTEMPTS="2")

    async def inbox():
        return [d async for d in db.inbox.find({})]

    items = await eventually(lambda: _enough(inbox(), 2), timeout=60)
    assert sorted(i["_id"] for i in items) == [f"notify:n-1-{u}", f"notify:n-2-{u}"]
    dead = await read_topic(infra.kafka, ns.topic("notifications.commands.dlq"), min_count=1, timeout=30)
    # only the bad one; more than once if a rebalance took the batch back before its offset was committed (the
    # commands were sent before the service started: its consumers were still joining), as any delivery may be
    assert {json.loads(r.value)["payload"]["notification_id"] for r in dead} == {f"n-bad-{u}"}
    reason = dict(dead[0].headers)["x-dlq-reason"].decode()
    assert reason.startswith("handler failed 2 times") and "NULL byte" in reason
    await asyncio.sleep(0.5)
    assert "batch failed; applying its messages one by one" in svc.log_file.read_text()
    assert len(await inbox()) == 2


async def _enough(found, n: int):
    items = await found
    return items if len(items) >= n else None


async def _when(found, ok):
    value = await found
    return value if ok(value) else None


async def test_R_NOT_03_a_notice_for_a_business_whose_binding_comes_later_waits_and_reaches_its_person(
        infra, ns, services):
    """Identity's events and these commands are different topics: a business may be told of something before the
    service has learnt who its people are. The notice waits under the business and goes out when its prime binds."""
    from contracts.events.identity import BindingChanged

    u = uuid.uuid4().hex[:6]
    biz, prime = f"b-late-{u}", f"prime-{u}"
    db = AsyncMongoClient(infra.mongo)[ns.db("notifications")]
    services("notifications")
    await publish(infra, ns, programme(f"n-late-{u}", biz, "business"), producer="community")

    async def parked():
        return await db.parked.find_one({"_id": f"business:{biz}", "notices.0": {"$exists": True}})
    await eventually(parked, timeout=60)
    assert not [d async for d in db.inbox.find({})]

    await publish(infra, ns, BindingChanged(business_id=biz, account_id=prime, role="prime"), producer="identity")

    async def delivered():
        return await db.inbox.find_one({"_id": f"notify:n-late-{u}:{prime}"})
    item = await eventually(delivered, timeout=60)
    assert item["recipient_id"] == prime
    assert await eventually(lambda: _when(db.parked.find_one({"_id": f"business:{biz}"}),
                                          lambda d: d is not None and not d.get("notices")), timeout=30)


async def test_R_NOT_03_a_status_notice_for_a_business_not_known_yet_waits_and_reaches_its_person_once(
        infra, ns, services):
    """A dispatch's status notice (R-NOT-03) to a business whose binding this service has not learnt yet waits under
    the business, while the parties already known hear at once; the business's prime gets it when it binds, under
    the item id the live path uses, so a redelivery of the status event afterwards adds nothing."""
    from aiokafka import AIOKafkaProducer

    from contracts import Envelope
    from contracts.events.dispatch import DispatchStatusChanged
    from contracts.events.experts import ExpertChanged
    from contracts.events.identity import BindingChanged

    u = uuid.uuid4().hex[:6]
    biz, prime, expert_id, expert = f"b-st-{u}", f"prime-{u}", f"e-st-{u}", f"exp-acct-{u}"
    db = AsyncMongoClient(infra.mongo)[ns.db("notifications")]
    services("notifications")
    await publish(infra, ns, ExpertChanged(expert_id=expert_id, account_id=expert, change="approved",
                                           status="registered", name="山田"), producer="experts")

    async def expert_known():
        return await db.parties.find_one({"_id": f"expert:{expert_id}", "account_ids": expert})
    await eventually(expert_known, timeout=60)
    status = Envelope.wrap(DispatchStatusChanged(dispatch_id=f"d-{u}", status="approved", route="B", fiscal_year=2026,
                                                 business_id=biz, expert_id=expert_id), producer="dispatch")

    async def send(env):
        p = AIOKafkaProducer(bootstrap_servers=infra.kafka)
        await p.start()
        try:
            await p.send_and_wait(ns.topic("dispatch.events"), env.model_dump_json().encode(), key=f"d-{u}".encode())
        finally:
            await p.stop()
    await send(status)

    async def expert_told():
        return await db.inbox.find_one({"_id": f"{status.event_id}:{expert}"})
    await eventually(expert_told, timeout=60)
    parked = await eventually(lambda: db.parked.find_one({"_id": f"business:{biz}", "notices.0": {"$exists": True}}),
                              timeout=30)
    assert [n["params"]["role"] for n in parked["notices"]] == ["business"]

    await publish(infra, ns, BindingChanged(business_id=biz, account_id=prime, role="prime"), producer="identity")

    async def prime_told():
        return await db.inbox.find_one({"_id": f"{status.event_id}:{prime}"})
    item = await eventually(prime_told, timeout=60)
    assert item["template"] == "dispatch_status" and item["params"]["status"] == "approved"
    assert await eventually(lambda: _when(db.parked.find_one({"_id": f"business:{biz}"}),
                                          lambda d: d is not None and not d.get("notices")), timeout=30)
    await send(status)  # redelivered: the prime's item is the one already there
    later = Envelope.wrap(DispatchStatusChanged(dispatch_id=f"d-{u}", status="visited", route="B", fiscal_year=2026,
                                                business_id=biz, expert_id=expert_id), producer="dispatch")
    await send(later)  # same key, after the repeat: once it is in, the repeat was handled

    async def both():
        items = [d async for d in db.inbox.find({"recipient_id": prime})]
        return items if any(i["_id"] == f"{later.event_id}:{prime}" for i in items) else None
    items = await eventually(both, timeout=60)
    assert sorted(i["params"]["status"] for i in items) == ["approved", "visited"]

"""The batched consumer (issue 22 item 1): what one poll returns goes to batch handlers in runs, in order, and a bad
message of a batch is dead-lettered alone (R-OPS-02) while the rest of its batch is applied."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

from contracts import Envelope
from contracts.events.budget import CreditRefund, ReserveBudget
from servicekit.bus import Consumer
from servicekit.settings import Settings
from tests.support import FakeBroker


def record(offset: int, value: bytes, key: bytes | None = b"frame-1"):
    return SimpleNamespace(topic="budget.commands", partition=0, offset=offset, key=key, value=value, headers=[])


def reserve(command_id: str) -> bytes:
    cmd = ReserveBudget(command_id=command_id, frame_id="frame-1", dispatch_id=f"d-{command_id}", member_id="m",
                        fee=1, travel=0)
    return Envelope.wrap(cmd, producer="test").model_dump_json().encode()


def refund(command_id: str) -> bytes:
    cmd = CreditRefund(command_id=command_id, frame_id="frame-1", dispatch_id="d-x", amount=1)
    return Envelope.wrap(cmd, producer="test").model_dump_json().encode()


def consumer(calls: list, bad: set[str] = frozenset()):
    async def single(env, msg):
        if msg.command_id in bad:
            raise ValueError(f"bad {msg.command_id}")
        calls.append(("one", msg.command_id))

    async def batch(items):
        if any(m.command_id in bad for _, m in items):
            raise ValueError("a bad one in the batch")
        calls.append(("batch", [m.command_id for _, m in items]))

    broker = FakeBroker()
    settings = Settings(service_name="budget", consumer_max_attempts=1)
    c = Consumer(broker, settings, "budget.commands", {ReserveBudget: single, CreditRefund: single},
                 batch_handlers={ReserveBudget: batch})
    return c, broker


def run(c: Consumer, records) -> None:
    asyncio.run(c.handle_batch([r.value for r in records], SimpleNamespace(raw_message=tuple(records))))


def test_a_batch_consumer_subscribes_for_batches_and_a_single_one_does_not():
    c, broker = consumer([])
    assert broker.options["batch"] is True and broker.options["max_records"] == Settings().consumer_batch_max
    single_broker = FakeBroker()
    Consumer(single_broker, Settings(service_name="budget"), "budget.commands", {ReserveBudget: lambda e, m: None})
    assert "batch" not in single_broker.options


def test_runs_of_batch_capable_messages_go_together_and_order_is_kept_around_single_ones():
    calls: list = []
    c, _ = consumer(calls)
    run(c, [record(0, reserve("a")), record(1, reserve("b")), record(2, refund("r")), record(3, reserve("c"))])
    assert calls == [("batch", ["a", "b"]), ("one", "r"), ("batch", ["c"])]
    assert (c.batches, c.batched) == (2, 3)


def test_R_OPS_02_a_bad_message_in_a_batch_is_dead_lettered_alone_and_the_rest_applied():
    calls: list = []
    c, broker = consumer(calls, bad={"b"})
    run(c, [record(0, reserve("a")), record(1, b"not json"), record(2, reserve("b")), record(3, reserve("c")),
            record(4, reserve("d"), key=None)])
    assert calls == [("one", "a"), ("one", "c")]  # the batch failed, so each message went alone
    reasons = [h["x-dlq-reason"] for _, _, h in broker.published]
    assert len(reasons) == 3 and c.dead_letters == 3
    assert reasons[0].startswith("not a valid envelope")
    assert reasons[1].startswith("no key")
    assert reasons[2].startswith("handler failed 1 times: ValueError('bad b')")
    assert [h["x-dlq-source"] for _, _, h in broker.published] == [
        "budget.commands/0/1", "budget.commands/0/4", "budget.commands/0/2"]


def test_batch_handlers_join_a_batched_consumer_after_other_handlers_and_never_share_a_type():
    """servicekit's deny list creates the identity.events consumer first; a service that names the topic batched
    (recommend) adds its batch handlers afterwards."""
    import pytest

    from contracts.events.identity import AccountRevoked, BusinessRegistered

    async def one(env, msg):
        pass

    async def many(items):
        pass

    broker = FakeBroker()
    c = Consumer(broker, Settings(service_name="recommend"), "identity.events", {AccountRevoked: one}, batched=True)
    assert broker.options["batch"] is True and not c.batch_handlers
    c.add({BusinessRegistered: one}, {BusinessRegistered: many})
    assert c.batch_handlers == {"identity.BusinessRegistered": many}
    with pytest.raises(ValueError, match="has a batch handler"):
        c.add({BusinessRegistered: one})  # a second handler the batch handler would skip
    with pytest.raises(ValueError, match="single-message handler"):
        c.add({}, {AccountRevoked: many})
    single = Consumer(FakeBroker(), Settings(service_name="budget"), "identity.events", {AccountRevoked: one})
    with pytest.raises(ValueError, match="batched=True"):
        single.add({BusinessRegistered: one}, {BusinessRegistered: many})


class Clock:
    def __init__(self):
        self.now, self.slept = 0.0, []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class Polled:
    """aiokafka's consumer as the batch poll sees it: `getmany` waits up to its timeout unless records are there."""

    def __init__(self, clock: Clock, wait: float, records: dict):
        self.clock, self.wait, self.records = clock, wait, records

    async def getmany(self, timeout_ms: int, max_records: int | None = None):
        self.clock.now += self.wait
        return self.records


def test_R_OPS_03_an_idle_batch_consumer_polls_without_sleeping_as_long_again(monkeypatch):
    import servicekit.bus as bus

    clock = Clock()
    monkeypatch.setattr(bus, "time", clock)
    monkeypatch.setattr(bus, "asyncio", clock)
    sub = SimpleNamespace(batch_timeout_ms=200, max_records=10)
    rec = record(1, b"{}")
    assert asyncio.run(bus._poll_batch(sub, Polled(clock, 0, {"tp": [rec]}))) == (rec,)  # records: handed over at once
    assert asyncio.run(bus._poll_batch(sub, Polled(clock, 0.2, {}))) == ()
    assert clock.slept == []     # the poll waited its 200 ms: no sleep as long again (FastStream 0.7 slept 200 ms more)
    assert asyncio.run(bus._poll_batch(sub, Polled(clock, 0, {}))) == ()
    assert clock.slept == [0.2]  # back at once with nothing (no partitions assigned yet): a pause, never a spin

"""The outbox relay's own loop: how it comes back after failures, and how often it scans whole collections."""
from __future__ import annotations

import asyncio

from aiokafka import errors as kafka_errors

from servicekit.outbox import SCAN_SHARE, OutboxRelay, paced


async def test_relay_counts_its_failures_back_to_zero_once_a_pass_goes_through():
    """After the broker is back, the relay is well again: the next outage starts its backoff from the first step and
    Kafka is no longer reported down (the reset had sat unreachable after a `raise`)."""
    relay = OutboxRelay(publish=None, collections=[], audit=None, poll_seconds=0.05, scan_seconds=0.0)
    passes = []

    async def drain_once():
        passes.append(1)
        if len(passes) == 1:
            raise kafka_errors.KafkaConnectionError("broker gone")
        return 0
    relay.drain_once = drain_once
    relay.start()
    try:
        for _ in range(100):
            await asyncio.sleep(0.05)
            if len(passes) >= 3:
                break
        assert len(passes) >= 3
        assert relay.failed_passes == 0
        assert not relay.health.is_down("kafka")
    finally:
        await relay.stop()



async def test_relay_scans_whole_collections_no_more_than_a_hundredth_of_the_time():
    """R-OPS-03: the leftover scan reads every document of the outbox collections; at a million documents it must not
    run every few seconds. A scan that took 10 ms puts the next one at least a second away."""
    relay = OutboxRelay(publish=None, collections=[], audit=None, poll_seconds=0.01, scan_seconds=0.01)
    scans = []

    async def drain_once():
        scans.append(asyncio.get_running_loop().time())
        await asyncio.sleep(0.01)
        return 0
    relay.drain_once = drain_once
    relay.start()
    try:
        await asyncio.sleep(2.5)
    finally:
        await relay.stop()
    assert SCAN_SHARE >= 100 and relay.scan_every >= SCAN_SHARE * 0.01
    gaps = [b - a for a, b in zip(scans, scans[1:])]
    assert gaps and min(gaps) >= SCAN_SHARE * 0.01 * 0.9
    assert len(scans) <= 3


async def test_relay_publishes_what_writes_hand_over_while_a_long_scan_runs():
    """R-OPS-03: the leftover scan of a year's documents takes seconds; awaited in the passes' loop it held every
    event back for as long (the dispatch saga's request → ReserveBudget p99 35 s at 200,000 dispatches)."""
    relay = OutboxRelay(publish=None, collections=[], audit=None, poll_seconds=0.01, scan_seconds=0.0)
    scanning, release, drained = asyncio.Event(), asyncio.Event(), []

    async def drain_once():
        scanning.set()
        await release.wait()
        return 0

    async def drain_hot():
        hot, relay._hot = relay._hot, []
        drained.extend(doc_id for _, doc_id in hot)
        return len(hot)
    relay.drain_once, relay.drain_hot = drain_once, drain_hot
    relay.start()
    try:
        await asyncio.wait_for(scanning.wait(), 2)
        relay.kick("dispatches", "dsp-1")
        for _ in range(200):
            if drained:
                break
            await asyncio.sleep(0.01)
        assert drained == ["dsp-1"] and not release.is_set(), "published while the scan was still running"
    finally:
        release.set()
        await relay.stop()


async def test_relay_asked_for_a_scan_while_one_runs_waits_for_it_instead_of_spinning():
    """A scan asked for (a backlog, a failure, `kick()`) while one runs starts after it; the loop meanwhile waits."""
    relay = OutboxRelay(publish=None, collections=[], audit=None, poll_seconds=0.05, scan_seconds=60.0)
    release, scans, passes = asyncio.Event(), [], []

    async def drain_once():
        scans.append(1)
        if len(scans) == 1:
            relay.kick()  # another scan wanted
            await release.wait()
        return 0

    async def drain_hot():
        passes.append(1)
        return 0
    relay.drain_once, relay.drain_hot = drain_once, drain_hot
    relay.start()
    try:
        await asyncio.sleep(0.3)
        assert len(scans) == 1 and len(passes) < 30, (len(scans), len(passes))
        release.set()
        for _ in range(100):
            if len(scans) == 2:
                break
            await asyncio.sleep(0.01)
        assert len(scans) == 2
    finally:
        release.set()
        await relay.stop()


def test_whole_collection_passes_are_paced_by_what_they_cost_and_drift_apart():
    """R-OPS-03: never sooner than the interval or SCAN_SHARE times the last pass, at most half as long again, and not
    the same every time (two passes a minute apart, or two replicas, do not keep reading the database together)."""
    waits = [paced(60.0, 0.9) for _ in range(200)]
    floor = max(60.0, SCAN_SHARE * 0.9)
    assert all(floor <= w <= 1.5 * floor for w in waits)
    assert max(waits) - min(waits) > 0.2 * floor
    assert all(60.0 <= paced(60.0, 0.0) <= 90.0 for _ in range(50))

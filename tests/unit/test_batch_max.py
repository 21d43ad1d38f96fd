"""A topic's batch consumer may take more records per poll than the default (issue 22: learning an import's profiles)."""
from __future__ import annotations

from contracts.events.identity import BusinessRegistered
from servicekit.service import Service


def _max_records(svc: Service) -> dict[str, int]:
    return {str(getattr(sub.topics[0], "name", sub.topics[0])): sub.max_records for sub in svc.broker.subscribers}


def test_R_OPS_03_a_topic_named_in_batch_max_polls_that_many_records_the_others_the_default():
    async def one(env, e):
        return None

    async def many(items):
        return None

    svc = Service("probe", title="Probe", honour_revocations=False, batch_max={"identity.events": 777})
    svc.consume("identity.events", {BusinessRegistered: one}, batch={BusinessRegistered: many})
    svc.consume("recommend.events", {BusinessRegistered: one}, batch={BusinessRegistered: many})
    got = _max_records(svc)
    assert got[svc.settings.topic("identity.events")] == 777
    assert got[svc.settings.topic("recommend.events")] == svc.settings.consumer_batch_max != 777


def test_consumers_fetch_with_the_configured_wait_not_kafkas_half_second(monkeypatch):
    """A fetch the broker holds for up to fetch.max.wait.ms delayed the saga's budget answers by up to ~430 ms; every
    consumer of a service asks for the configured bound instead (CONSUMER_FETCH_WAIT_MS)."""
    async def one(env, e):
        return None

    monkeypatch.setenv("CONSUMER_FETCH_WAIT_MS", "70")
    svc = Service("probe", title="Probe", honour_revocations=False)
    svc.consume("identity.events", {BusinessRegistered: one})
    svc.consume("recommend.events", {BusinessRegistered: one}, batch={BusinessRegistered: lambda items: None})
    assert [sub._connection_args["fetch_max_wait_ms"] for sub in svc.broker.subscribers] == [70, 70]

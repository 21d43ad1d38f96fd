"""Transient or permanent (issue 15): a dependency that does not answer is waited for, never dead-lettered;
what is wrong with a message itself is. And the log rate limiter that keeps an outage to a few lines."""
from __future__ import annotations

import json
import logging

import pytest
from aiokafka import errors as kafka_errors
from pydantic import ValidationError
from pymongo import errors as mongo_errors

from contracts import Envelope
from contracts.events.identity import AccountRevoked
from servicekit.bus import Undeliverable, dead_letter_headers, decode
from servicekit.faults import Health, Transient, backoff, dependency_of, is_transient
from servicekit.logs import RateLimit


@pytest.mark.parametrize("exc, dependency", [
    (mongo_errors.ServerSelectionTimeoutError("no servers"), "mongodb"),
    (mongo_errors.AutoReconnect("connection reset"), "mongodb"),
    (mongo_errors.NetworkTimeout("timed out"), "mongodb"),
    (mongo_errors.ConnectionFailure("refused"), "mongodb"),
    (kafka_errors.KafkaConnectionError("broker gone"), "kafka"),
    (kafka_errors.KafkaTimeoutError(), "kafka"),
    (kafka_errors.NodeNotReadyError(), "kafka"),
    (kafka_errors.RequestTimedOutError(), "kafka"),
    (ConnectionRefusedError(), "other"),
    (TimeoutError(), "other"),
    (Transient("frame kept changing"), "other"),
])
def test_dependency_failures_are_transient(exc, dependency):
    assert dependency_of(exc) == dependency
    assert is_transient(exc)


@pytest.mark.parametrize("exc", [
    ValueError("bad amount"), KeyError("frame"), TypeError("unsupported operand"),
    mongo_errors.DuplicateKeyError("E11000"), mongo_errors.OperationFailure("bad update operator"),
    kafka_errors.UnsupportedVersionError(),
])
def test_deterministic_failures_are_permanent(exc):
    assert dependency_of(exc) is None


def test_a_transient_cause_makes_the_wrapper_transient():
    try:
        try:
            raise mongo_errors.AutoReconnect("reset")
        except mongo_errors.AutoReconnect as inner:
            raise RuntimeError("saving the frame failed") from inner
    except RuntimeError as e:
        assert dependency_of(e) == "mongodb"


def test_backoff_doubles_and_is_capped():
    assert [backoff(i) for i in range(7)] == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    assert backoff(10_000) == 5.0


def test_health_remembers_what_is_down_until_it_recovers():
    now = [100.0]
    h = Health(clock=lambda: now[0])
    h.failed("mongodb")
    now[0] = 103.0
    h.failed("mongodb")  # still the first failure's time
    assert h.is_down("mongodb") and h.down() == {"mongodb": 3.0}
    h.recovered("mongodb")
    assert not h.is_down("mongodb") and h.down() == {}


def _env(event_type: str, payload: dict) -> bytes:
    return json.dumps({"event_id": "e1", "event_type": event_type, "schema_version": 1, "key": "k1",
                       "producer": "t", "payload": payload}).encode()


def test_R_OPS_02_unknown_message_type_is_dead_lettered_not_dropped():
    with pytest.raises(Undeliverable, match="unknown message type 'identity.Nonsense'"):
        decode(_env("identity.Nonsense", {}), {AccountRevoked.message_type: AccountRevoked})


def test_a_registered_type_this_consumer_does_not_take_is_skipped():
    assert decode(_env("identity.TokenRevoked", {}), {AccountRevoked.message_type: AccountRevoked}) is None


def test_malformed_payload_is_undeliverable():
    with pytest.raises(Undeliverable, match="payload is not a valid"):
        decode(_env(AccountRevoked.message_type, {"account_id": 5}), {AccountRevoked.message_type: AccountRevoked})


class _Record:
    topic, partition, offset = "t.identity.events", 2, 41
    headers = (("traceparent", b"00-abc-def-01"), ("x-dlq-reason", b"old"))


def test_R_OPS_02_dead_letter_keeps_the_original_headers_and_says_where_it_came_from():
    h = dead_letter_headers("budget", _Record(), "bad")
    assert h == {"traceparent": "00-abc-def-01", "x-dlq-reason": "bad", "x-dlq-consumer": "budget",
                 "x-dlq-source": "t.identity.events/2/41"}


def _record(msg: str, level=logging.ERROR, exc: type | None = None) -> logging.LogRecord:
    r = logging.LogRecord("servicekit.outbox", level, __file__, 1, msg, None, (exc, exc(), None) if exc else None)
    return r


def test_rate_limit_passes_a_burst_per_kind_then_counts_the_rest():
    now = [0.0]
    f = RateLimit(window=10, burst=2, clock=lambda: now[0])
    passed = [f.filter(_record("relay failed", exc=ConnectionError)) for _ in range(1000)]
    assert passed.count(True) == 2
    # another kind is limited separately
    assert f.filter(_record("relay failed", exc=TimeoutError))
    # info lines are never limited
    assert all(f.filter(_record("started", level=logging.INFO)) for _ in range(50))
    now[0] = 10.5
    r = _record("relay failed", exc=ConnectionError)
    assert f.filter(r) and r.fields == {"suppressed": 998}
    assert f.suppressed_total == 998


def test_rate_limit_keeps_an_outage_to_a_few_lines_per_minute():
    now = [0.0]
    f = RateLimit(window=10, burst=3, clock=lambda: now[0])
    lines = 0
    for i in range(67_000):  # the 67,000 error lines over ~20 s of broker outage
        now[0] = i * 20 / 67_000
        lines += f.filter(_record("outbox relay pass failed; retrying", exc=ConnectionError))
    assert lines <= 9


def test_envelope_may_carry_a_given_event_id():
    env = Envelope.wrap(AccountRevoked(account_id="a1", reason="r"), producer="t", event_id="fixed")
    assert env.event_id == "fixed"
    with pytest.raises(ValidationError):
        Envelope.model_validate({**env.model_dump(), "key": ""})



def test_a_request_the_database_failed_is_answered_503_without_the_error_escaping_the_app():
    """The first request that meets a stopped database gets the 503 problem document, and the failure stays inside the
    app: an error that escaped it (as a handler for `Exception` lets it) makes uvicorn close the connection after the
    answer, and a client that reused the connection read nothing. TestClient re-raises what escapes."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from pymongo.errors import AutoReconnect

    from servicekit import problems
    from servicekit.faults import Health

    app, health = FastAPI(), Health()
    problems.install(app, health)

    @app.get("/frames/{frame_id}")
    async def frame(frame_id: str):
        raise AutoReconnect("127.0.0.1:27017: connection closed")

    with TestClient(app) as client:  # raise_server_exceptions=True
        r = client.get("/frames/f1")
        assert r.status_code == 503 and r.headers["retry-after"] == "5"
        assert r.headers["content-type"] == "application/problem+json" and r.json()["dependency"] == "mongodb"
        assert health.is_down("mongodb")
        assert client.get("/frames/f1").status_code == 503  # now answered before the route runs

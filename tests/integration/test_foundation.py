"""The platform foundation on real Kafka and a real MongoDB-wire server (no fakes).

HTTP → gateway → identity (database + outbox) → Kafka → recommend (consumer) → its own HTTP API,
plus the delivery guarantees every service relies on: dedupe, dead-letter, no lost events.
"""
from __future__ import annotations

import json

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from aiokafka import AIOKafkaProducer

from contracts import Envelope
from contracts.events.identity import BusinessRegistered
from tests.support import SERVICES, eventually, read_topic, service_port, token

BUSINESS = {"corporate_number": "7000012050002", "name": "テスト工業株式会社", "prefecture": "熊本県",
            "industry": "製造業", "employees": 12}
SOLE_PROPRIETOR = {k: v for k, v in BUSINESS.items() if k != "corporate_number"}  # bound at once (R-ID-07)


def auth(**kw) -> dict:
    return {"authorization": f"Bearer {token(**kw)}"}


async def test_http_to_kafka_to_consumer_through_the_gateway_in_one_trace(services, gateway, infra, ns):
    identity = services("identity", port=service_port("identity"))
    recommend = services("recommend", port=service_port("recommend"))
    owner = auth(sub="owner-1", roles=["business"])
    async with httpx.AsyncClient(base_url=gateway, timeout=10) as http:
        r = await http.post("/api/identity/businesses", json=SOLE_PROPRIETOR, headers=owner)
        assert r.status_code == 201, r.text
        assert r.headers.get("x-request-id")
        business_id = r.json()["business_id"]
        owner = auth(sub="owner-1", roles=["business"], biz=[{"id": business_id, "role": "prime"}])

        async def visible():
            r = await http.get(f"/api/recommend/businesses/{business_id}", headers=owner)
            return r.json() if r.status_code == 200 else None

        profile = await eventually(visible)
    assert (profile["name"], profile["prefecture"], profile["employees"]) == ("テスト工業株式会社", "熊本県", 12)

    async def cleared():  # its event published, then removed from the document (a second later: servicekit.outbox)
        doc = await _mongo(infra, ns.db("identity")).businesses.find_one({"_id": business_id})
        return doc if doc["_outbox"] == [] else None

    stored = await eventually(cleared, timeout=10)
    assert stored["owner"] == "owner-1"
    audit = await _mongo(infra, ns.db("identity")).audit.find_one({"key": business_id})
    assert (audit["actor"], audit["action"]) == ("owner-1", "identity.BusinessRegistered")

    # One trace: identity's HTTP server span → its Kafka publish → recommend's consumer span. A span is written
    # when it ends: the consumer's ends when its whole batch is applied, after the profile became visible.
    def kinds_in_trace() -> set:
        spans = identity.spans() + recommend.spans()
        server = next(s for s in spans if s["service"] == "identity" and s["kind"] == "SERVER"
                      and s["name"] == "POST /businesses")
        return {(s["service"], s["kind"]) for s in spans if s["trace_id"] == server["trace_id"]}

    async def one_trace():
        return kinds_in_trace() >= {("identity", "SERVER"), ("identity", "PRODUCER"), ("recommend", "CONSUMER")}
    await eventually(one_trace, timeout=30)


async def test_R_ID_05_gateway_refuses_missing_none_forged_expired_and_foreign_tokens(services, gateway):
    services("identity", port=service_port("identity"))
    async with httpx.AsyncClient(base_url=gateway, timeout=10) as http:
        assert (await http.get("/api/identity/healthz")).status_code == 200
        r = await http.post("/api/identity/businesses", json=BUSINESS)
        assert r.status_code == 401 and r.headers["content-type"].startswith("application/problem+json")
        assert (await http.post("/api/identity/businesses", json=BUSINESS, headers=auth(ttl=-60))).status_code == 401
        assert (await http.post("/api/identity/businesses", json=BUSINESS, headers=auth(aud="other"))).status_code == 401
        unsigned = jwt.encode({"sub": "x", "roles": ["operator"], "aud": "smeportal", "exp": 2**31}, None, algorithm="none")
        assert (await http.post("/api/identity/businesses", json=BUSINESS,
                                headers={"authorization": f"Bearer {unsigned}"})).status_code == 401
        other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        forged = token(key=other_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()).decode(), roles=["operator"])
        assert (await http.post("/api/identity/businesses", json=BUSINESS,
                                headers={"authorization": f"Bearer {forged}"})).status_code == 401
        # a valid token of a role that may not register a business: the service itself says 403
        r = await http.post("/api/identity/businesses", json=BUSINESS, headers=auth(roles=["expert"]))
        assert r.status_code == 403 and "business" in r.json()["detail"]


async def test_bad_input_gets_a_problem_document_not_a_500(services):
    identity = services("identity")
    async with httpx.AsyncClient(base_url=identity.url, timeout=10) as http:
        r = await http.post("/businesses", json={**BUSINESS, "corporate_number": "7000012050003"},
                            headers=auth(roles=["business"]))
        assert r.status_code == 422
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["errors"][0]["field"] == "corporate_number" and "check digit" in r.json()["detail"]
        r = await http.post("/businesses", content=b"{not json", headers={**auth(roles=["business"]),
                                                                          "content-type": "application/json"})
        assert r.status_code == 422
        head_office = {**BUSINESS, "postal_code": "860-0001", "address": "熊本県熊本市中央区1-1"}
        first = await http.post("/businesses", json=head_office, headers=auth(sub="rep", roles=["business"]))
        again = await http.post("/businesses", json=head_office, headers=auth(sub="someone", roles=["business"]))
        assert (first.status_code, again.status_code) == (201, 409)


async def test_readyz_checks_kafka_and_mongodb_for_every_service(services):
    for name in SERVICES:
        p = services(name)
        r = httpx.get(f"{p.url}/readyz", timeout=10)
        assert r.status_code == 200 and r.json()["checks"] == {"mongodb": "ok", "kafka": "ok"}, name


def _mongo(infra, db):
    from pymongo import AsyncMongoClient

    return AsyncMongoClient(infra.mongo)[db]


async def _produce(infra, topic: str, *values: bytes, key: bytes = b"k") -> None:
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka)
    await producer.start()
    try:
        for v in values:
            await producer.send_and_wait(topic, v, key=key)
    finally:
        await producer.stop()


def _registered(business_id: str, name: str) -> BusinessRegistered:
    return BusinessRegistered(business_id=business_id, name=name, prefecture="東京都", industry="小売業", employees=3)


async def test_redelivered_event_changes_nothing_the_second_time(services, infra, ns):
    services("recommend")
    profiles = _mongo(infra, ns.db("recommend")).business_profiles
    first = Envelope.wrap(_registered("biz-1", "First name"), producer="identity")
    await _produce(infra, ns.topic("identity.events"), first.model_dump_json().encode(), key=b"biz-1")

    async def settled(business_id: str):  # its segment contributions applied (the claim `pend` gone), events cleared
        doc = await profiles.find_one({"_id": business_id})
        return doc if doc and "pend" not in doc and not doc.get("_outbox") else None
    before = await eventually(lambda: settled("biz-1"))

    # The same event id again (as Kafka redelivers it), even with a different body, must not apply;
    # a later, different event for the same business proves the consumer went past the duplicate.
    dup = first.model_copy(update={"payload": {**first.payload, "name": "Changed by a duplicate"}})
    marker = Envelope.wrap(_registered("biz-2", "Marker"), producer="identity")
    await _produce(infra, ns.topic("identity.events"), dup.model_dump_json().encode(), key=b"biz-1")
    await _produce(infra, ns.topic("identity.events"), marker.model_dump_json().encode(), key=b"biz-1")
    await eventually(lambda: settled("biz-2"))
    assert await eventually(lambda: settled("biz-1")) == before


async def test_unprocessable_message_goes_to_the_dead_letter_topic_and_consumption_goes_on(services, infra, ns):
    services("recommend")
    topic = ns.topic("identity.events")
    bad_payload = Envelope.wrap(_registered("biz-x", "x"), producer="identity").model_dump(mode="json")
    bad_payload["payload"]["employees"] = "many"
    good = Envelope.wrap(_registered("biz-ok", "After the bad ones"), producer="identity")
    await _produce(infra, topic, b"\x00 not json at all", json.dumps(bad_payload).encode(),
                   good.model_dump_json().encode(), key=b"biz-ok")

    dead = await read_topic(infra.kafka, ns.topic("identity.events.dlq"), min_count=2)
    reasons = [dict(r.headers)["x-dlq-reason"].decode() for r in dead]
    assert len(dead) == 2
    assert "not a valid envelope" in reasons[0]
    assert "payload is not a valid identity.BusinessRegistered" in reasons[1] and "employees" in reasons[1]
    assert dead[0].value == b"\x00 not json at all"
    assert all(dict(r.headers)["x-dlq-consumer"] == b"recommend" for r in dead)
    await eventually(lambda: _mongo(infra, ns.db("recommend")).business_profiles.find_one({"_id": "biz-ok"}))


async def test_killed_between_database_write_and_publish_loses_no_event(services, infra, ns, tmp_path):
    # The fault hook makes the process die hard right after the write committed, before any publish.
    doomed = services("identity", FAULT_CRASH_BEFORE_PUBLISH="true")
    # an operator's import of a corporation: one event, no binding (R-ID-07 binds only a proven prime account)
    r = httpx.post(f"{doomed.url}/businesses", json=BUSINESS, headers=auth(roles=["operator"]), timeout=10)
    assert r.status_code == 201
    assert doomed.proc.wait(20) == 137
    assert await read_topic(infra.kafka, ns.topic("identity.events"), min_count=1, timeout=3) == []

    services("identity")  # restarted normally: the outbox relay publishes what the dead process could not
    records = await read_topic(infra.kafka, ns.topic("identity.events"), min_count=1)
    assert len(records) == 1
    env = Envelope.model_validate_json(records[0].value)
    assert (env.event_type, env.key, records[0].key) == ("identity.BusinessRegistered", "corp-7000012050002",
                                                         b"corp-7000012050002")

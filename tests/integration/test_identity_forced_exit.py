"""Forced exit requested by the dispatch service (R-DSP-13 → R-ID-06) on real Kafka + MongoDB: identity revokes the
parties once, tells every service, and their tokens stop working."""
from __future__ import annotations

import httpx
from aiokafka import AIOKafkaProducer

from contracts import Envelope
from contracts.events.dispatch import FraudConfirmed
from tests.integration.identity_support import password_login, portal_client, signup, start_identity
from tests.support import eventually, read_topic


async def test_R_ID_06_fraud_confirmed_by_dispatch_revokes_the_parties_once(services, infra, ns):
    identity = start_identity(services)
    async with httpx.AsyncClient(base_url=identity.url, timeout=15) as http:
        expert = await signup(http, "colluder@example.jp", kind="expert")
        owner = await signup(http, "owner@example.jp")
        bystander = await signup(http, "honest@example.jp")
        sentinel = await signup(http, "sentinel@example.jp")
        portal = await portal_client(http)
        tokens = await password_login(http, portal["client_id"], "colluder@example.jp")
        auth = {"authorization": f"Bearer {tokens['access_token']}"}
        assert (await http.get("/accounts/me", headers=auth)).status_code == 200

        fraud = Envelope.wrap(FraudConfirmed(dispatch_id="dsp-17", account_ids=[expert["account_id"], owner["account_id"]],
                                             refund_claim=150_000, reason="collusion"), producer="dispatch", actor="agency-1")
        producer = AIOKafkaProducer(bootstrap_servers=infra.kafka)
        await producer.start()
        try:
            for _ in range(2):  # a redelivery
                await producer.send_and_wait(ns.topic("dispatch.events"), fraud.model_dump_json().encode(),
                                             key=b"dsp-17")
            # same key, so handled after both: once its revocation is out, the redelivery has been handled too
            last = Envelope.wrap(FraudConfirmed(dispatch_id="dsp-17", account_ids=[sentinel["account_id"]],
                                                refund_claim=0, reason="sentinel"), producer="dispatch")
            await producer.send_and_wait(ns.topic("dispatch.events"), last.model_dump_json().encode(), key=b"dsp-17")
        finally:
            await producer.stop()

        async def refused():
            r = await http.get("/accounts/me", headers=auth)
            return r.status_code == 401 and "revoked" in r.json()["detail"]

        await eventually(refused)
        refresh = await http.post("/token", data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
                                                  "client_id": portal["client_id"]})
        assert refresh.json()["error"] == "invalid_grant"
        assert (await password_login(http, portal["client_id"], "honest@example.jp"))["access_token"]

    records = await read_topic(infra.kafka, ns.topic("identity.events"), min_count=8)
    revoked = [Envelope.model_validate_json(r.value) for r in records]
    revoked = [e for e in revoked if e.event_type == "identity.AccountRevoked" and e.payload["reason"] != "sentinel"
               and e.payload["account_id"] != sentinel["account_id"]]
    assert sorted(e.payload["account_id"] for e in revoked) == sorted([expert["account_id"], owner["account_id"]])
    assert all(e.causation_id == fraud.event_id and "dsp-17" in e.payload["reason"] for e in revoked)
    assert bystander["account_id"] not in {e.payload["account_id"] for e in revoked}

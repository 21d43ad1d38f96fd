"""The ratings service on real Kafka + MongoDB: owed ratings from DispatchCompleted, giving ratings, radar,
institution evaluations and year-end classification. Rules: R-RAT-01..04, R-DSP-12."""
from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from contracts import Envelope
from contracts.events.dispatch import DispatchCompleted
from contracts.vocab import RATING_AXES
from tests.support import read_topic, token


def auth(sub: str, *roles: str) -> dict:
    return {"authorization": f"Bearer {token(sub=sub, roles=list(roles))}"}


async def publish(infra, ns, *messages, partition: int | None = None) -> list[int]:
    """Publishes as the dispatch service would; returns the partitions written to."""
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka)
    await producer.start()
    try:
        out = []
        for msg in messages:
            env = Envelope.wrap(msg, producer="dispatch")
            md = await producer.send_and_wait(ns.topic(msg.topic), env.model_dump_json().encode(),
                                              key=msg.key().encode(), partition=partition)
            out.append(md.partition)
        return out
    finally:
        await producer.stop()


def completed(dispatch_id: str, expert_id: str, route: str = "B", fy: int = 2026) -> DispatchCompleted:
    return DispatchCompleted(dispatch_id=dispatch_id, fiscal_year=fy, route=route, business_id=f"biz-{dispatch_id}",
                             business_account_id=f"acc-{dispatch_id}", expert_id=expert_id,
                             institution_id="inst-1" if route == "A" else None,
                             institution_account_id=f"staff-{dispatch_id}" if route == "A" else None,
                             completed_at=datetime.now(UTC))


async def events(infra, ns, kind: str, min_count: int = 1) -> list[dict]:
    recs = await read_topic(infra.kafka, ns.topic("ratings.events"), min_count=min_count, timeout=30)
    return [json.loads(r.value) for r in recs if json.loads(r.value)["event_type"] == f"ratings.{kind}"]


async def events_of(infra, ns, kind: str, expert: str, n: int) -> list[dict]:
    """Waits until `n` events of `kind` about `expert` were published; returns them in topic order."""
    from tests.support import eventually

    async def check():
        got = [e for e in await events(infra, ns, kind) if e["key"] == expert]
        return got if len(got) >= n else None
    return await eventually(check, timeout=30)


async def wait_pending(http, sub, role, n=1):
    from tests.support import eventually

    async def check():
        r = await http.get("/pending", headers=auth(sub, role))
        return r.json() if r.status_code == 200 and len(r.json()) >= n else None
    return await eventually(check, timeout=30)


@pytest.fixture
def ratings(services):
    return services("ratings")


async def test_R_RAT_01_R_DSP_12_completed_dispatch_owes_one_rating_even_if_duplicated(infra, ns, ratings):
    d = "d-" + uuid.uuid4().hex[:6]
    msg = completed(d, "exp-1")
    parts = await publish(infra, ns, msg, msg)  # two envelopes (two event ids), one dispatch: owed once
    # A later dispatch on the same partition: once it is owed, both duplicates have been consumed.
    sentinel = "d-" + uuid.uuid4().hex[:6]
    await publish(infra, ns, completed(sentinel, "exp-1"), partition=parts[1])
    async with httpx.AsyncClient(base_url=ratings.url) as http:
        await wait_pending(http, f"acc-{sentinel}", "business")
        owed = (await http.get("/pending", headers=auth(f"acc-{d}", "business"))).json()
    assert len(owed) == 1 and owed[0]["owed_id"] == f"{d}:business" and owed[0]["status"] == "owed"
    got = await events_of(infra, ns, "RatingOwed", "exp-1", 2)
    assert sorted(e["payload"]["rater_account_id"] for e in got) == sorted([f"acc-{d}", f"acc-{sentinel}"])


async def test_R_RAT_01_route_A_institution_owes_too_and_only_the_rater_may_rate(infra, ns, ratings):
    d = "d-" + uuid.uuid4().hex[:6]
    await publish(infra, ns, completed(d, "exp-2", route="A"))
    async with httpx.AsyncClient(base_url=ratings.url) as http:
        await wait_pending(http, f"staff-{d}", "institution")
        await wait_pending(http, f"acc-{d}", "business")
        good = {a: 4 for a in RATING_AXES}
        r = await http.post("/ratings", json={"dispatch_id": d, "scores": good}, headers=auth("someone-else", "business"))
        assert r.status_code == 403 and r.headers["content-type"].startswith("application/problem+json")
        r = await http.post("/ratings", json={"dispatch_id": d, "scores": good}, headers=auth(f"acc-{d}", "expert"))
        assert r.status_code == 403
        r = await http.post("/ratings", json={"dispatch_id": d, "scores": good}, headers=auth(f"staff-{d}", "institution"))
        assert r.status_code == 201 and r.json()["rater_kind"] == "institution"


async def test_R_RAT_01_invalid_rating_is_a_problem_document_and_changes_nothing(infra, ns, ratings):
    d = "d-" + uuid.uuid4().hex[:6]
    await publish(infra, ns, completed(d, "exp-3"))
    async with httpx.AsyncClient(base_url=ratings.url) as http:
        await wait_pending(http, f"acc-{d}", "business")
        bad = {**{a: 3 for a in RATING_AXES}, "expertise": 6}
        del bad["manners"]
        r = await http.post("/ratings", json={"dispatch_id": d, "scores": bad}, headers=auth(f"acc-{d}", "business"))
        assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
        assert {e["field"] for e in r.json()["errors"]} == {"scores.expertise", "scores.manners"}
        r = await http.post("/ratings", json={"dispatch_id": d}, headers=auth(f"acc-{d}", "business"))
        assert r.status_code == 422 and r.json()["status"] == 422
        r = await http.post("/ratings", json={"dispatch_id": "nope", "scores": {}}, headers=auth(f"acc-{d}", "business"))
        assert r.status_code == 404
        assert len((await http.get("/pending", headers=auth(f"acc-{d}", "business"))).json()) == 1


async def test_R_RAT_02_R_RAT_03_rating_given_ends_owed_and_updates_radar(infra, ns, ratings):
    d1, d2 = "d-" + uuid.uuid4().hex[:6], "d-" + uuid.uuid4().hex[:6]
    expert = "exp-" + uuid.uuid4().hex[:6]
    await publish(infra, ns, completed(d1, expert), completed(d2, expert))
    async with httpx.AsyncClient(base_url=ratings.url) as http:
        await wait_pending(http, f"acc-{d1}", "business")
        await wait_pending(http, f"acc-{d2}", "business")
        r = await http.post("/ratings", json={"dispatch_id": d1, "scores": {a: 5 for a in RATING_AXES},
                                              "comment": "とても丁寧でした"}, headers=auth(f"acc-{d1}", "business"))
        assert r.status_code == 201, r.text
        assert r.json()["comment_moderation"] == "pending"
        r = await http.post("/ratings", json={"dispatch_id": d2, "scores": {**{a: 2 for a in RATING_AXES}, "analysis": 4}},
                            headers=auth(f"acc-{d2}", "business"))
        assert r.status_code == 201
        assert (await http.get("/pending", headers=auth(f"acc-{d1}", "business"))).json() == []
        radar = (await http.get(f"/experts/{expert}/radar", headers=auth("anyone", "business"))).json()
        assert radar["count"] == 2 and radar["averages"]["expertise"] == 3.5 and radar["averages"]["analysis"] == 4.5
        svg = await http.get(f"/experts/{expert}/radar.svg", headers=auth("anyone", "business"))
        assert svg.headers["content-type"].startswith("image/svg+xml") and 'class="radar"' in svg.text
        # A comment is not public before moderation.
        assert (await http.get(f"/experts/{expert}/comments", headers=auth("anyone", "business"))).json() == []
        r = await http.post(f"/comments/{d1}:business/moderation", json={"decision": "approved"}, headers=auth("op", "operator"))
        assert r.status_code == 204
        assert [c["comment"] for c in (await http.get(f"/experts/{expert}/comments", headers=auth("a", "business"))).json()] == ["とても丁寧でした"]
        # Correction within the period replaces the rating (count unchanged).
        r = await http.post("/ratings", json={"dispatch_id": d1, "scores": {a: 3 for a in RATING_AXES}},
                            headers=auth(f"acc-{d1}", "business"))
        assert r.status_code == 200
        radar = (await http.get(f"/experts/{expert}/radar", headers=auth("anyone", "business"))).json()
        assert radar["count"] == 2 and radar["averages"]["expertise"] == 2.5
    given = await events_of(infra, ns, "RatingGiven", expert, 2)
    assert sorted(e["payload"]["owed_id"] for e in given) == sorted([f"{d1}:business", f"{d2}:business"])
    updates = await events_of(infra, ns, "ExpertRadarUpdated", expert, 3)
    assert [u["payload"]["count"] for u in updates] == [1, 2, 2]
    assert updates[-1]["payload"]["averages"]["expertise"] == 2.5 and updates[-1]["payload"]["window_days"] == 120


async def test_R_RAT_04_evaluations_private_until_year_end_then_classified(infra, ns, ratings):
    expert = "exp-" + uuid.uuid4().hex[:6]
    d_old, d_now = "d-" + uuid.uuid4().hex[:6], "d-" + uuid.uuid4().hex[:6]
    await publish(infra, ns, completed(d_old, expert, route="A", fy=2025), completed(d_now, expert, route="A", fy=2026))
    items = {"issue_handling": 5, "strategy_building": 4, "knowledge": 3, "execution_capability": 3}
    async with httpx.AsyncClient(base_url=ratings.url) as http:
        await wait_pending(http, f"staff-{d_old}", "institution")
        await wait_pending(http, f"staff-{d_now}", "institution")
        r = await http.post("/evaluations", json={"dispatch_id": d_old, "items": items}, headers=auth(f"staff-{d_old}", "institution"))
        assert r.status_code == 201 and r.json()["fiscal_year"] == 2025
        r = await http.post("/evaluations", json={"dispatch_id": d_now, "items": {**items, "knowledge": 9}},
                            headers=auth(f"staff-{d_now}", "institution"))
        assert r.status_code == 422
        r = await http.post("/evaluations", json={"dispatch_id": d_now, "items": items}, headers=auth(f"staff-{d_old}", "institution"))
        assert r.status_code == 403
        r = await http.post("/evaluations", json={"dispatch_id": d_now, "items": items}, headers=auth(f"staff-{d_now}", "institution"))
        assert r.status_code == 201
        # The running fiscal year is private except to the agency.
        r = await http.get(f"/experts/{expert}/evaluations", params={"fiscal_year": 2026}, headers=auth(expert, "expert"))
        assert r.status_code == 403
        r = await http.get(f"/experts/{expert}/evaluations", params={"fiscal_year": 2026}, headers=auth("ag", "agency"))
        assert r.status_code == 200 and r.json()["count"] == 1 and len(r.json()["evaluations"]) == 1
        r = await http.post("/classification/2026", headers=auth("ag", "agency"))
        assert r.status_code == 409
        r = await http.post("/classification/2025", headers=auth("someone", "business"))
        assert r.status_code == 403
        r = await http.post("/classification/2025", headers=auth("ag", "agency"))
        assert r.status_code == 200
        assert [(c["expert_id"], c["type"], c["level"]) for c in r.json()] == [(expert, "II", "L3")]
        r = await http.post("/classification/2025", headers=auth("ag", "agency"))  # re-run: nothing new published
        assert r.status_code == 200
        assert [(c["type"], c["level"]) for c in (await http.get(f"/experts/{expert}/classification",
                                                                  headers=auth("a", "business"))).json()] == [("II", "L3")]
        r = await http.get(f"/experts/{expert}/evaluations", params={"fiscal_year": 2025}, headers=auth(expert, "expert"))
        assert r.status_code == 200 and r.json()["evaluations"] is None and r.json()["averages"]["issue_handling"] == 5
    classified = await events_of(infra, ns, "ExpertClassified", expert, 1)
    assert [(e["key"], e["payload"]["fiscal_year"], e["payload"]["type"]) for e in classified] == [(expert, 2025, "II")]


async def test_R_RAT_02_rating_leaving_the_window_updates_and_republishes_the_radar(infra, ns, services):
    """A rating of 1 given five months ago (stored as the service stores it) drops out of the radar by the
    periodic sweep, which publishes the new radar; yesterday's 5 stays."""
    from datetime import timedelta

    from pymongo import AsyncMongoClient


    expert = "exp-" + uuid.uuid4().hex[:6]
    old, recent = (datetime.now(UTC) - timedelta(days=150)).date(), (datetime.now(UTC) - timedelta(days=1)).date()
    client = AsyncMongoClient(infra.mongo)
    try:
        await client[ns.db("ratings")].radars.insert_one({"_id": expert, "v": 1, "oldest": old.isoformat(), "applied": "",
            "days": f"{old.isoformat()} 1 {' '.join(['1'] * len(RATING_AXES))};"
                    f"{recent.isoformat()} 1 {' '.join(['5'] * len(RATING_AXES))}"})
        svc = services("ratings", RATINGS_SWEEP_SECONDS="0.5")

        got = await events_of(infra, ns, "ExpertRadarUpdated", expert, 1)
        assert got[-1]["payload"]["count"] == 1 and got[-1]["payload"]["averages"] == {a: 5.0 for a in RATING_AXES}
        doc = await client[ns.db("ratings")].radars.find_one({"_id": expert})
        assert doc["days"] == f"{recent.isoformat()} 1 {' '.join(['5'] * len(RATING_AXES))}"
        async with httpx.AsyncClient(base_url=svc.url) as http:
            radar = (await http.get(f"/experts/{expert}/radar", headers=auth("a", "business"))).json()
        assert radar["count"] == 1 and radar["averages"]["communication"] == 5.0
    finally:
        await client.close()


# --- RatingGiven → radar in batches (issue 22) ----------------------------------------------------------------------
def given_owed(owed_id: str, expert: str, score: int) -> dict:
    """An owed document as the giving request leaves it when it did not reach the radar itself (a crash)."""
    return {"_id": owed_id, "status": "given", "dispatch_id": owed_id.split(":")[0], "expert_id": expert,
            "business_id": "biz-" + owed_id, "rater_account_id": "acc-" + owed_id, "rater_kind": "business",
            "route": "B", "fiscal_year": 2026, "since": datetime.now(UTC), "given_at": datetime.now(UTC),
            "scores": {a: score for a in RATING_AXES}, "rev": 0, "radar_applied": False}


def given_event(owed: dict) -> Envelope:
    from contracts.events.ratings import RatingGiven

    return Envelope.wrap(RatingGiven(expert_id=owed["expert_id"], owed_id=owed["_id"], dispatch_id=owed["dispatch_id"],
                                     business_id=owed["business_id"], rater_account_id=owed["rater_account_id"],
                                     rater_kind="business"), producer="ratings")


async def send_together(infra, ns, envelopes: list[Envelope]) -> None:
    """One producer batch on one partition (same key), so the consumer's poll returns them together."""
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka, linger_ms=200)
    await producer.start()
    try:
        futures = [await producer.send(ns.topic("ratings.events"), env.model_dump_json().encode(), key=env.key.encode())
                   for env in envelopes]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def radar_count(http, expert: str, n: int) -> dict:
    from tests.support import eventually

    async def check():
        r = (await http.get(f"/experts/{expert}/radar", headers=auth("anyone", "business"))).json()
        return r if r["count"] >= n else None
    return await eventually(check, timeout=30)


async def test_R_RAT_02_batch_with_duplicate_and_redelivered_ratings_counts_each_once(infra, ns, ratings):
    """RatingGiven reaches the radar through the service's batch consumer: a rating twice in one batch (the same
    envelope redelivered, and a second envelope of the same rating) counts once, and the whole batch delivered again
    changes nothing; each rating is marked applied."""
    from pymongo import AsyncMongoClient

    from tests.support import eventually

    expert = "exp-" + uuid.uuid4().hex[:6]
    owed = [given_owed(f"d-{uuid.uuid4().hex[:6]}:business", expert, s) for s in (5, 3, 1)]
    client = AsyncMongoClient(infra.mongo)
    try:
        db = client[ns.db("ratings")]
        await db.owed.insert_many([dict(o) for o in owed])
        first = [given_event(o) for o in owed]
        batch = [first[0], first[0], first[1], given_event(owed[0]), first[2]]
        await send_together(infra, ns, batch)
        async with httpx.AsyncClient(base_url=ratings.url) as http:
            radar = await radar_count(http, expert, 3)
            assert radar["count"] == 3 and radar["averages"]["expertise"] == 3.0
            # the batch again, then a fourth rating behind it: once the fourth counts, the repeats have been consumed
            fourth = given_owed(f"d-{uuid.uuid4().hex[:6]}:business", expert, 5)
            await db.owed.insert_one(dict(fourth))
            await send_together(infra, ns, [*batch, given_event(fourth)])
            radar = await radar_count(http, expert, 4)
        assert radar["count"] == 4 and radar["averages"]["expertise"] == 3.5
        doc = await db.radars.find_one({"_id": expert})
        assert sorted(doc["applied"].split()) == sorted(f"{o['_id']}:r0" for o in [*owed, fourth])

        async def all_marked():
            return all([o["radar_applied"] async for o in db.owed.find({"expert_id": expert})]) or None
        assert await eventually(all_marked, timeout=10)
        assert "batch failed" not in ratings.log_file.read_text()  # the batch handler did it, not the one-by-one path
    finally:
        await client.close()


async def test_R_RAT_02_bad_rating_in_a_batch_is_dead_lettered_alone_and_the_others_apply(infra, ns, ratings):
    """A RatingGiven whose rating is not here cannot be applied: it goes to the dead-letter topic alone, and the
    ratings before and after it in the same batch (another expert's too) reach their radars."""
    from pymongo import AsyncMongoClient

    from tests.support import eventually

    expert, other = "exp-" + uuid.uuid4().hex[:6], "exp-" + uuid.uuid4().hex[:6]
    good = [given_owed(f"d-{uuid.uuid4().hex[:6]}:business", expert, 4),
            given_owed(f"d-{uuid.uuid4().hex[:6]}:business", other, 2)]
    missing = given_owed(f"d-{uuid.uuid4().hex[:6]}:business", expert, 1)  # never stored
    client = AsyncMongoClient(infra.mongo)
    try:
        await client[ns.db("ratings")].owed.insert_many([dict(o) for o in good])
        bad = given_event(missing)
        producer = AIOKafkaProducer(bootstrap_servers=infra.kafka, linger_ms=200)
        await producer.start()
        try:  # one partition for all three, so they are one run of one poll
            futures = [await producer.send(ns.topic("ratings.events"), env.model_dump_json().encode(),
                                           key=env.key.encode(), partition=0)
                       for env in (given_event(good[0]), bad, given_event(good[1]))]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()
        async with httpx.AsyncClient(base_url=ratings.url) as http:
            assert (await radar_count(http, expert, 1))["averages"]["expertise"] == 4.0
            assert (await radar_count(http, other, 1))["averages"]["expertise"] == 2.0

        async def dead():
            recs = await read_topic(infra.kafka, ns.topic("ratings.events.dlq"), min_count=1, timeout=5)
            return [r for r in recs if json.loads(r.value)["event_id"] == bad.event_id] or None
        letters = await eventually(dead, timeout=30)
        assert len(letters) == 1 and dict(letters[0].headers)["x-dlq-consumer"] == b"ratings"
        recs = await read_topic(infra.kafka, ns.topic("ratings.events.dlq"), min_count=1, timeout=2)
        assert {json.loads(r.value)["event_id"] for r in recs} == {bad.event_id}  # the good ones are not there
        assert (await client[ns.db("ratings")].radars.find_one({"_id": expert}))["days"].count(";") == 0
        assert "batch failed; applying its messages one by one" in ratings.log_file.read_text()
    finally:
        await client.close()

"""Recommend learns profiles in batches (issue 22 item 1, R-OPS-03): one write per profile and one merged `$inc` per
peer group per batch, with the same read models as one event at a time. At-least-once safety: a duplicate in a
batch, a redelivered batch (split differently) and a crash between the profile writes and the group writes all count
each business once (R-REC-03's peer sketches, R-REC-06's industry sketches); a bad message in a batch is
dead-lettered alone (R-OPS-02) while the rest of its batch is learnt."""
from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
from pymongo import AsyncMongoClient

from contracts import Envelope
from contracts.events.identity import BusinessProfileChanged, BusinessRegistered, FinancialPeriod
from tests.support import TEST_ISSUER, FakeBroker, public_key_file

PREFS = ["大阪府", "東京都", "鳥取県"]
INDUSTRIES = ["製造業", "小売業"]


def events(n: int, seed: int = 7, prefix: str = "bb") -> list[Envelope]:
    """n businesses, each registered then changed (figures; a third of them also move industry or size)."""
    rnd, out = random.Random(seed), []
    for i in range(n):
        b = f"{prefix}-{i:03d}"
        ind, pref, emp = INDUSTRIES[i % 2], PREFS[i % 3], 3 + i % 40
        out.append(Envelope.wrap(BusinessRegistered(business_id=b, name=b, prefecture=pref, industry=ind, employees=emp),
                                 producer="identity", actor=f"acc-{b}"))
        if i % 3 == 0:
            ind, emp = INDUSTRIES[(i + 1) % 2], emp * 10
        fin = [FinancialPeriod(fiscal_year=2022 + y, sales=rnd.randint(50, 500) * 1_000_000,
                               operating_profit=rnd.randint(-5, 40) * 1_000_000, total_assets=300_000_000,
                               net_assets=rnd.randint(10, 200) * 1_000_000, depreciation=2_000_000)
               for y in range(3)]
        out.append(Envelope.wrap(BusinessProfileChanged(business_id=b, profile_version=1, changed=["financials"],
                                                        name=b, prefecture=pref, industry=ind, employees=emp,
                                                        financials=fin), producer="identity", actor=f"acc-{b}"))
    return out


@pytest.fixture
async def world(infra, ns):
    from recommend_service import domain, store
    from recommend_service.app import create_app
    from recommend_service.settings import RecommendSettings

    client = AsyncMongoClient(infra.mongo, tz_aware=True)

    async def service(name: str):
        svc = create_app(RecommendSettings(mongo_uri=infra.mongo, jwt_public_key_file=public_key_file(),
                                           jwt_issuer=TEST_ISSUER, topic_prefix=ns.prefix)).state.service
        svc.db = client[ns.db(name)]
        svc.relay.kick = lambda col, doc_id, entries=None: None  # no relay runs here: the Notify events stay in the outbox
        await store.seed_catalogue(svc.db, domain.load_catalogue())
        return svc

    yield service
    await client.close()


def items(envs: list[Envelope]) -> list[tuple]:
    from recommend_service.consumers import _learnt
    from servicekit.bus import decode

    models = {"identity.BusinessRegistered": BusinessRegistered, "identity.BusinessProfileChanged": BusinessProfileChanged}
    return [_learnt(*decode(e.model_dump_json().encode(), models)) for e in envs]


async def state(db) -> dict:
    """What the read models hold, without the bookkeeping (ids seen, outbox, ops in flight)."""
    hide = {"_seen": 0, "_outbox": 0, "open": 0}
    out = {}
    for c in ("peer_groups", "industry_peers", "segment_members"):
        out[c] = {d["_id"]: {k: v for k, v in d.items() if k != "_id"} async for d in db[c].find({}, hide)}
        for d in out[c].values():
            if "sketch" in d:  # a bucket that went back to 0 is the same as one never counted
                d["sketch"] = {k: {b: n for b, n in v.items() if n} for k, v in d["sketch"].items()}
    out["segment_members"] = {k: d for k, d in out["segment_members"].items() if d.get("m")}  # empty = none
    out["business_profiles"] = {d["_id"]: d async for d in db.business_profiles.find({}, {**hide, "updated_at": 0})}
    return out


async def reference(world, envs: list[Envelope]) -> dict:
    """The same events learnt one at a time."""
    from recommend_service import store

    svc = await world("rec-one")
    for it in items(envs):
        await store.learn_profile(svc, *it)
    return await state(svc.db)


async def test_R_OPS_03_R_REC_03_a_batch_counts_like_one_at_a_time_and_a_duplicate_or_redelivery_counts_once(world):
    from recommend_service import store

    envs = events(40)
    want = await reference(world, envs)
    svc = await world("rec-batch")
    batch = items(envs[:50] + [envs[7]] + envs[50:])  # one event twice in the same poll
    assert await store.learn_profiles(svc, batch) == 80  # the duplicate is not new
    assert await state(svc.db) == want
    assert await store.learn_profiles(svc, items(envs[30:] + envs[:30])) == 0  # redelivered, split elsewhere
    assert await state(svc.db) == want
    assert await svc.db.business_profiles.count_documents({"pend": {"$exists": True}}) == 0
    groups = [d async for d in svc.db.peer_groups.find({})]
    assert sum(d["n"] for d in groups) == 40 and all(len(d.get("open") or {}) <= 1 for d in groups)
    # Notify events: one per business × programme, whichever way the events came
    outbox = [e["event_id"] async for d in svc.db.business_profiles.find({}) for e in d.get("_outbox", [])]
    assert len(outbox) == sum(len(d.get("notified") or []) for d in want["business_profiles"].values())


async def test_R_OPS_03_a_crash_between_the_profile_writes_and_the_group_writes_counts_once(world, monkeypatch):
    from recommend_service import store

    envs = events(30, seed=11)
    want = await reference(world, envs)
    svc = await world("rec-crash")

    class Crash(Exception):
        pass

    real = store._apply_to_groups
    applied_some = {"n": 0}

    async def crash_before_groups(db, merged, op):
        raise Crash()

    async def crash_after_some_groups(db, merged, op):  # the first collection written, then down
        part = {k: v for k, v in merged.items() if k[0] == "peer_groups"}
        await real(db, part, op)
        applied_some["n"] += len(part)
        raise Crash()

    async def crash_after_groups(db, merged, op):  # every group written, the profiles' `pend` not cleared
        await real(db, merged, op)
        raise Crash()

    monkeypatch.setattr(store, "_apply_to_groups", crash_before_groups)
    with pytest.raises(Crash):
        await store.learn_profiles(svc, items(envs[:20]))
    assert await svc.db.business_profiles.count_documents({"pend": {"$exists": True}}) == 10
    monkeypatch.setattr(store, "_apply_to_groups", crash_after_some_groups)
    with pytest.raises(Crash):  # redelivered from event 10 on (a different poll): recovers 5 businesses, adds 15
        await store.learn_profiles(svc, items(envs[10:40]))
    assert applied_some["n"] > 0
    monkeypatch.setattr(store, "_apply_to_groups", crash_after_groups)
    with pytest.raises(Crash):  # redelivered whole
        await store.learn_profiles(svc, items(envs[:40]))
    monkeypatch.setattr(store, "_apply_to_groups", real)
    await store.learn_profiles(svc, items(envs))  # and once more, then the rest
    assert await state(svc.db) == want
    assert await svc.db.business_profiles.count_documents({"pend": {"$exists": True}}) == 0


def record(offset: int, env: Envelope | bytes):
    value = env if isinstance(env, bytes) else env.model_dump_json().encode()
    key = b"x" if isinstance(env, bytes) else env.key.encode()
    return SimpleNamespace(topic="identity.events", partition=0, offset=offset, key=key, value=value, headers=[])


async def test_R_OPS_02_a_bad_message_in_a_batch_is_dead_lettered_alone_and_the_rest_learnt(world, monkeypatch):
    from recommend_service import learning
    from recommend_service.consumers import identity_batch_handlers, identity_handlers
    from servicekit.bus import Consumer
    from servicekit.settings import Settings

    svc = await world("rec-dlq")
    envs = events(12, seed=3)
    bad = Envelope.wrap(BusinessRegistered(business_id="bb-bad", name="BAD", prefecture="大阪府", industry="製造業",
                                           employees=5), producer="identity", actor="acc-bad")
    real = learning.fold

    def fold(old, evs, candidates):  # a message this code cannot learn (a bug of its own, not a dependency)
        if any(p["name"] == "BAD" for p, _ in evs):
            raise ValueError("cannot learn BAD")
        return real(old, evs, candidates)

    monkeypatch.setattr(learning, "fold", fold)
    broker = FakeBroker()
    c = Consumer(broker, Settings(service_name="recommend", consumer_max_attempts=1), "identity.events",
                 identity_handlers(svc), batch_handlers=identity_batch_handlers(svc))
    recs = [record(i, e) for i, e in enumerate(envs[:10] + [bad] + envs[10:])]
    await c.handle_batch([r.value for r in recs], SimpleNamespace(raw_message=tuple(recs)))
    assert c.dead_letters == 1 and len(broker.published) == 1
    assert broker.published[0][2]["x-dlq-source"] == "identity.events/0/10"
    assert "cannot learn BAD" in broker.published[0][2]["x-dlq-reason"]
    assert await svc.db.business_profiles.count_documents({}) == 12
    assert sum([d["n"] async for d in svc.db.peer_groups.find({})]) == 12

    # a batch without a bad message goes in one call
    more = events(3, seed=4, prefix="cc")
    recs = [record(20 + i, e) for i, e in enumerate(more)]
    before = c.batches
    await c.handle_batch([r.value for r in recs], SimpleNamespace(raw_message=tuple(recs)))
    assert c.batches == before + 1 and c.dead_letters == 1
    assert await svc.db.business_profiles.count_documents({}) == 15


async def test_R_NOT_01_a_programme_added_after_the_candidates_were_cached_is_pushed_to_the_next_business_learnt(world):
    """The learners keep each segment's candidates per replica under the segments' version: a programme added to the
    segments moves the version, so the next batch reads the new candidates and pushes it."""
    from recommend_service import store

    svc = await world("rec-version")
    first = events(6, prefix="v1")
    await store.learn_profiles(svc, items(first))  # caches the candidates of these businesses' segments
    pushed = await svc.db.business_profiles.find_one({"notified.0": {"$exists": True}})
    assert pushed, "the catalogue pushes something to one of these businesses"
    old = await store.programme(svc.db, pushed["notified"][0])
    new = {**old, "programme_id": "p-added-later", "name": "後から追加された補助金"}
    await svc.db.programmes.insert_one({"_id": new["programme_id"], **{k: v for k, v in new.items() if k != "programme_id"}})
    await store.add_to_segments(svc.db, new)

    i = int(pushed["_id"].split("-")[1])  # the same attributes, a new business
    again = events(6, prefix="v2")[2 * i:2 * i + 2]
    await store.learn_profiles(svc, items(again))
    doc = await svc.db.business_profiles.find_one({"_id": f"v2-{i:03d}"})
    assert "p-added-later" in doc["notified"]
    assert "p-added-later" not in pushed["notified"]


async def test_R_NOT_01_a_programme_added_while_a_segment_is_first_built_still_joins_it(world, monkeypatch):
    """The race: a learner reads the catalogue to build a new segment, a programme is added (and finds no such segment
    to join), then the learner stores the segment. The segment must still get the programme."""
    from recommend_service import domain, store

    svc = await world("rec-race")
    real = store.catalogue
    seg = store.segment_of({"industry": "製造業", "employees": 12, "prefecture": "鳥取県"})
    await svc.db.segments.delete_one({"_id": seg})
    fits = domain.segment_candidates(await real(svc.db), seg)
    assert fits, "some programme of the catalogue fits the segment"
    new = {**fits[0], "programme_id": "p-during-build", "name": "構築中に追加された補助金"}
    calls = []

    async def racing(db):
        calls.append(1)
        if len(calls) > 1:
            return await real(db)
        before = await real(db)  # the learner reads the catalogue, then the programme is added:
        await svc.db.programmes.insert_one({"_id": new["programme_id"],
                                            **{k: v for k, v in new.items() if k != "programme_id"}})
        assert seg not in await store.add_to_segments(svc.db, new)  # no such segment yet: it joins none
        return before

    monkeypatch.setattr(store, "catalogue", racing)
    doc = await store.segment(svc.db, seg)
    assert "p-during-build" in doc["candidate_ids"]
    assert doc["candidate_ids"].count("p-during-build") == 1

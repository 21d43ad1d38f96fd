"""The experts service as a process on real Kafka + MongoDB: stage-2 registration end to end, forced exit,
ratings-driven search, directory visibility, several replicas. Rules: R-EX-01..05, R-PF-04, R-ANC-02, R-ID-06."""
from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from contracts import Envelope
from contracts.events.identity import AccountRevoked, OrganisationRegistered, PlatformMember, PlatformRegistered
from contracts.events.ratings import ExpertRadarUpdated
from contracts.vocab import RIGHTS, MemberRole
from tests.support import Namespace, ServiceProcess, eventually, read_topic, token

ORG, INDIVIDUAL = "org-kumamoto-cci", "org-ind-yamada"


def auth(sub: str, roles, orgs=()) -> dict:
    return {"authorization": f"Bearer {token(sub=sub, roles=list(roles), orgs=list(orgs))}"}


def member(org_id: str, role: MemberRole, platform="pf-kumamoto") -> dict:
    return {"org_id": org_id, "platform_id": platform, "member_role": role.value,
            "rights": sorted(r.value for r in RIGHTS[role])}


AGENCY = auth("agency-1", ["agency"])
INSTITUTION = auth("staff-1", ["institution"], [member(ORG, MemberRole.INSTITUTION)])


@pytest.fixture(scope="module")
def shared(infra, tmp_path_factory):
    """One service process for the tests below that do not change programme settings (each test keeps
    to its own accounts and region, so they cannot see each other's experts)."""
    ns = Namespace()
    proc = ServiceProcess("experts", infra, ns, tmp_path_factory.mktemp("experts")).start()
    yield ns, proc
    proc.stop()


def of(records, expert_id) -> list[dict]:
    return [json.loads(r.value)["payload"] for r in records if r.key == expert_id.encode()]


async def publish(infra, ns, *messages, producer="identity", actor=None):
    p = AIOKafkaProducer(bootstrap_servers=infra.kafka)
    await p.start()
    try:
        for m in messages:
            env = Envelope.wrap(m, producer=producer, actor=actor)
            await p.send_and_wait(ns.topic(m.topic), env.model_dump_json().encode(), key=m.key().encode())
    finally:
        await p.stop()


async def platform(infra, ns):
    await publish(infra, ns,
                  OrganisationRegistered(org_id=ORG, name="熊本商工会議所", kind="institution", prefecture="熊本県"),
                  OrganisationRegistered(org_id=INDIVIDUAL, name="山田 税理士事務所", kind="individual"),
                  PlatformRegistered(platform_id="pf-kumamoto", name="熊本県支援PF", fiscal_year=2026,
                                     bureau_id="kyushu", representative_id="org-rep", members=[
                                         PlatformMember(org_id=ORG, member_role="institution"),
                                         PlatformMember(org_id=INDIVIDUAL, member_role="individual")]))


async def recommend(http, expert_id, headers=INSTITUTION, org=ORG):
    """Retries while identity's events are still on their way to the read model."""
    async def attempt():
        r = await http.post(f"/experts/{expert_id}/recommendations", json={"org_id": org}, headers=headers)
        return r if r.status_code == 200 else None
    return await eventually(attempt)


async def open_page(http, account, name="山田 花子", **profile):
    body = {"name": name, "qualifications": ["中小企業診断士"], "fields": ["finance", "management"],
            "regions": ["熊本県"], "introduction": "Financial turnaround of family businesses / 事業再生", **profile}
    r = await http.post("/experts/me", json=body, headers=auth(account, ["expert"]))
    assert r.status_code == 201, r.text
    return r.json()


async def register(http, account, **profile) -> str:
    """Stage 1 page -> recommendation -> consent -> application -> approval."""
    me = auth(account, ["expert"])
    expert_id = (await open_page(http, account, **profile))["expert_id"]
    await recommend(http, expert_id)
    assert (await http.post("/experts/me/consents", json={"org_id": ORG}, headers=me)).status_code == 200
    r = await http.post("/experts/me/application", headers=me, json={
        "evidence": [{"route": "public_qualification", "qualification": "中小企業診断士"}], "no_disqualification": True})
    assert r.status_code == 200 and r.json()["status"] == "applied", r.text
    r = await http.post(f"/experts/{expert_id}/review", json={"decision": "approve"}, headers=AGENCY)
    assert r.status_code == 200 and r.json()["status"] == "registered", r.text
    return expert_id


async def search_ids(http, headers=INSTITUTION, **params) -> list[str]:
    r = await http.get("/experts", params=params, headers=headers)
    assert r.status_code == 200, r.text
    return [c["expert_id"] for c in r.json()["items"]]


async def test_R_EX_01_R_EX_02_R_PF_04_registration_end_to_end_publishes_approved(shared, infra):
    ns, svc = shared
    await platform(infra, ns)
    async with httpx.AsyncClient(base_url=svc.url, timeout=10) as http:
        me = auth("acc-hanako", ["expert"])
        expert_id = (await open_page(http, "acc-hanako", regions=["北海道"]))["expert_id"]
        # R-EX-02 (a): no recommendation yet -> the application lists what is missing
        r = await http.post("/experts/me/application", headers=me, json={
            "evidence": [{"route": "sme_support", "years": 2}], "no_disqualification": False})
        assert r.status_code == 422 and all(x in r.json()["detail"] for x in ("(a)", "(b)", "(c)"))
        # R-PF-04: an individual member may not recommend, even with a token claiming the right
        forged = auth("ind-1", ["institution"], [{**member(INDIVIDUAL, MemberRole.INSTITUTION)}])
        await recommend(http, expert_id)  # waits until the platform is known here
        r = await http.post(f"/experts/{expert_id}/recommendations", json={"org_id": INDIVIDUAL}, headers=forged)
        assert r.status_code == 403 and "R-PF-04" in r.json()["detail"]
        plain = auth("ind-2", ["institution"], [member(INDIVIDUAL, MemberRole.INDIVIDUAL)])
        r = await http.post(f"/experts/{expert_id}/recommendations", json={"org_id": INDIVIDUAL}, headers=plain)
        assert r.status_code == 403
        # the institution acted on its own initiative: counts only with the expert's consent
        r = await http.get(f"/institutions/{ORG}/recommendees", headers=INSTITUTION)
        assert {"expert_id": expert_id, "name": "山田 花子", "status": "portal", "fields": ["finance", "management"],
                "recommended": True, "consented": False, "application": None} in r.json()["experts"]
        assert (await http.post("/experts/me/consents", json={"org_id": ORG}, headers=me)).status_code == 200
        r = await http.post("/experts/me/application", headers=me, json={
            "evidence": [{"route": "public_qualification", "qualification": "中小企業診断士"}], "no_disqualification": True})
        assert r.status_code == 200 and r.json()["status"] == "applied"
        page = (await http.get("/reviews/applications", headers=AGENCY, params={"limit": 1})).json()
        assert len(page["applications"]) == 1 and page["next_cursor"] is None  # the only one waiting (R-OPS-03)
        queue = (await http.get("/reviews/applications", headers=AGENCY)).json()["applications"]
        mine = [a for a in queue if a["expert_id"] == expert_id]
        assert len(mine) == 1 and mine[0]["application"]["recommenders"] == [ORG]
        # R-EX-01: not offered for dispatch before the agency's approval
        assert await search_ids(http, for_dispatch="true", region="北海道") == []
        r = await http.post(f"/experts/{expert_id}/review", json={"decision": "approve"}, headers=AGENCY)
        assert r.status_code == 200 and r.json()["status"] == "registered"

        async def published():
            changes = of(await read_topic(infra.kafka, ns.topic("experts.events"), min_count=4, timeout=2), expert_id)
            return changes if len(changes) >= 4 else None
        changes = await eventually(published)
        assert [c["change"] for c in changes] == ["registered", "profile", "applied", "approved"]
        approved = changes[-1]
        assert approved["status"] == "registered" and approved["registered_fiscal_year"] is not None

        assert await search_ids(http, for_dispatch="true", q="診断士", region="北海道") == [expert_id]
        page = (await http.get(f"/experts/{expert_id}", headers=INSTITUTION)).json()
        assert page["recommended_by"] == [{"org_id": ORG, "name": "熊本商工会議所"}]


async def test_R_ID_06_revoked_account_exits_the_expert_and_is_never_offered(shared, infra):
    ns, svc = shared
    await platform(infra, ns)
    async with httpx.AsyncClient(base_url=svc.url, timeout=10) as http:
        expert_id = await register(http, "acc-taro", name="佐藤 太郎", regions=["青森県"])
        assert await search_ids(http, for_dispatch="true", region="青森県") == [expert_id]
        await publish(infra, ns, AccountRevoked(account_id="acc-taro", reason="不正受給"))

        async def exited():
            r = await http.get(f"/experts/{expert_id}/dossier", headers=AGENCY)
            return r.json()["status"] == "exited"
        await eventually(exited)
        assert await search_ids(http, for_dispatch="true", region="青森県") == []
        assert await search_ids(http, q="佐藤 太郎") == []
        assert (await http.get(f"/experts/{expert_id}", headers=INSTITUTION)).status_code == 404
        assert (await http.get("/experts/me", headers=auth("acc-taro", ["expert"]))).status_code == 401
        last = of(await read_topic(infra.kafka, ns.topic("experts.events"), min_count=5), expert_id)[-1]
        assert last["change"] == "exited" and last["status"] == "exited"


async def test_R_EX_05_radar_event_drives_min_rating_search_on_every_replica(shared, infra, tmp_path):
    ns, one = shared
    two = ServiceProcess("experts", infra, ns, tmp_path).start()  # a second replica: same database, same topics
    try:
        await _radar_on_every_replica(infra, ns, one, two)
    finally:
        two.stop()


async def _radar_on_every_replica(infra, ns, one, two):
    await platform(infra, ns)
    R = "秋田県"
    async with httpx.AsyncClient(base_url=one.url, timeout=10) as http, \
            httpx.AsyncClient(base_url=two.url, timeout=10) as other:
        good = await register(http, "acc-good", name="高橋 良子", regions=[R])
        plain = await register(http, "acc-plain", name="田中 普通", regions=[R])

        async def indexed_on_two():  # written through replica one, found through replica two
            return sorted(await search_ids(other, for_dispatch="true", region=R)) == sorted([good, plain])
        await eventually(indexed_on_two)
        now = datetime.now(UTC)
        await publish(infra, ns,
                      ExpertRadarUpdated(expert_id=good, averages={"expertise": 4.8, "manners": 4.5}, count=12,
                                         window_days=365, as_of=now),
                      ExpertRadarUpdated(expert_id=plain, averages={"expertise": 3.1, "manners": 4.9}, count=4,
                                         window_days=365, as_of=now), producer="ratings")
        for client in (http, other):
            async def rated(c=client):
                return await search_ids(c, min_expertise=4.5, for_dispatch="true", region=R) == [good]
            await eventually(rated)
            assert await search_ids(client, min_manners=4.6, region=R) == [plain]
            assert await search_ids(client, sort="expertise", field="finance", region=R) == [good, plain]
        async def stored():  # the page reads the stored summary (the group consumer's write)
            page = (await http.get(f"/experts/{good}", headers=INSTITUTION)).json()
            return page if page["radar"] else None
        page = await eventually(stored)
        assert page["radar"]["averages"] == {"expertise": 4.8, "manners": 4.5} and page["radar"]["count"] == 12

        # a profile edit on replica two reaches replica one's index
        r = await other.put("/experts/me/profile", headers=auth("acc-plain", ["expert"]), json={
            "qualifications": ["税理士"], "fields": ["tax"], "regions": ["福岡県"], "expected_version": 1})
        assert r.status_code == 200 and r.json()["version"] == 2

        async def moved():
            return await search_ids(http, region="福岡県", qualification="税理士") == [plain]
        await eventually(moved)


async def test_R_ANC_02_directory_visibility_is_a_programme_setting(services, infra, ns):
    svc = services("experts")  # default: institutions only
    async with httpx.AsyncClient(base_url=svc.url, timeout=10) as http:
        assert (await http.get("/experts")).status_code == 401
        assert (await http.get("/experts", headers=auth("biz-1", ["business"]))).status_code == 403
        assert (await http.get("/experts", headers=INSTITUTION)).status_code == 200
        r = await http.put("/settings/directory", json={"visibility": "public"}, headers=auth("op-1", ["operator"]))
        assert r.status_code == 200

        async def public():
            return (await http.get("/experts")).status_code == 200
        await eventually(public)
        assert (await http.get("/experts", headers=auth("biz-1", ["business"]))).status_code == 200


async def test_R_ANC_02_directory_public_by_environment(services, infra, ns):
    svc = services("experts", EXPERTS_DIRECTORY_VISIBILITY="public")
    async with httpx.AsyncClient(base_url=svc.url, timeout=10) as http:
        await open_page(http, "acc-pub", name="公開 一郎")
        r = await http.get("/experts", params={"q": "中小企業診断"})
        assert r.status_code == 200 and [c["name"] for c in r.json()["items"]] == ["公開 一郎"]
        r = await http.get("/experts", params={"status": "exited"})
        assert r.status_code == 403  # listing by status stays with the programme's staff
        r = await http.get("/experts", params={"field": "astrology"})
        assert r.status_code == 422 and "astrology" in r.json()["detail"]


async def test_R_EX_04_R_EX_05_renewal_record_and_suspension_over_http(shared, infra):
    from contracts.events.dispatch import DispatchCompleted
    from contracts.vocab import fiscal_year

    ns, svc = shared
    await platform(infra, ns)
    R = "岩手県"
    async with httpx.AsyncClient(base_url=svc.url, timeout=10) as http:
        expert_id = await register(http, "acc-iwate", name="岩手 誠", regions=[R])
        fy = fiscal_year(datetime.now(UTC))
        # R-EX-04: the dispatch record the renewal review will see is learnt from dispatch events
        await publish(infra, ns, DispatchCompleted(
            dispatch_id="d-1", fiscal_year=fy, route="A", business_id="b-1", business_account_id="acc-b",
            expert_id=expert_id, institution_id=ORG, completed_at=datetime.now(UTC)), producer="dispatch")

        async def recorded():
            d = (await http.get(f"/experts/{expert_id}/dossier", headers=AGENCY)).json()
            return d if d["renewal_dossier"]["dispatches"] == 1 else None
        dossier = await eventually(recorded)
        assert dossier["renewal_dossier"]["dispatches_by_fiscal_year"] == {str(fy): 1}
        # R-EX-04: renewal by intent confirmation (first years: no review needed)
        r = await http.post("/experts/me/renewal", headers=auth("acc-iwate", ["expert"]))
        assert r.status_code == 200 and r.json()["registered_fiscal_year"] == fy + 1
        assert (await http.post("/experts/me/renewal", headers=auth("acc-iwate", ["expert"]))).status_code == 409
        # R-EX-05: a suspended expert is never offered for dispatch, until reinstated
        r = await http.post(f"/experts/{expert_id}/suspend", json={"reason": "調査中"}, headers=AGENCY)
        assert r.status_code == 200 and r.json()["status"] == "suspended"
        assert await search_ids(http, for_dispatch="true", region=R) == []
        assert await search_ids(http, region=R) == []
        r = await http.post(f"/experts/{expert_id}/reinstate", headers=AGENCY)
        assert r.status_code == 200 and r.json()["status"] == "registered"
        assert await search_ids(http, for_dispatch="true", region=R) == [expert_id]
        # unavailability declared by the expert (R-EX-03) keeps them out of dispatch on those days
        today = datetime.now(UTC).date().isoformat()
        r = await http.put("/experts/me/availability", headers=auth("acc-iwate", ["expert"]), json={
            "windows": [{"start": today, "end": today, "note": "出張"}], "note": "本日は派遣不可"})
        assert r.status_code == 200
        assert await search_ids(http, for_dispatch="true", region=R) == []
        changes = [c["change"] for c in of(await read_topic(infra.kafka, ns.topic("experts.events"), min_count=9), expert_id)]
        assert changes[-4:] == ["renewed", "suspended", "reinstated", "availability"]


async def test_index_feed_skips_malformed_and_unknown_records_and_indexes_the_valid_one_behind_them(shared, infra):
    """Issue 15: one malformed radar event used to raise in the feed and skip the rest of its batch (the valid radar
    behind it never reached the index); unknown types were dropped silently. Now every reader validates: the valid
    event is indexed, and the group consumers put each bad record on its topic's dead-letter topic once."""
    ns, svc = shared
    await platform(infra, ns)
    R = "宮崎県"
    async with httpx.AsyncClient(base_url=svc.url, timeout=10) as http:
        expert_id = await register(http, "acc-feed", name="小林 検証", regions=[R])
        now = datetime.now(UTC)

        def raw(message, **override) -> bytes:
            env = json.loads(Envelope.wrap(message, producer="ratings").model_dump_json())
            return json.dumps({**env, **override}).encode()

        good = ExpertRadarUpdated(expert_id=expert_id, averages={"expertise": 4.9}, count=7, window_days=365, as_of=now)
        bad = raw(good, payload={**good.model_dump(mode="json"), "averages": 5})  # the old feed: TypeError
        unknown = raw(good, event_type="ratings.NoSuchThing")
        bad_revoked = raw(AccountRevoked(account_id="acc-feed", reason="x"), payload={"account_id": ["acc-feed"]})
        bad_change = json.dumps({"event_id": str(uuid.uuid4()), "event_type": "experts.ExpertChanged",
                                 "schema_version": 1, "key": expert_id, "producer": "experts",
                                 "payload": {"expert_id": expert_id}}).encode()
        p = AIOKafkaProducer(bootstrap_servers=infra.kafka, linger_ms=50)
        await p.start()
        try:
            key = expert_id.encode()
            sent = [await p.send(ns.topic("ratings.events"), v, key=key) for v in (bad, unknown, raw(good))]
            sent.append(await p.send(ns.topic("identity.events"), bad_revoked, key=b"acc-feed"))
            sent.append(await p.send(ns.topic("experts.events"), bad_change, key=key))
            for f in sent:
                await f
        finally:
            await p.stop()

        async def indexed():
            return await search_ids(http, min_expertise=4.5, for_dispatch="true", region=R) == [expert_id]
        await eventually(indexed)
        assert (await http.get("/experts/me", headers=auth("acc-feed", ["expert"]))).status_code == 200  # not revoked

    def reasons(records):
        return sorted(dict(r.headers)["x-dlq-reason"].decode().split(":")[0] for r in records
                      if r.key == key or r.key == b"acc-feed")
    dead = await read_topic(infra.kafka, ns.topic("ratings.events.dlq"), min_count=2)
    assert reasons(dead) == ["payload is not a valid ratings.ExpertRadarUpdated", "unknown message type 'ratings.NoSuchThing'"]
    assert {dict(r.headers)["x-dlq-consumer"] for r in dead} == {b"experts"}
    assert reasons(await read_topic(infra.kafka, ns.topic("identity.events.dlq"), min_count=1)) == [
        "payload is not a valid identity.AccountRevoked"]
    assert reasons(await read_topic(infra.kafka, ns.topic("experts.events.dlq"), min_count=1)) == [
        "payload is not a valid experts.ExpertChanged"]

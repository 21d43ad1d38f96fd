"""The public directory of platforms and the finder of support institutions (R-POR-07) on real Kafka + MongoDB:
registered through identity's HTTP API, read without a token (directly and through the real gateway), paged, and
every read an index range (no collection scan, judged like R-OPS-03)."""
from __future__ import annotations

from datetime import date
from types import SimpleNamespace

import httpx
from fastapi import FastAPI
from pymongo import AsyncMongoClient

from contracts import Envelope
from contracts.vocab import fiscal_year
from tests.integration.identity_support import bearer, start_identity
from tests.integration.test_no_collection_scan import Recorder, shape_problem
from tests.support import read_topic, service_port

FY = fiscal_year(date.today())
BUREAU = bearer("bureau-chugoku-officer", ["bureau"], ttl=6 * 3600, bureau_id="bureau-chugoku")


async def _org(http, name, kind="institution", **facts) -> str:
    r = await http.post("/organisations", headers=BUREAU, json={"name": name, "kind": kind, **facts})
    assert r.status_code == 201, r.text
    return r.json()["org_id"]


async def test_R_POR_07_public_directory_of_platforms_and_finder_of_institutions(services, gateway, infra, ns):
    identity = start_identity(services, port=service_port("identity"))  # where the gateway routes /api/identity
    async with httpx.AsyncClient(base_url=identity.url, timeout=15) as http:
        shokokai = await _org(http, "米子町商工会", institution_type=1, prefecture="鳥取県",
                              specialities=["management", "sales_channels"])
        chamber = await _org(http, "鳥取商工会議所", institution_type=2, prefecture="鳥取県", certified=True,
                             specialities=["finance"])
        bank = await _org(http, "とっとり信用金庫", institution_type=8, prefecture="鳥取県",
                          specialities=["finance", "business_succession"])
        plain = await _org(http, "しまねよろず支援拠点", prefecture="島根県", specialities=["it_dx"])
        body = await _org(http, "株式会社山陰コンサル", kind="body", prefecture="鳥取県")
        person = await _org(http, "山田 花子", kind="individual", prefecture="鳥取県")
        got = (await http.get(f"/organisations/{bank}", headers=BUREAU)).json()
        assert got["certified"] is True and got["specialities"] == ["finance", "business_succession"]  # ⑧ by definition

        # what the finder publishes is validated, with the reason
        for facts, reason in (({"kind": "institution", "prefecture": "Tottori"}, "unknown prefecture"),
                              ({"kind": "body", "certified": True}, "only a support institution can be certified"),
                              ({"kind": "institution", "institution_type": 9, "certified": False}, "by definition"),
                              ({"kind": "institution", "specialities": ["cooking"]}, "unknown speciality")):
            r = await http.post("/organisations", headers=BUREAU, json={"name": "x", **facts})
            assert r.status_code == 422 and reason in r.json()["detail"], r.text

        members = [shokokai, chamber, bank, plain, body, person]
        pf = {"name": "とっとり支援PF", "bureau_id": "bureau-chugoku", "fiscal_year": FY, "representative_id": shokokai,
              "member_ids": members}
        r = await http.post("/platforms", headers=BUREAU, json={**pf, "area": {"prefectures": ["鳥取県"],
                                                                               "municipalities": ["東京都千代田区"]}})
        assert r.status_code == 422 and "not written with one of the area's prefectures" in r.json()["detail"]
        r = await http.post("/platforms", headers=BUREAU, json={**pf, "area": {"prefectures": ["鳥取県"],
                                                                               "municipalities": ["鳥取県米子市"]}})
        assert r.status_code == 201, r.text
        pid = r.json()["platform_id"]
        assert r.json()["area"] == {"prefectures": ["鳥取県"], "municipalities": ["鳥取県米子市"]}
        # a platform registered without an area is listed nationally; its area is set later
        r = await http.post("/platforms", headers=BUREAU, json={**pf, "name": "しまね支援PF", "member_ids": members[:4]})
        pid2 = r.json()["platform_id"]
        r = await http.put(f"/platforms/{pid2}/area", headers=BUREAU, json={"prefectures": ["島根県", "Tottori"]})
        assert r.status_code == 422 and "unknown prefecture 'Tottori'" in r.json()["detail"]
        elsewhere = bearer("bureau-kanto-officer", ["bureau"], bureau_id="bureau-kanto")
        assert (await http.put(f"/platforms/{pid2}/area", headers=elsewhere,
                               json={"prefectures": ["島根県"]})).status_code == 403  # R-PF-05
        assert (await http.get("/directory/platforms?prefecture=島根県")).json()["items"] == []
        r = await http.put(f"/platforms/{pid2}/area", headers=BUREAU, json={"prefectures": ["島根県"]})
        assert r.status_code == 200 and r.json()["area"]["prefectures"] == ["島根県"]

        # --- the directory, without a token ------------------------------------------------------------------------
        everyone = (await http.get("/directory/platforms")).json()
        assert {p["platform_id"] for p in everyone["items"]} == {pid, pid2} and everyone["next_cursor"] is None
        tottori = (await http.get("/directory/platforms", params={"prefecture": "鳥取県"})).json()["items"]
        assert [p["platform_id"] for p in tottori] == [pid]
        one = tottori[0]
        assert one["area"] == {"prefectures": ["鳥取県"], "municipalities": ["鳥取県米子市"]}
        assert one["fiscal_years"] == [FY] and one["registered_this_year"] is True
        named = {m["name"]: m for m in one["members"]}
        assert set(named) == {"米子町商工会", "鳥取商工会議所", "とっとり信用金庫", "しまねよろず支援拠点", "株式会社山陰コンサル", None}
        assert named["米子町商工会"]["member_role"] == "representative"
        assert named[None] == {"org_id": None, "name": None, "kind": "individual", "institution_type": None,
                               "member_role": "individual"}
        assert "山田" not in str(one) and person not in str(one)  # a person is never named
        assert (await http.get(f"/directory/platforms/{pid2}")).json()["area"]["prefectures"] == ["島根県"]
        assert (await http.get("/directory/platforms/pf-none")).status_code == 404
        # a member leaving is reflected
        r = await http.delete(f"/platforms/{pid}/members/{body}", headers=BUREAU)
        assert r.status_code == 200, r.text
        after = (await http.get(f"/directory/platforms/{pid}")).json()
        assert "株式会社山陰コンサル" not in {m["name"] for m in after["members"]}

        # --- the finder, without a token ---------------------------------------------------------------------------
        async def names(**params) -> list[str]:
            r = await http.get("/directory/institutions", params=params)
            assert r.status_code == 200, r.text
            return [i["name"] for i in r.json()["items"]]

        assert await names() == sorted(["米子町商工会", "鳥取商工会議所", "とっとり信用金庫", "しまねよろず支援拠点"])
        assert await names(prefecture="鳥取県") == sorted(["米子町商工会", "鳥取商工会議所", "とっとり信用金庫"])
        assert await names(prefecture="鳥取県", certified="true") == sorted(["鳥取商工会議所", "とっとり信用金庫"])
        assert await names(prefecture="鳥取県", certified="false") == ["米子町商工会"]
        assert await names(institution_type=8) == ["とっとり信用金庫"]
        assert await names(speciality="finance", prefecture="鳥取県") == sorted(["鳥取商工会議所", "とっとり信用金庫"])
        assert await names(speciality="it_dx") == ["しまねよろず支援拠点"]
        assert await names(prefecture="島根県", institution_type=1) == []
        bank_pub = (await http.get("/directory/institutions", params={"institution_type": 8})).json()["items"][0]
        assert bank_pub == {"org_id": bank, "name": "とっとり信用金庫", "institution_type": 8,
                            "institution_type_label": "認定支援機関（地方銀行・第二地方銀行・信用金庫・信用組合）",
                            "dispatch_capable": True, "certified": True, "prefecture": "鳥取県",
                            "specialities": ["finance", "business_succession"]}
        # paged: a page at a time, nothing repeated or skipped
        seen, cursor = [], None
        while True:
            r = (await http.get("/directory/institutions", params={"prefecture": "鳥取県", "limit": 1,
                                                                   **({"cursor": cursor} if cursor else {})})).json()
            seen += [i["name"] for i in r["items"]]
            cursor = r["next_cursor"]
            if cursor is None:
                break
        assert seen == sorted(["米子町商工会", "鳥取商工会議所", "とっとり信用金庫"])
        first = (await http.get("/directory/institutions", params={"prefecture": "鳥取県", "limit": 1})).json()
        r = await http.get("/directory/institutions", params={"prefecture": "島根県", "cursor": first["next_cursor"]})
        assert r.status_code == 400 and "another query" in r.json()["detail"]
        assert (await http.get("/directory/institutions", params={"speciality": "cooking"})).status_code == 422
        assert (await http.get("/directory/institutions", params={"prefecture": "Tottori"})).status_code == 422

    # --- through the gateway: the directory is public, the rest of identity is not ------------------------------------
    async with httpx.AsyncClient(base_url=gateway, timeout=15) as gw:
        r = await gw.get("/api/identity/directory/institutions", params={"prefecture": "鳥取県", "certified": "true"})
        assert r.status_code == 200 and len(r.json()["items"]) == 2, r.text
        assert (await gw.get(f"/api/identity/directory/platforms/{pid}")).status_code == 200
        assert (await gw.get("/api/identity/directory/platforms")).status_code == 200
        assert (await gw.get(f"/api/identity/organisations/{bank}")).status_code == 401
        assert (await gw.get(f"/api/identity/platforms/{pid}")).status_code == 401
        assert (await gw.post("/api/identity/directory/platforms", json={})).status_code == 401  # reads only

    records = await read_topic(infra.kafka, ns.topic("identity.events"), min_count=11)
    events = [Envelope.model_validate_json(r.value) for r in records]
    area = [e.payload for e in events if e.event_type == "identity.PlatformAreaChanged"]
    assert area == [{"platform_id": pid2, "prefectures": ["島根県"], "municipalities": []}]
    reg = next(e.payload for e in events if e.event_type == "identity.PlatformRegistered" and e.payload["platform_id"] == pid)
    assert reg["area_prefectures"] == ["鳥取県"] and reg["area_municipalities"] == ["鳥取県米子市"]
    org = next(e.payload for e in events if e.event_type == "identity.OrganisationRegistered" and e.payload["org_id"] == bank)
    assert org["certified"] is True and org["specialities"] == ["finance", "business_succession"]


async def test_R_POR_07_directory_reads_are_index_ranges_never_a_collection_scan(infra, ns):
    """Every read the public routes send is one `_id` range sorted by `_id` with a limit, or an `_id` lookup, at a few
    thousand entries; explained on the server and judged like R-OPS-03."""
    from identity_service import directory

    rec = Recorder()
    client = AsyncMongoClient(infra.mongo, tz_aware=True, event_listeners=[rec])
    db = client[ns.db("identity")]
    prefs = ["鳥取県", "島根県", "岡山県", "広島県"]
    for i in range(200):
        await db.orgs.insert_one({"_id": f"org-{i:04d}", "kind": "institution", "name": f"機関{i:04d}",
                                  "institution_type": 1 + i % 12, "prefecture": prefs[i % 4], "certified": i % 3 == 0,
                                  "specialities": ["finance", "legal"][: i % 3]})
    await db.platforms.insert_one({"_id": "pf-1", "name": "PF", "bureau_id": "b", "fiscal_years": [FY],
                                   "representative_id": "org-0000", "area": {"prefectures": ["鳥取県"]},
                                   "members": [{"org_id": f"org-{i:04d}", "member_role": "institution"} for i in range(5)],
                                   "member_ids": [f"org-{i:04d}" for i in range(5)]})
    await directory.backfill(db)
    assert await db.directory.estimated_document_count() > 2000

    app = FastAPI()
    app.include_router(directory.router)
    app.state.service = SimpleNamespace(db=db)
    routes = ["/directory/institutions", "/directory/institutions?prefecture=鳥取県&certified=true&limit=5",
              "/directory/institutions?institution_type=3&speciality=finance", "/directory/platforms",
              "/directory/platforms?prefecture=鳥取県", "/directory/platforms/pf-1"]
    problems = []
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://identity") as http:
        first = (await http.get("/directory/institutions?limit=7")).json()
        assert len(first["items"]) == 7 and first["next_cursor"]
        routes.append(f"/directory/institutions?limit=7&cursor={first['next_cursor']}")
        for path in routes:
            rec.commands.clear()
            rec.on = True
            r = await http.get(path)
            rec.on = False
            assert r.status_code == 200, (path, r.text)
            assert rec.commands, path
            for c in rec.commands:
                if why := shape_problem(c):
                    problems.append(f"{path}: {why}")
    await client.close()
    assert not problems, "\n".join(problems)

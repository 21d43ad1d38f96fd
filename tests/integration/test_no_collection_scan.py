"""R-OPS-03: no request path reads a whole collection. Every list / recommend / diagnosis route of the recommend
service runs against 100,000 business profiles with every database command it sends recorded; each read is then
explained on the same server and the test fails on a collection scan. The dispatch service's request path (a request
screened and accepted, read back, the business's free dispatches) is judged the same way.

What the server can tell: FerretDB 1.24 (SQLite) explains a find with the SQLite plan, `SEARCH … USING INDEX` for an
`_id` lookup and `SCAN <table>` otherwise. It pushes only `_id` equality down to SQLite (`filterPushdown: false` for
everything else, secondary indexes included), so the services keep every request-path read an `_id` lookup. `mongo.sh`
patches it to serve `_id: {$in: […]}` from the index too (servicekit's deny-list check of the token's few keys, the
batched consumers), so an `$in` that the SQLite plan shows scanning fails. One query shape it cannot push down and
MongoDB serves from the `_id` index (IXSCAN, bounded by `limit`) is judged by its shape instead: `_id` ranges sorted
by `_id` with a limit (cursor pages of the catalogue). Any other filter fails the test, whatever the server says.
Writes must name one document by `_id`.

The dispatch service's lists (worklists and queues of every role, cursor-paged) are judged by shape against the indexes
the service itself declares (`index_problem`): a condition on an index's first field, or a limited page in an index's
order. That is what MongoDB serves from an index; the local FerretDB, which pushes nothing but `_id` down, still scans
for them (measured: ~1.5 s a worklist page at 100,000 entries), which the test prints and does not judge.
"""
from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime

import httpx
from pymongo import AsyncMongoClient, monitoring

from contracts import Envelope
from contracts.events.identity import BusinessProfileChanged, FinancialPeriod
from tests.support import TEST_ISSUER, public_key_file, token

N = int(os.environ.get("SCAN_TEST_DOCS", "100000"))
PREFS = ["東京都", "大阪府", "愛知県", "福岡県", "北海道", "宮城県", "広島県", "鳥取県"]
INDUSTRIES = ["製造業", "小売業", "サービス業", "建設業", "飲食業"]


class Recorder(monitoring.CommandListener):
    def __init__(self):
        self.commands: list[dict] = []
        self.on = False

    def started(self, event):
        if self.on and event.command_name in ("find", "update", "delete", "findAndModify", "aggregate", "count",
                                               "distinct", "insert"):
            self.commands.append({"name": event.command_name, "db": event.database_name, "cmd": dict(event.command)})

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


def _id_only(flt: dict) -> bool:
    return set(flt) == {"_id"}


def _id_in(c: dict) -> bool:
    flt = c["cmd"].get("filter") or {}
    return isinstance(flt.get("_id"), dict) and "$in" in flt["_id"]


def shape_problem(c: dict) -> str | None:
    """None if the command's shape is served by the `_id` index on MongoDB; else why not."""
    cmd, name = c["cmd"], c["name"]
    if name == "insert":
        return None
    if name == "find":
        flt, sort = cmd.get("filter") or {}, cmd.get("sort") or {}
        if "_id" in flt and not isinstance(flt["_id"], dict):
            return None  # equality on _id (other fields only narrow the one document)
        if "_id" in flt and set(flt["_id"]) <= {"$in"}:
            return None  # a few ids (other fields only narrow them)
        if _id_only(flt) and set(flt["_id"]) <= {"$gt", "$gte", "$lt", "$lte"} and set(sort) <= {"_id"} and cmd.get("limit"):
            return None
        return f"find on {cmd['find']} by {flt} sort {sort} limit {cmd.get('limit')}"
    if name in ("update", "delete"):
        stmts = cmd.get("updates") or cmd.get("deletes") or []
        bad = [s["q"] for s in stmts if "_id" not in s["q"] or isinstance(s["q"]["_id"], dict)]
        return f"{name} on {cmd[name]} by {bad}" if bad else None
    if name == "findAndModify":
        q = cmd.get("query") or {}
        return None if "_id" in q and not isinstance(q["_id"], dict) else f"findAndModify by {q}"
    return f"{name} on {cmd.get(name)}"


async def declared_indexes(db) -> dict[str, list[list[str]]]:
    """Each collection's indexes as lists of fields (what `index_problem` judges by)."""
    return {col: [[k for k, _ in ix["key"]] for ix in (await db[col].index_information()).values()]
            for col in await db.list_collection_names()}


def index_problem(c: dict, indexes: dict[str, list[list[str]]]) -> str | None:
    """None if MongoDB serves the read by `_id` (`shape_problem`) or from an index the service declares (`indexes`:
    each collection's indexes as lists of fields): an equality, `$in` or closed range on an index's first field (the read
    is bounded by those values' documents, e.g. one institution's worklist, a name prefix), or, with no other condition than the cursor's, sorted
    by an index's first field and limited (a page of the newest). Else why not. FerretDB plans neither (it pushes only
    `_id` down), so these are judged by shape, as the `_id` ranges are."""
    why = shape_problem(c)
    if why is None:
        return None
    cmd, name = c["cmd"], c["name"]
    if name == "aggregate" and (cmd.get("pipeline") or [{}])[0].get("$match") is not None:
        # a count (`count_documents`): its `$match` is judged as a find's filter
        name, cmd = "find", {"find": cmd["aggregate"], "filter": cmd["pipeline"][0]["$match"]}
    if name not in ("find", "count"):
        return why
    col = cmd[name]
    firsts = {keys[0] for keys in indexes.get(col, [])}

    def served(flt: dict) -> bool:
        if any(f in firsts and (not isinstance(v, dict) or set(v) <= {"$in", "$eq"}) for f, v in flt.items()):
            return True
        if any(f in firsts and isinstance(v, dict) and set(v) & {"$gt", "$gte"} and set(v) & {"$lt", "$lte"}
               for f, v in flt.items()):
            return True  # a closed range on an index's first field (a prefix search: `name` from "abc" to "abc\uffff")
        if set(flt) == {"$or"}:  # MongoDB unions one index scan per branch: every branch must have one
            return all(served(b) for b in flt["$or"])
        return "_id" in flt and (not isinstance(flt["_id"], dict) or set(flt["_id"]) <= {"$in", "$eq"})

    flt = cmd.get("filter") or cmd.get("query") or {}
    if served(flt):
        return None
    sort = list(cmd.get("sort") or {})
    if sort and sort[0] in firsts and cmd.get("limit") and set(flt) <= {sort[0]}:
        return None
    return f"{why} (indexes of {col}: {indexes.get(col)})"


async def test_R_OPS_03_recommend_routes_never_scan_a_collection_at_100k_documents(infra, ns):
    os.environ.setdefault("JWT_PUBLIC_KEY_FILE", public_key_file())
    from recommend_service import domain, store
    from recommend_service.app import create_app
    from recommend_service.settings import RecommendSettings

    rec = Recorder()
    client = AsyncMongoClient(infra.mongo, tz_aware=True, event_listeners=[rec])
    db = client[ns.db("recommend")]
    svc = create_app(RecommendSettings(mongo_uri=infra.mongo, jwt_public_key_file=public_key_file(),
                                       jwt_issuer=TEST_ISSUER, topic_prefix=ns.prefix)).state.service
    svc.db = db
    await store.seed_catalogue(db, domain.load_catalogue())

    # 100,000 profiles as the consumer stores them (bulk-inserted: building them through events is the import
    # benchmark's job), a few learnt through the consumer so the read models hold real figures.
    t0 = time.perf_counter()
    batch = []
    for i in range(N):
        ind, pref, emp = INDUSTRIES[i % 5], PREFS[(i // 5) % 8], 1 + i % 120
        size = domain.size_class(ind, emp)
        batch.append({"_id": f"bulk-{i:07d}", "name": f"事業者{i}", "industry": ind, "prefecture": pref, "employees": emp,
                      "size": size, "segment": domain.segment(ind, size, pref), "peer_group": domain.peer_group(ind, size),
                      "owner": f"acc-{i}", "items": [], "uses": [], "notified": []})
        if len(batch) == 5000:
            await db.business_profiles.insert_many(batch, ordered=False)
            batch = []
    if batch:
        await db.business_profiles.insert_many(batch, ordered=False)
    print(f"\n{N:,} profiles inserted in {time.perf_counter() - t0:.1f} s")
    me, owner = f"biz-{uuid.uuid4().hex[:8]}", "acc-me"
    for j, b in enumerate([me] + [f"peer-{k}" for k in range(6)]):
        fin = [FinancialPeriod(fiscal_year=2022 + y, sales=100_000_000 + j * 1_000_000 * y, operating_profit=5_000_000 + j)
               for y in range(3)]
        env = Envelope.wrap(BusinessProfileChanged(business_id=b, profile_version=1, changed=["financials"], name=b,
                                                   prefecture="大阪府", industry="製造業", employees=12, financials=fin),
                            producer="identity", actor=owner if b == me else f"acc-{b}")
        await store.learn_profile(svc, b, {"name": b, "prefecture": "大阪府", "industry": "製造業", "employees": 12,
                                           "corporate_number": None, "updated_at": env.occurred_at,
                                           "financials": [f.model_dump() for f in fin]}, env.actor, env)
    # a segment no programme fits (large businesses): its empty candidate list must still read as one
    big = Envelope.wrap(BusinessProfileChanged(business_id="big-1", profile_version=1, changed=["employees"], name="大企業",
                                               prefecture="東京都", industry="製造業", employees=5000), producer="identity")
    await store.learn_profile(svc, "big-1", {"name": "大企業", "prefecture": "東京都", "industry": "製造業", "employees": 5000,
                                             "corporate_number": None, "updated_at": big.occurred_at}, None, big)
    assert (await store.segment(db, "製造業|large|東京都"))["candidates"] == []
    assert await db.business_profiles.estimated_document_count() >= N

    h = {"authorization": f"Bearer {token(sub=owner, roles=['business'], biz=[{'id': me, 'role': 'prime'}])}"}
    op = {"authorization": f"Bearer {token(sub='op-1', roles=['operator'])}"}
    routes = [("GET", "/programmes", h, None), ("GET", "/programmes?limit=5&after=fy2009", h, None),
              ("GET", f"/businesses/{me}", h, None),
              ("POST", f"/businesses/{me}/interactions", h, {"programme_id": "fy2009-kaigai-tenkai", "kind": "used"}),
              ("GET", f"/businesses/{me}/recommendations?keywords=事業承継", h, None),
              ("GET", f"/businesses/{me}/case-recommendations?keywords=事業承継", h, None),
              ("GET", f"/businesses/{me}/posting-recommendations?keywords=事業承継", h, None),
              ("GET", "/cases?q=販路開拓&region=鳥取県", h, None),
              ("GET", f"/businesses/{me}/diagnosis?programme_id=fy2020-monozukuri-renkei&investment_yen=1000000", h, None),
              ("GET", f"/businesses/{me}/benchmark", h, None), ("GET", f"/businesses/{me}/benchmark.pdf", h, None),
              ("GET", "/analytics/programme-uptake", op, None), ("GET", "/analytics/programme-uptake?after=fy2009&limit=3", op, None)]
    problems, explained = [], 0
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=svc.app), base_url="http://recommend") as http:
        for method, path, headers, body in routes:
            rec.commands.clear()
            rec.on = True
            r = await http.request(method, path, headers=headers, json=body)
            rec.on = False
            assert r.status_code in (200, 201), (path, r.status_code, r.text)
            if "/diagnosis" in path:  # R-REC-03 from the sketch: six peers learnt, the business itself left out
                assert r.json()["peers"] == 6 and r.json()["peer_medians"]["sales_growth"] is not None, r.text
            if path.endswith("/benchmark"):  # R-REC-06 from the industry's sketch, the business itself left out
                assert r.json()["indicators"][0]["peers"] == 6 and r.json()["indicators"][0]["score"], r.text
            assert rec.commands or path.startswith("/cases"), f"{path} sent no database command?"  # cases: in memory
            for c in rec.commands:
                if c["name"] == "find":
                    cmd = {k: v for k, v in c["cmd"].items() if k in ("find", "filter", "sort", "limit", "projection")}
                    plan = await client[c["db"]].command({"explain": cmd, "verbosity": "queryPlanner"})
                    explained += 1
                    text = repr(plan.get("queryPlanner"))
                    if "COLLSCAN" in text or ("SCAN " in text and "USING INDEX" not in text):
                        # the server scanned: acceptable only for a shape MongoDB serves from the _id index and the
                        # local server cannot (an `_id` $in it can, patched: its SQLite plan must not scan)
                        why = shape_problem(c) or ("an _id $in scanned" if _id_in(c) and "SCAN " in text else None)
                        if why:
                            problems.append(f"{method} {path}: collection scan: {why}: {text[:200]}")
                        continue
                why = shape_problem(c)
                if why:
                    problems.append(f"{method} {path}: {why}")
    await client.close()
    print(f"{explained} reads explained over {len(routes)} routes")
    assert not problems, "\n".join(problems)


async def test_R_OPS_03_a_dispatch_request_never_scans_a_collection(infra, ns):
    """The dispatch service's busiest path: a route-A request screened and accepted (R-DSP-01..04, R-DSP-12), read back,
    and the business's free dispatches, with 20,000 other dispatches, owed ratings and slots stored: every read by
    `_id`, judged as above."""
    os.environ.setdefault("JWT_PUBLIC_KEY_FILE", public_key_file())
    from datetime import UTC, date, datetime, timedelta

    from contracts.vocab import fiscal_year
    from dispatch_service.app import create_app
    from dispatch_service.settings import DispatchSettings

    rec = Recorder()
    client = AsyncMongoClient(infra.mongo, tz_aware=True, event_listeners=[rec])
    db = client[ns.db("dispatch") + "_scan"]
    try:
        app = create_app(DispatchSettings(mongo_uri=infra.mongo, jwt_public_key_file=public_key_file(),
                                          jwt_issuer=TEST_ISSUER, topic_prefix=ns.prefix))
        svc = app.state.service
        svc.db = db
        store = app.state.store
        store.__init__(svc)   # on this database
        fy = fiscal_year((datetime.now(UTC) + timedelta(hours=9)).date())
        await store.setup([fy])
        m = 20_000
        await db.dispatches.insert_many([{"_id": f"old-{i}", "business_id": f"other-{i % 5000}", "expert_id": "ex-s",
                                          "status": "paid", "fiscal_year": fy, "route": "A"} for i in range(m)])
        await db.pending_ratings.insert_many([{"_id": f"owed-{i}", "business_id": f"other-{i % 5000}",
                                               "rater_kind": "business", "given": i % 2 == 0} for i in range(m)])
        await db.free_slots.insert_many([{"_id": f"other-{i}:{fy}:1", "n": 1, "business_id": f"other-{i}",
                                          "fiscal_year": fy, "dispatch_id": f"old-{i}"} for i in range(5000)])
        await db.experts.insert_one({"_id": "ex-s", "account_id": "acct-ex-s", "status": "registered",
                                     "registered_fiscal_year": fy})
        await db.business_people.insert_one({"_id": "biz-s", "prime": "acct-biz-s"})
        await db.memberships.insert_one({"_id": "plat-s:inst-s", "platform_id": "plat-s", "org_id": "inst-s",
                                         "member_role": "representative"})
        staff = {"authorization": "Bearer " + token(
            sub="staff-s", roles=["institution"],
            orgs=[{"org_id": "inst-s", "platform_id": "plat-s", "member_role": "representative",
                   "rights": ["request_dispatch"]}],
            dlg=[{"id": "dlg-s", "business_id": "biz-s", "org_id": "inst-s", "scopes": ["dispatch:request", "dispatch:read"],
                  "exp": int(time.time()) + 3600}])}
        body = {"business_id": "biz-s", "expert_id": "ex-s", "institution_id": "inst-s",
                "issue": "A clear management issue that needs a specialist's knowledge.", "beyond_self_help": True,
                "needs_specialist": True, "planned_visits": [{"day": date(fy + 1, 2, 1).isoformat(), "hours": 2}]}
        problems = []
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://dispatch") as http:
            async def call(method, path, json=None):
                rec.commands.clear()
                rec.on = True
                r = await http.request(method, path, headers=staff, json=json)
                rec.on = False
                assert r.status_code in (200, 201), (path, r.status_code, r.text)
                for c in rec.commands:
                    if why := shape_problem(c):
                        problems.append(f"{method} {path}: {why}")
                return r.json()
            made = await call("POST", "/requests", body)
            assert made["status"] == "accepted", made
            await call("GET", f"/requests/{made['dispatch_id']}")
            free = await call("GET", "/businesses/biz-s/free-dispatches")
            assert free["used"] == 1 and free["dispatch_ids"] == [made["dispatch_id"]]
        assert not problems, "\n".join(problems)
    finally:
        await client.drop_database(ns.db("dispatch") + "_scan")
        await client.close()


async def test_R_OPS_03_dispatch_lists_read_only_what_a_page_needs(infra, ns, monkeypatch):
    """Every list of the dispatch service (the worklists of each role and the agency's queues, integrity flags, support
    history, its grants and reads, what is shared with an institution, the outcome KPI and the EBPM reports) over
    100,000 worklist entries: each read is an `_id` lookup or served by an index the service declares (`index_problem`),
    first and second page. (The local FerretDB answers these from a scan all the same: it pushes only `_id` down.)"""
    os.environ.setdefault("JWT_PUBLIC_KEY_FILE", public_key_file())
    import servicekit.service
    from dispatch_service.app import create_app
    from dispatch_service.settings import DispatchSettings
    from servicekit import paging

    rec = Recorder()
    name = ns.db("dispatch") + "_lists"
    client = AsyncMongoClient(infra.mongo, tz_aware=True, event_listeners=[rec])
    monkeypatch.setattr(servicekit.service, "connect", lambda uri, timeout_ms=2000: client)  # the app's commands recorded
    try:
        app = create_app(DispatchSettings(mongo_uri=infra.mongo, mongo_db=name, jwt_public_key_file=public_key_file(),
                                          jwt_issuer=TEST_ISSUER, topic_prefix=ns.prefix))
        svc = app.state.service
        db = client[name]
        statuses = ["requested", "approved", "visited", "reported", "confirmed", "budget_unanswered"]
        t0 = time.time()
        began = time.monotonic()
        for start in range(0, N, 10_000):
            await db.worklist.insert_many([{
                "_id": f"dsp-{i:06d}", "status": statuses[i % 6], "route": "AB"[i % 2], "fiscal_year": 2026,
                "business_id": f"biz-{i % 20_000}", "expert_id": f"ex-{i % 2000}", "institution_id": f"inst-{i % 500}",
                "platform_id": "plat-s", "at": datetime.fromtimestamp(t0 - i, UTC),
                "requested_at": datetime.fromtimestamp(t0 - i, UTC),
                "key": paging.sort_key(datetime.fromtimestamp(t0 - i, UTC), f"dsp-{i:06d}")}
                for i in range(start, min(N, start + 10_000))])
        # the EBPM counters' first-start copy of every business is not what this test is about
        await db.migrations.insert_one({"_id": "ebpm-counters:v1"})
        for hook in svc._startup:  # the service's own index declarations (after the load: one build per index)
            await hook()
        loaded = time.monotonic() - began
        await db.experts.insert_one({"_id": "ex-7", "account_id": "acct-ex-7", "status": "registered"})
        indexes = await declared_indexes(db)

        def auth(sub, *roles, **claims):
            return {"authorization": "Bearer " + token(sub=sub, roles=list(roles), ttl=1800, **claims)}
        business = auth("acct-biz-7", "business", biz=[{"id": "biz-7", "role": "prime"}])
        institution = auth("staff-7", "institution", orgs=[{"org_id": "inst-7", "platform_id": "plat-s",
                                                            "member_role": "representative", "rights": ["request_dispatch"]}])
        expert = auth("acct-ex-7", "expert")
        agency = auth("agency-7", "agency")
        routes = [("/worklists/business", business), ("/worklists/business?status=approved&fiscal_year=2026", business),
                  ("/worklists/institution", institution), ("/worklists/institution?status=requested", institution),
                  ("/worklists/expert", expert), ("/worklists/expert?queue=visits", expert),
                  ("/worklists/agency", agency), ("/worklists/agency?queue=all", agency),
                  ("/worklists/agency?queue=unanswered", agency), ("/worklists/agency?queue=all&institution_id=inst-7", agency),
                  ("/worklists/agency?queue=all&expert_id=ex-7&status=reported", agency),
                  ("/integrity/flags", agency), ("/support-history", business), ("/support-history/grants", business),
                  ("/support-history/reads", business), ("/support-history/shared", institution),
                  ("/outcomes/kpi", agency), ("/reports/ebpm/uptake", agency), ("/reports/ebpm/outcomes", agency)]
        problems, pages, slowest = [], 0, (0.0, "")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://dispatch") as http:
            for path, headers in routes:
                cursor = None
                for _ in range(2):  # the first page and the next
                    rec.commands.clear()
                    rec.on = True
                    t = time.monotonic()
                    r = await http.get(path, headers=headers, params={"limit": 20, **({"cursor": cursor} if cursor else {})})
                    rec.on = False
                    slowest = max(slowest, (time.monotonic() - t, path))
                    assert r.status_code == 200, (path, r.status_code, r.text[:300])
                    pages += 1
                    for c in rec.commands:
                        if why := index_problem(c, indexes):
                            problems.append(f"GET {path}: {why}")
                    cursor = r.json().get("next_cursor") if isinstance(r.json(), dict) else None
                    if not cursor:
                        break
            assert pages > len(routes), "no list had a second page?"
        # on FerretDB, which pushes down only `_id`, a worklist page still reads the whole collection (~1.5 s at 100,000)
        print(f"{pages} pages over {len(routes)} routes at {N} worklist entries (loaded in {loaded:.0f} s); slowest page "
              f"{slowest[0]:.2f} s ({slowest[1]})")
        assert not problems, "\n".join(dict.fromkeys(problems))
    finally:
        await client.drop_database(name)
        await client.close()


def test_R_OPS_03_the_shape_check_fails_on_a_scan():
    """The judge itself: the shapes the routes used before the read models are refused."""
    assert shape_problem({"name": "find", "cmd": {"find": "interactions", "filter": {}}})
    assert shape_problem({"name": "find", "cmd": {"find": "business_profiles",
                                                  "filter": {"industry": "製造業", "size": "small", "_id": {"$ne": "b"}}}})
    assert shape_problem({"name": "find", "cmd": {"find": "programmes", "filter": {"_id": {"$gt": ""}}}})  # no limit
    assert shape_problem({"name": "update", "cmd": {"update": "x", "updates": [{"q": {"notified": {"$ne": "p"}}}]}})
    assert shape_problem({"name": "aggregate", "cmd": {"aggregate": "x"}})
    assert not shape_problem({"name": "find", "cmd": {"find": "x", "filter": {"_id": "a", "v": 1}}})
    assert not shape_problem({"name": "find", "cmd": {"find": "x", "filter": {"_id": {"$gt": "a"}}, "sort": {"_id": 1},
                                                      "limit": 5}})
    ix = {"worklist": [["_id"], ["institution_id", "key"], ["key"]]}
    assert not index_problem({"name": "find", "cmd": {"find": "worklist", "filter": {"institution_id": "i", "status": {
        "$in": ["a"]}}, "sort": {"key": -1}, "limit": 21}}, ix)
    assert not index_problem({"name": "find", "cmd": {"find": "worklist", "filter": {"key": {"$lt": "k"}},
                                                      "sort": {"key": -1}, "limit": 21}}, ix)
    assert index_problem({"name": "find", "cmd": {"find": "worklist", "filter": {"status": "a"}, "sort": {"key": -1},
                                                  "limit": 21}}, ix)  # no index starts with status
    assert index_problem({"name": "find", "cmd": {"find": "worklist", "filter": {"institution_id": {"$ne": "i"}}}}, ix)
    assert index_problem({"name": "find", "cmd": {"find": "worklist", "filter": {}, "sort": {"key": -1}}}, ix)  # no limit
    assert not index_problem({"name": "find", "cmd": {"find": "worklist", "filter": {"$or": [
        {"institution_id": "i"}, {"_id": "d"}]}}}, ix)
    assert index_problem({"name": "find", "cmd": {"find": "worklist", "filter": {"$or": [
        {"institution_id": "i"}, {"status": "a"}]}}}, ix)  # one branch has no index: the whole $or scans
    assert not index_problem({"name": "aggregate", "cmd": {"aggregate": "worklist", "pipeline": [
        {"$match": {"institution_id": "i"}}, {"$group": {"_id": 1, "n": {"$sum": 1}}}]}}, ix)
    assert index_problem({"name": "aggregate", "cmd": {"aggregate": "worklist", "pipeline": [{"$match": {"x": 1}}]}}, ix)
    assert not index_problem({"name": "find", "cmd": {"find": "worklist", "filter": {
        "institution_id": {"$gte": "ab", "$lt": "ab\uffff"}}, "sort": {"_id": 1}, "limit": 21}}, ix)
    assert index_problem({"name": "find", "cmd": {"find": "worklist", "filter": {"institution_id": {"$gte": "ab"}}}}, ix)

"""R-OPS-03, every service: no GET route reads by a condition that no index serves. Each service's app runs in this
process on its own database, with every command it sends to MongoDB recorded; its start-up declares its indexes. Every
GET route of its generated OpenAPI document is then called with a token holding every role (path parameters filled
with a placeholder id that the token's business, organisation and account claims also name), once bare and once with
every query parameter given a value of its schema (filters change the query), and each read it sends is
judged by `index_problem` (tests/integration/test_no_collection_scan.py): an `_id` lookup, or served by an index the
service declares. The focused tests there run the busiest routes at 100,000 documents; this sweep runs the rest on an
empty database, where a route still sends the queries it would send at any size (a route that answers 401/403/404/422
is counted as called: it sent what it sent before refusing).
"""
from __future__ import annotations

import importlib
import os

import httpx
import pytest
from pymongo import AsyncMongoClient

from servicekit.bus import ensure_topics
from tests.integration.test_no_collection_scan import Recorder, declared_indexes, index_problem
from tests.support import TEST_ISSUER, public_key_file, token

SERVICES = ["identity", "experts", "dispatch", "budget", "ratings", "notifications", "recommend", "community"]
SKIP = ("/healthz", "/readyz", "/metrics", "/.well-known/", "/jwks.json", "/authorize", "/federation/", "/pages/",
        "/developers/openapi.json", "/developers/asyncapi.json")
# Collections small by nature, which a route may read whole: why each is bounded whatever the portal's size.
BOUNDED = {"budget": {"frames": "one frame per platform and fiscal year (tens a year): what a budget report adds up"}}
X = "x1"  # the placeholder of every path parameter, and the business / organisation / account the token names


def example(name: str, schema: dict):
    """A value of a query parameter's schema (None: leave it out)."""
    schema = next((s for s in schema.get("anyOf", [schema]) if s.get("type") != "null"), schema)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "array":
        return example(name, schema.get("items") or {})
    if kind == "integer":
        return 2026 if "year" in name else schema.get("default") or schema.get("minimum") or 1
    if kind == "number":
        return schema.get("minimum") or 1
    if kind == "boolean":
        return "true"
    if kind == "string" and "pattern" not in schema and "format" not in schema:
        return X
    return None


def with_params(operation: dict) -> dict:
    """Every query parameter of the route given a value (filters change what a route asks the database)."""
    out = {}
    for prm in operation.get("parameters", []):
        if prm["in"] == "query" and prm["name"] != "cursor":
            if (v := example(prm["name"], prm.get("schema") or {})) is not None:
                out[prm["name"]] = v
    return out


def everyone() -> dict:
    rights = ["manage_budget", "request_dispatch", "recommend_experts", "joint_activities"]
    return {"authorization": "Bearer " + token(
        sub=X, roles=["operator", "agency", "institution", "business", "founder", "expert", "bureau"], ttl=1800,
        biz=[{"id": X, "role": "prime"}],
        orgs=[{"org_id": X, "platform_id": X, "member_role": "representative", "rights": rights}])}


@pytest.mark.parametrize("service", SERVICES)
async def test_R_OPS_03_no_get_route_reads_by_an_unindexed_condition(infra, ns, monkeypatch, service):
    os.environ.setdefault("JWT_PUBLIC_KEY_FILE", public_key_file())
    import servicekit.service

    rec = Recorder()
    name = f"{ns.db(service)}_sweep"
    client = AsyncMongoClient(infra.mongo, tz_aware=True, event_listeners=[rec])
    monkeypatch.setattr(servicekit.service, "connect", lambda uri, timeout_ms=2000: client)
    for k, v in {"MONGO_URI": infra.mongo, "MONGO_DB": name, "JWT_PUBLIC_KEY_FILE": public_key_file(),
                 "JWT_ISSUER": TEST_ISSUER, "TOPIC_PREFIX": ns.prefix}.items():
        monkeypatch.setenv(k, v)
    try:
        app = importlib.import_module(f"{service}_service.app").create_app()
        svc = app.state.service
        await ensure_topics(svc.settings, svc.topics)  # as the service's start does: some start-ups read a topic
        for hook in svc._startup:  # the service's index declarations
            await hook()
        db = client[name]
        indexes = await declared_indexes(db)
        api = app.openapi()["paths"]
        paths = [p for p, ops in api.items() if "get" in ops and not p.startswith(SKIP)]
        problems, answered = [], {}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{service}") as http:
            for path, params in [(p, {}) for p in paths] + [(p, with_params(api[p]["get"])) for p in paths]:
                url = path
                while "{" in url:
                    url = url[:url.index("{")] + X + url[url.index("}") + 1:]
                rec.commands.clear()
                rec.on = True
                r = await http.get(url, headers=everyone(), params=params)
                rec.on = False
                assert r.status_code < 500, (url, params, r.status_code, r.text[:300])
                answered[path] = min(answered.get(path, 999), r.status_code)
                for c in rec.commands:
                    if c["cmd"].get(c["name"]) in BOUNDED.get(service, {}):
                        continue
                    if why := index_problem(c, indexes):
                        problems.append(f"GET {path} {params or ''}: {why}")
        ok = sorted(p for p, s in answered.items() if s < 300)
        print(f"\n{service}: {len(paths)} GET routes, {len(ok)} answered 2xx; the others: "
              f"{ {p: s for p, s in answered.items() if s >= 300} }")
        assert ok, f"{service}: no route answered the all-roles token"
        assert not problems, "\n".join(dict.fromkeys(problems))
    finally:
        await client.drop_database(name)
        await client.close()

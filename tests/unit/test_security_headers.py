"""Every service response says `X-Content-Type-Options: nosniff`; answers to authenticated requests (personal
data) also say `Cache-Control: no-store` — successes, problem documents and unexpected 500s alike. The app is the
one `servicekit.Service` builds for every service (its lifespan, which needs Kafka, is not started)."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from servicekit.problems import Problem
from servicekit.service import Service


@pytest.fixture(scope="module")
def client() -> TestClient:
    svc = Service("probe", title="Probe", honour_revocations=False)

    @svc.app.get("/mine")
    async def mine(n: int = 1):
        return {"n": n}

    @svc.app.get("/gone")
    async def gone():
        raise Problem(404, "Not found", "nothing here")

    @svc.app.get("/broken")
    async def broken():
        raise RuntimeError("bug")

    return TestClient(svc.app, raise_server_exceptions=False)


AUTH = {"authorization": "Bearer anything"}


@pytest.mark.parametrize("path, status", [("/mine", 200), ("/mine?n=x", 422), ("/gone", 404), ("/broken", 500),
                                          ("/nowhere", 404), ("/healthz", 200)])
def test_authenticated_requests_get_nosniff_and_no_store(client, path, status):
    r = client.get(path, headers=AUTH)
    assert r.status_code == status
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["cache-control"] == "no-store"


def test_anonymous_requests_get_nosniff_and_may_be_cached(client):
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "cache-control" not in r.headers

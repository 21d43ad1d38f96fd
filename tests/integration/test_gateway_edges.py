"""The gateway's edges, through the real HAProxy (deploy/local/gateway.sh): only tokens of the configured issuer,
its own errors as problem documents, security headers on API answers, and rate limits per user within a client
under a higher ceiling per client."""
from __future__ import annotations

import asyncio
import subprocess
import time

import httpx
import jwt
import pytest

from tests.support import GATEWAY_PORT, LOCAL, TEST_ISSUER, gateway_env, private_key, service_port, token

PROBLEM = "application/problem+json"


def bearer(**claims) -> dict:
    return {"authorization": f"Bearer {token(**claims)}"}


async def test_gateway_accepts_only_tokens_of_the_configured_issuer(services, gateway):
    services("notifications", port=service_port("notifications"))
    now = int(time.time())
    no_iss = jwt.encode({"sub": "u1", "roles": ["business"], "aud": "smeportal", "iat": now, "exp": now + 300},
                        private_key(), algorithm="RS256")
    async with httpx.AsyncClient(base_url=gateway, timeout=10) as http:
        r = await http.get("/api/notifications/inbox", headers=bearer(sub="u1", roles=["business"]))
        assert r.status_code == 200, r.text
        for headers in (bearer(sub="u1", roles=["business"], iss="https://idp.example.org"),
                        bearer(sub="u1", roles=["business"], iss=TEST_ISSUER + "/"),
                        {"authorization": f"Bearer {no_iss}"}):
            r = await http.get("/api/notifications/inbox", headers=headers)
            assert r.status_code == 401 and r.headers["content-type"] == PROBLEM
            assert r.json()["detail"] == "wrong token issuer"  # said by the gateway, before the service sees it


async def test_security_headers_on_api_answers_from_the_service_and_the_gateway(services, gateway):
    service = services("notifications", port=service_port("notifications"))
    async with httpx.AsyncClient(timeout=10) as http:
        # the service itself (servicekit): nosniff always, no-store on an authenticated answer
        direct = await http.get(f"{service.url}/inbox", headers=bearer(sub="u1", roles=["business"]))
        assert direct.status_code == 200
        assert (direct.headers["x-content-type-options"], direct.headers["cache-control"]) == ("nosniff", "no-store")
        anonymous = await http.get(f"{service.url}/healthz")
        assert anonymous.headers["x-content-type-options"] == "nosniff" and "cache-control" not in anonymous.headers
        # through the gateway: every /api/ answer, the anonymous health check and the gateway's own errors too
        for method, path, headers, status in [
                ("GET", "/api/notifications/inbox", bearer(sub="u1", roles=["business"]), 200),
                ("GET", "/api/notifications/healthz", {}, 200),
                ("GET", "/api/notifications/inbox", {}, 401),
                ("GET", "/api/nowhere", bearer(sub="u1", roles=["business"]), 404)]:
            r = await http.request(method, f"{gateway}{path}", headers=headers)
            assert r.status_code == status, (path, r.text)
            assert r.headers["x-content-type-options"] == "nosniff", path
            assert r.headers["cache-control"] == "no-store", path


async def test_haproxy_own_errors_are_problem_documents(gateway):
    async with httpx.AsyncClient(base_url=gateway, timeout=20) as http:
        # no budget service runs: HAProxy cannot reach it
        unavailable = await http.get("/api/budget/healthz")
        # a method no service answers is refused by the gateway itself
        trace = await http.request("TRACE", "/api/identity/healthz")
        # headers that leave the gateway no room to add its own: HAProxy's internal error
        big = await http.get("/api/nowhere", headers={**bearer(sub="s" * 4000), "x-pad": "p" * 7500})
    for r, status in ((unavailable, 503), (trace, 405), (big, 500)):
        assert r.status_code == status, r.text
        assert r.headers["content-type"] == PROBLEM, r.text
        assert r.json()["status"] == status and r.json()["detail"]
        assert r.headers["x-request-id"] and r.headers["x-content-type-options"] == "nosniff"
    assert "GET" in trace.headers["allow"]


PER_USER, PER_CLIENT = 10, 30  # requests/s, low so that a test reaches them


@pytest.fixture
def limited_gateway(infra, ns):
    """The real gateway with low rate limits (the limits are the script's GATEWAY_*RATE_LIMIT settings)."""
    env = gateway_env(infra, ns, GATEWAY_RATE_LIMIT=str(PER_USER), GATEWAY_CLIENT_RATE_LIMIT=str(PER_CLIENT))
    subprocess.run([LOCAL / "gateway.sh", "stop"], env=env, check=True)  # a running one keeps its own limits
    subprocess.run([LOCAL / "gateway.sh", "start"], env=env, check=True)
    yield f"http://127.0.0.1:{GATEWAY_PORT}"
    subprocess.run([LOCAL / "gateway.sh", "stop"], env=env, check=True)


async def _burst(http: httpx.AsyncClient, headers: dict, n: int) -> list[httpx.Response]:
    # an unknown route: the gateway answers 404 itself once the rate limits let the request through
    return await asyncio.gather(*(http.get("/api/nowhere", headers=headers) for _ in range(n)))


def _refusals(responses: list[httpx.Response]) -> list[str]:
    assert {r.status_code for r in responses} <= {404, 429}
    return [r.json()["detail"] for r in responses if r.status_code == 429]


async def test_rate_limit_is_per_user_within_a_client_under_a_higher_ceiling_per_client(limited_gateway):
    async with httpx.AsyncClient(base_url=limited_gateway, timeout=10) as http:
        # one user of the portal front end floods: they are refused, and the client's other users are not
        alice = bearer(sub="alice", roles=["business"], client_id="portal")
        refused = _refusals(await _burst(http, alice, 4 * PER_USER))
        assert refused and set(refused) == {"too many requests from this user; retry in a second"}
        bob = await http.get("/api/nowhere", headers=bearer(sub="bob", roles=["business"], client_id="portal"))
        assert bob.status_code == 404, bob.text

        # many users of one client, each under the per-user limit, together over the client's ceiling
        users = [bearer(sub=f"user-{i}", roles=["business"], client_id="portal") for i in range(8)]
        bursts = await asyncio.gather(*(_burst(http, u, PER_USER - 2) for u in users))
        refused = [d for b in bursts for d in _refusals(b)]
        assert refused and set(refused) == {"too many requests from this client application; retry in a second"}
        # another client application is not held back by the first one's ceiling
        other = await http.get("/api/nowhere", headers=bearer(sub="carol", roles=["business"], client_id="other-app"))
        assert other.status_code == 404, other.text
        assert other.headers["content-type"] == PROBLEM

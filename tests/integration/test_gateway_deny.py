"""The gateway's own deny list (R-ID-09), through the real HAProxy and its deny-list sync (deploy/local/gateway.sh):
a token revoked at identity (RFC 7009), a token of a revoked client and a token of a revoked account are refused
by the gateway itself within 2 s, before any service sees them; a restarted HAProxy and a new replica start with
the whole list; malformed events are dead-lettered once."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time

import httpx
import jwt
from aiokafka import AIOKafkaProducer

from contracts import Envelope
from contracts.events.identity import ClientRevoked
from servicekit import registry
from tests.integration.identity_support import OPERATOR, mail_env, password_login, portal_client, signup
from tests.support import GATEWAY_VAR, LOCAL, SERVICES, eventually, gateway_env, read_topic, service_port, token

# one authenticated GET per service (its `probe` in services/registry.toml); only identity runs here, so for the
# others there is no backend at all: a 401 on their routes can only come from the gateway
PROBES = {s.name: s.probe for s in registry.services() if s.gateway}
GATEWAY_SAYS = "this {} has been revoked"  # the services say "This token, its account or its client has been revoked."


def _bearer(access: str) -> dict:
    return {"authorization": f"Bearer {access}"}


async def _refused_by_the_gateway(http: httpx.AsyncClient, url: str, access: str, what: str) -> httpx.Response | None:
    r = await http.get(url, headers=_bearer(access))
    if r.status_code == 401 and r.headers["content-type"] == "application/problem+json" \
            and r.json()["detail"] == GATEWAY_SAYS.format(what):
        return r
    return None


async def _access_log(request_id: str) -> dict | None:
    for line in (GATEWAY_VAR / "log" / "gateway.log").read_text(errors="replace").splitlines():
        if f'"rid":"{request_id}"' in line:
            return json.loads(line)
    return None


async def test_R_ID_09_the_gateway_itself_refuses_revoked_tokens_clients_and_accounts_within_2s(services, gateway,
                                                                                                infra, ns):
    services("identity", port=service_port("identity"), **mail_env())
    revoked: list[tuple[str, str]] = []  # (access token, what the gateway says was revoked)
    latency: dict[str, float] = {}
    async with httpx.AsyncClient(base_url=f"{gateway}/api/identity", timeout=15) as http:
        portal, spare = await portal_client(http), await portal_client(http)
        await signup(http, "gw-deny@example.jp")

        async def revoked_at_the_gateway(access: str, what: str, revoke) -> None:
            assert (await http.get("/accounts/me", headers=_bearer(access))).status_code == 200
            start = time.monotonic()
            await revoke()
            await eventually(lambda: _refused_by_the_gateway(http, f"{gateway}/api/identity/accounts/me", access, what),
                             timeout=2, interval=0.02)
            latency[what] = time.monotonic() - start
            revoked.append((access, what))

        # a user token revoked by its client (RFC 7009)
        t = (await password_login(http, portal["client_id"], "gw-deny@example.jp"))["access_token"]
        # while valid, the gateway passes it on: to identity (200), to the absent backends (503)
        valid = await asyncio.gather(*(http.get(f"{gateway}/api/{n}{p}", headers=_bearer(t)) for n, p in PROBES.items()))
        assert [r.status_code for r in valid] == [200] + [503] * (len(PROBES) - 1)
        await revoked_at_the_gateway(t, "token", lambda: http.post(
            "/revoke", data={"token": t, "client_id": portal["client_id"]}))

        # a token of a client the operator revoked
        t = (await password_login(http, spare["client_id"], "gw-deny@example.jp"))["access_token"]

        async def revoke_client():
            assert (await http.post(f"/clients/{spare['client_id']}/revoke", headers=OPERATOR)).status_code == 204
        await revoked_at_the_gateway(t, "client", revoke_client)

        # a token of an account the operator revoked (forced exit)
        t = (await password_login(http, portal["client_id"], "gw-deny@example.jp"))["access_token"]
        me = jwt.decode(t, options={"verify_signature": False})["sub"]

        async def revoke_account():
            r = await http.post(f"/accounts/{me}/revoke", headers=OPERATOR, json={"reason": "case 2026-17"})
            assert r.status_code == 200
        await revoked_at_the_gateway(t, "account", revoke_account)
        print("\ngateway deny latency (revocation sent to identity -> the gateway's own 401): "
              + ", ".join(f"{what} {s * 1000:.0f} ms" for what, s in latency.items()))
        assert all(s < 2 for s in latency.values())

        async def all_refused_by_the_gateway() -> None:
            """Every route of every service, each token: the gateway's document, and no server was asked."""
            for access, what in revoked:
                answers = await asyncio.gather(*(_refused_by_the_gateway(http, f"{gateway}/api/{n}{p}", access, what)
                                                 for n, p in PROBES.items()))
                assert all(answers), (what, [n for n, a in zip(PROBES, answers) if not a])
                assert all(a.headers["www-authenticate"].startswith("Bearer") for a in answers)
                for a in answers:
                    line = await eventually(lambda a=a: _access_log(a.headers["x-request-id"]), timeout=5)
                    assert (line["status"], line["server"]) == (401, "<NOSRV>"), line

        await all_refused_by_the_gateway()

        # HAProxy restarted alone: it loads the map file the sync keeps
        env = gateway_env(infra, ns)
        pid = int((GATEWAY_VAR / "run" / "gateway.pid").read_text())
        os.kill(pid, signal.SIGTERM)
        await eventually(lambda: _gone(pid), timeout=10)
        subprocess.run([LOCAL / "gateway.sh", "start"], env=env, check=True)
        await all_refused_by_the_gateway()

        # a new gateway (HAProxy and sync both started afresh, the map file gone): rebuilt from identity.events
        subprocess.run([LOCAL / "gateway.sh", "stop"], env=env, check=True)
        (GATEWAY_VAR / "gateway" / "deny.map").unlink(missing_ok=True)
        subprocess.run([LOCAL / "gateway.sh", "start"], env=env, check=True)
        await all_refused_by_the_gateway()
        # an unrevoked token of the same client still passes
        fresh = await signup(http, "gw-deny-2@example.jp")
        t = (await password_login(http, portal["client_id"], "gw-deny-2@example.jp"))["access_token"]
        assert (await http.get("/accounts/me", headers=_bearer(t))).status_code == 200, fresh
    assert set(SERVICES) == set(PROBES)


async def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_malformed_identity_events_are_dead_lettered_once_by_the_gateway_sync(gateway, infra, ns):
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka)
    await producer.start()
    try:
        await producer.send_and_wait(ns.topic("identity.events"), b"\x00 not json at all", key=b"cl-x")
        ok = Envelope.wrap(ClientRevoked(client_id="cl-after-the-bad-one", reason="x"), producer="identity")
        await producer.send_and_wait(ns.topic("identity.events"), ok.model_dump_json().encode(), key=b"cl-x")
    finally:
        await producer.stop()
    access = token(sub="acc-1", roles=["business"], client_id="cl-after-the-bad-one")
    async with httpx.AsyncClient(timeout=10) as http:
        # an unknown route: the gateway answers it itself (404) unless the token is refused first
        await eventually(lambda: _refused_by_the_gateway(http, f"{gateway}/api/nowhere", access, "client"), timeout=5)
        dead = await read_topic(infra.kafka, ns.topic("identity.events.dlq"), min_count=1)
        headers = {k: v.decode() for k, v in dead[0].headers}
        assert dead[0].value == b"\x00 not json at all"
        assert headers["x-dlq-consumer"] == "gateway-sync" and "not a valid envelope" in headers["x-dlq-reason"]
        assert headers["x-dlq-source"].startswith(ns.topic("identity.events") + "/")

        # a new replica replays the topic from the start: the client stays refused, the bad record is not sent again
        env = gateway_env(infra, ns)
        subprocess.run([LOCAL / "gateway.sh", "stop"], env=env, check=True)
        subprocess.run([LOCAL / "gateway.sh", "start"], env=env, check=True)
        assert await _refused_by_the_gateway(http, f"{gateway}/api/nowhere", access, "client")
        assert len(await read_topic(infra.kafka, ns.topic("identity.events.dlq"), min_count=2, timeout=3)) == 1

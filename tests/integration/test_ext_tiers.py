"""R-EXT-04 per-client rate tiers and quotas at the real gateway: a partner's tokens carry its tier, and HAProxy lets
through exactly the tier's requests per second of a burst (sandbox 3, standard 6, premium 12 in this test) and, for
the sandbox, no more than its quota (8 here) in 24 hours; the portal (no tier) keeps the general ceiling."""
from __future__ import annotations

import asyncio
import subprocess

import httpx

from tests.integration.identity_support import OPERATOR, client_token, start_identity
from tests.support import GATEWAY_PORT, LOCAL, gateway_env, service_port

RATES = {"sandbox": 3, "standard": 6, "premium": 12}
SANDBOX_QUOTA = 8
QUOTA_SAYS = "this client application has used the quota of its tier for 24 hours"


async def test_R_EXT_04_each_tier_gets_its_rate_and_the_sandbox_its_quota(services, infra, ns):
    start_identity(services, port=service_port("identity"))
    env = gateway_env(infra, ns, GATEWAY_RATE_LIMIT="1000", GATEWAY_SANDBOX_RATE=str(RATES["sandbox"]),
                      GATEWAY_STANDARD_RATE=str(RATES["standard"]), GATEWAY_PREMIUM_RATE=str(RATES["premium"]),
                      GATEWAY_SANDBOX_QUOTA=str(SANDBOX_QUOTA))
    try:
        subprocess.run([LOCAL / "gateway.sh", "start"], env=env, check=True)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{GATEWAY_PORT}/api/identity", timeout=15) as http:
            tokens = {}
            for tier in RATES:
                r = await http.post("/clients", headers=OPERATOR, json={
                    "name": f"{tier} partner", "confidential": True, "scopes": ["prefill:read"],
                    "grant_types": ["client_credentials"], "tier": tier})
                assert r.status_code == 201 and r.json()["tier"] == tier, r.text
                tokens[tier] = await client_token(http, r.json())

            async def burst(token: str, n: int = 30) -> list[httpx.Response]:
                return await asyncio.gather(*(http.get("/prefill/7000012050002", headers={"authorization": f"Bearer {token}"})
                                              for _ in range(n)))

            passed = {}
            for tier, token in tokens.items():
                answers = await burst(token)
                passed[tier] = sum(r.status_code != 429 for r in answers)
                assert all(r.status_code in (403, 429) for r in answers)
            print(f"\nrequests of a 30-request burst let through per tier: {passed} (tier rates {RATES})")
            assert passed == RATES

            # the sandbox's quota: its burst used 3; at 2 requests/s (under its rate) 5 more pass, then the quota says no
            await asyncio.sleep(2.5)  # the rate counter weighs the previous second too
            answers = []
            for _ in range(SANDBOX_QUOTA - RATES["sandbox"] + 2):
                answers.append(await http.get("/prefill/7000012050002",
                                              headers={"authorization": f"Bearer {tokens['sandbox']}"}))
                await asyncio.sleep(0.5)
            codes = [r.status_code for r in answers]
            assert codes == [403] * (SANDBOX_QUOTA - RATES["sandbox"]) + [429, 429], codes
            assert answers[-1].json()["detail"] == QUOTA_SAYS and answers[-1].headers["retry-after"] == "3600"
            # the other tiers' quotas are untouched
            assert (await http.get("/prefill/7000012050002",
                                   headers={"authorization": f"Bearer {tokens['standard']}"})).status_code == 403
    finally:
        subprocess.run([LOCAL / "gateway.sh", "stop"], env=env, check=True)

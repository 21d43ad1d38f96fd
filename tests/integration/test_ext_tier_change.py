"""R-EXT-04: the agency (or an operator) changes a partner client's rate tier; tokens issued from then on carry the
new tier (the gateway applies it, see test_ext_tiers.py), the change is audited with its reason, and nobody else
may make it."""
from __future__ import annotations

import httpx
import jwt

from tests.integration.identity_support import bearer, client_token, partner_client, start_identity
from tests.support import eventually


async def test_R_EXT_04_the_agency_changes_a_client_tier_for_the_next_tokens_audited(services):
    identity = start_identity(services)
    async with httpx.AsyncClient(base_url=identity.url, timeout=15) as http:
        client = await partner_client(http)
        cid = client["client_id"]
        assert "tier" not in jwt.decode(await client_token(http, client), options={"verify_signature": False})

        path, body = f"/clients/{cid}/tier", {"tier": "premium", "reason": "審査の結果、利用量の多い連携先"}
        for who in (bearer("biz-1", ["business"]), bearer("staff-1", ["institution"]), bearer("b-1", ["bureau"])):
            assert (await http.put(path, headers=who, json=body)).status_code == 403
        assert (await http.put(path, headers=bearer("ag-1", ["agency"]), json={"tier": "premium"})).status_code == 422
        r = await http.put(path, headers=bearer("ag-1", ["agency"]), json=body)
        assert r.status_code == 200 and r.json()["tier"] == "premium", r.text
        claims = jwt.decode(await client_token(http, client), options={"verify_signature": False})
        assert claims["tier"] == "premium"

        # the audit trail names who changed it, from what to what, and why
        async def audited():
            r = await http.get("/operator/audit", headers=bearer(), params={"ref": cid})
            hits = [e for e in r.json()["items"] if e["action"] == "identity.ClientTierChanged"]
            return hits or None
        [entry] = await eventually(audited, timeout=20)
        assert entry["actor"] == "ag-1"

        # a revoked client's tier no longer changes; an unknown client is a 404
        assert (await http.post(f"/clients/{cid}/revoke", headers=bearer())).status_code == 204
        assert (await http.put(path, headers=bearer("ag-1", ["agency"]), json=body)).status_code == 409
        assert (await http.put("/clients/cl-nope/tier", headers=bearer(), json=body)).status_code == 404

"""R-EXT-04 signing-key rotation with no downtime, on real processes: identity signs from a key ring
(JWT_KEY_DIR) that is rotated every 1.5 s while a partner keeps getting tokens and calling identity and another
service (recommend, which knows no key but identity's JWKS URL). Zero requests may fail; a token signed by a key
the ring never published is refused by both."""
from __future__ import annotations

import asyncio
import time

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from identity_service import keys
from tests.integration.identity_support import client_token, partner_client, start_identity
from tests.support import TEST_ISSUER


async def test_R_EXT_04_requests_keep_succeeding_while_the_signing_key_rotates(services, tmp_path):
    ring = tmp_path / "ring"
    keys.init(ring)
    identity = start_identity(services, JWT_KEY_DIR=str(ring))
    recommend = services("recommend", JWT_PUBLIC_KEY_FILE="", JWT_JWKS_URL=f"{identity.url}/jwks.json")
    async with httpx.AsyncClient(base_url=identity.url, timeout=15) as http:
        partner = await partner_client(http)

        async def call(access: str) -> tuple[int, int]:
            auth = {"authorization": f"Bearer {access}"}
            a = await http.get("/prefill/7000012050002", headers=auth)
            b = await http.get(f"{recommend.url}/programmes", headers=auth)
            return a.status_code, b.status_code

        # what a valid partner token gets: past the signature check, refused for its scope or missing consent
        baseline = await call(await client_token(http, partner))
        assert 401 not in baseline and all(s < 500 for s in baseline), baseline

        outcomes, kids, rotations = [], set(), 0
        deadline = time.monotonic() + 8
        next_rotation = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            if time.monotonic() >= next_rotation:
                keys.rotate(ring)
                rotations += 1
                next_rotation += 1.5
            access = await client_token(http, partner)
            kids.add(jwt.get_unverified_header(access)["kid"])
            outcomes.append(await call(access))
            await asyncio.sleep(0.02)

        failures = [o for o in outcomes if o != baseline]
        print(f"\nkey rotation: {len(outcomes)} token+call rounds, {rotations} rotations, {len(kids)} signing keys "
              f"used, failures {len(failures)} (baseline statuses {baseline})")
        assert rotations >= 4 and len(kids) >= 4, (rotations, kids)
        assert failures == []

        # the control: a token from a key the ring never published fails at both, so the loop above could fail
        stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        now = int(time.time())
        forged = jwt.encode({"sub": partner["client_id"], "client_id": partner["client_id"], "aud": "smeportal",
                             "iss": TEST_ISSUER, "iat": now, "exp": now + 60, "jti": "x", "scope": "prefill:read"},
                            stranger, algorithm="RS256", headers={"kid": "not-published"})
        assert await call(forged) == (401, 401)

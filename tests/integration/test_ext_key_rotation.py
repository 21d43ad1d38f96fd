"""R-EXT-04 signing-key rotation with no downtime, on real processes: identity signs from a key ring
(JWT_KEY_DIR) that is rotated every 1.5 s while a partner keeps getting tokens and calling identity and another
service (recommend, which knows no key but identity's JWKS URL). Zero requests may fail; a token signed by a key
the ring never published is refused by both. The same through the real gateway (HAProxy and its sync following
the JWKS, reloading on each new key) under four concurrent callers."""
from __future__ import annotations

import asyncio
import shutil
import subprocess
import time

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from identity_service import keys
from tests.integration.identity_support import OPERATOR, client_token, partner_client, start_identity
from tests.support import GATEWAY_PORT, GATEWAY_VAR, LOCAL, TEST_ISSUER, eventually, gateway_env, service_port


async def test_R_EXT_04_requests_keep_succeeding_while_the_signing_key_rotates(services, tmp_path):
    ring = tmp_path / "ring"
    keys.init(ring)
    identity = start_identity(services, JWT_KEY_DIR=str(ring))
    recommend = services("recommend", JWT_PUBLIC_KEY_FILE="", JWT_JWKS_URL=f"{identity.url}/jwks.json")
    async with httpx.AsyncClient(base_url=identity.url, timeout=15) as http:
        partner = await partner_client(http)
        # a partner's token is for identity only (audience per service, R-EXT-02): recommend is called with a token
        # of a first-party client, issued by the same rotating ring
        r = await http.post("/clients", headers=OPERATOR, json={"name": "portal batch", "confidential": True,
                                                                 "first_party": True, "grant_types": ["client_credentials"]})
        assert r.status_code == 201, r.text
        portal = r.json()

        async def tokens() -> tuple[str, str]:
            return await client_token(http, partner), await client_token(http, portal)

        async def call(access: tuple[str, str]) -> tuple[int, int]:
            a = await http.get("/prefill/7000012050002", headers={"authorization": f"Bearer {access[0]}"})
            b = await http.get(f"{recommend.url}/programmes", headers={"authorization": f"Bearer {access[1]}"})
            return a.status_code, b.status_code

        # what valid tokens get: past the signature check, refused for their scope or missing consent
        baseline = await call(await tokens())
        assert 401 not in baseline and all(s < 500 for s in baseline), baseline

        # five rotations 1.5 s apart, and 1.5 s of calls after the last: counted, not timed (a slow machine only
        # makes the run longer)
        outcomes, kids, rotations = [], set(), 0
        next_rotation, give_up = time.monotonic() + 1.5, time.monotonic() + 90
        while (rotations < 5 or time.monotonic() < next_rotation) and time.monotonic() < give_up:
            if rotations < 5 and time.monotonic() >= next_rotation:
                keys.rotate(ring)
                rotations += 1
                next_rotation = time.monotonic() + 1.5
            access = await tokens()
            kids.update(jwt.get_unverified_header(a)["kid"] for a in access)
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
        assert await call((forged, forged)) == (401, 401)


async def test_R_EXT_04_the_gateway_follows_the_jwks_by_kid_with_zero_failures_while_the_key_rotates(services, infra,
                                                                                                       ns, tmp_path):
    ring = tmp_path / "ring"
    keys.init(ring)
    start_identity(services, port=service_port("identity"), JWT_KEY_DIR=str(ring))
    jwks_dir, sync_log = GATEWAY_VAR / "gateway" / "jwks", GATEWAY_VAR / "log" / "gateway-sync.log"
    shutil.rmtree(jwks_dir, ignore_errors=True)
    log_start = sync_log.stat().st_size if sync_log.exists() else 0
    env = gateway_env(infra, ns, GATEWAY_JWKS_POLL_SECONDS="0.5", GATEWAY_RATE_LIMIT="1000")  # rotation, not rates
    subprocess.run([LOCAL / "gateway.sh", "start"], env=env, check=True)
    try:
        gateway = f"http://127.0.0.1:{GATEWAY_PORT}"
        async def keys_held():
            return len(list(jwks_dir.glob("*.pem"))) == 2
        await eventually(keys_held, timeout=10)
        async with httpx.AsyncClient(base_url=f"{gateway}/api/identity", timeout=15) as http:
            partner = await partner_client(http)

            async def round_trip() -> tuple[int, int]:
                t = await http.post("/token", auth=(partner["client_id"], partner["client_secret"]),
                                    data={"grant_type": "client_credentials"})
                if t.status_code != 200:
                    return t.status_code, 0
                access = t.json()["access_token"]
                kids.add(jwt.get_unverified_header(access)["kid"])
                r = await http.get("/prefill/7000012050002", headers={"authorization": f"Bearer {access}"})
                return 200, r.status_code

            kids: set[str] = set()
            baseline = await round_trip()
            assert baseline[0] == 200 and baseline[1] not in (401, 502, 503), baseline
            # four rotations 3 s apart, and 3 s of calls after the last: counted, not timed, so a slow machine
            # only makes the run longer
            outcomes, rotations = [], 0
            next_rotation, give_up = time.monotonic() + 3, time.monotonic() + 120
            while (rotations < 4 or time.monotonic() < next_rotation) and time.monotonic() < give_up:
                if rotations < 4 and time.monotonic() >= next_rotation:
                    keys.rotate(ring)
                    rotations += 1
                    next_rotation = time.monotonic() + 3
                outcomes += await asyncio.gather(*(round_trip() for _ in range(4)))
            failures = [o for o in outcomes if o != baseline]
            reloads = sync_log.read_bytes()[log_start:].count(b"signing keys changed")
            print(f"\ngateway key rotation: {len(outcomes)} token+call rounds through the gateway, {rotations} rotations, "
                  f"{len(kids)} signing keys used, {reloads} HAProxy reloads, failures {len(failures)}")
            assert rotations >= 4 and len(kids) >= 4 and reloads >= rotations
            assert failures == [], failures[:5]
            # the gateway verifies by kid: a key identity never published gets the gateway's own 401
            stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
            now = int(time.time())
            forged = jwt.encode({"sub": "x", "aud": "smeportal", "iss": TEST_ISSUER, "iat": now, "exp": now + 60},
                                stranger, algorithm="RS256", headers={"kid": sorted(kids)[0]})
            r = await http.get("/accounts/me", headers={"authorization": f"Bearer {forged}"})
            assert r.status_code == 401 and r.json()["detail"] == "invalid token signature"
    finally:
        subprocess.run([LOCAL / "gateway.sh", "stop"], env=env, check=True)

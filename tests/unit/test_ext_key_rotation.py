"""R-EXT-04 signing-key rotation, pure: identity publishes the next key before it signs with it, retired keys keep
verifying; servicekit's JWKS cache picks keys by kid and fetches again only on an unknown kid."""
from __future__ import annotations

import asyncio
import json

import jwt
import pytest

from identity_service import keys
from identity_service.keys import KeySet
from identity_service.tokens import TokenIssuer
from servicekit.auth import Jwks


def _kids(ks: KeySet) -> list[str]:
    return [k["kid"] for k in ks.jwks["keys"]]


def _reload(ks: KeySet) -> None:
    ks._checked = -1e9  # the ring re-reads its manifest at most once a second; tests do not wait


def test_R_EXT_04_the_next_key_is_published_before_it_signs_and_retired_keys_still_verify(tmp_path):
    m0 = keys.init(tmp_path)
    ring = KeySet(key_dir=tmp_path)
    issuer = TokenIssuer(ring, "https://iss.example", 300)
    assert ring.active_kid == m0["active"] and _kids(ring) == [m0["active"], m0["next"]]
    old_token, _, _ = issuer.access_token(sub="u1", client_id="c1", scopes=[], roles=[])

    m1 = keys.rotate(tmp_path)
    _reload(ring)
    assert ring.active_kid == m0["next"], "the key that signs now is the one published before"
    assert m1["next"] not in (m0["active"], m0["next"]) and m0["active"] in _kids(ring)
    new_token, _, _ = issuer.access_token(sub="u1", client_id="c1", scopes=[], roles=[])
    assert jwt.get_unverified_header(new_token)["kid"] == m0["next"]
    assert issuer.verify(old_token)["sub"] == issuer.verify(new_token)["sub"] == "u1"

    for _ in range(keys.KEEP_RETIRED + 1):
        keys.rotate(tmp_path)
    _reload(ring)
    assert m0["active"] not in _kids(ring) and not (tmp_path / f"{m0['active']}.pem").exists()
    with pytest.raises(jwt.InvalidTokenError):
        issuer.verify(old_token)


def test_R_EXT_04_init_keeps_an_existing_dev_key_as_the_active_one(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = tmp_path / "dev.pem"
    pem.write_bytes(rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    m = keys.init(tmp_path / "ring", pem)
    assert KeySet(pem.read_text()).active_kid == m["active"] == KeySet(key_dir=tmp_path / "ring").active_kid
    assert keys.init(tmp_path / "ring") == m  # idempotent


def test_R_EXT_04_services_pick_the_key_by_kid_and_fetch_the_jwks_again_only_for_an_unknown_kid(tmp_path):
    keys.init(tmp_path)
    ring = KeySet(key_dir=tmp_path)

    async def fetch():
        _reload(ring)
        return json.loads(json.dumps(ring.jwks))

    async def scenario():
        cache = Jwks(fetch=fetch, min_interval=0)
        first = ring.active_kid
        assert await cache.key(first) is not None and cache.fetches == 1
        assert await cache.key(first) is not None and cache.fetches == 1, "a known kid costs no fetch"
        keys.rotate(tmp_path)
        keys.rotate(tmp_path)
        _reload(ring)
        assert await cache.key(ring.active_kid) is not None and cache.fetches == 2, "an unknown kid is fetched"
        assert await cache.key("no-such-kid") is None and cache.fetches == 3
        slow = Jwks(fetch=fetch, min_interval=60)
        await slow.key(first)
        for _ in range(5):
            assert await slow.key("no-such-kid") is None
        assert slow.fetches == 1, "unknown kids cannot make a service hammer identity"

    asyncio.run(scenario())


def test_R_EXT_04_the_gateway_keeps_one_key_file_per_published_kid_and_skips_what_it_cannot_use(tmp_path):
    from servicekit.gateway_keys import public_pems, write_keys

    keys.init(tmp_path / "ring")
    doc = KeySet(key_dir=tmp_path / "ring").jwks
    bad = [{"kty": "RSA", "kid": "../../etc/passwd", "n": "x", "e": "AQAB"}, {"kty": "EC", "kid": "ec1"},
           {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"}, "not a key"]
    pems = public_pems({"keys": [*doc["keys"], *bad]})
    assert sorted(pems) == sorted(k["kid"] for k in doc["keys"])
    out = tmp_path / "jwks"
    assert write_keys(out, pems) is True and write_keys(out, pems) is False, "no reload when nothing changed"
    keys.rotate(tmp_path / "ring")
    rotated = public_pems(KeySet(key_dir=tmp_path / "ring").jwks)
    assert write_keys(out, rotated) is True
    assert sorted(p.stem for p in out.glob("*.pem")) == sorted(rotated)


def test_R_EXT_04_the_gateway_takes_any_kid_the_jwks_may_publish(tmp_path):
    """A kid is a base64url thumbprint and may begin with '-', which HAProxy 2.6 reads as an option of the ACL
    (the config was refused and the gateway stayed down: CI of 2026-11-30). The rendered config must pass
    `haproxy -c` with such kids next to plain ones."""
    import shutil
    import subprocess
    from pathlib import Path

    if shutil.which("haproxy") is None:
        pytest.fail("HAProxy is not installed: deploy/local/setup.sh installs it")
    root = Path(__file__).resolve().parents[2]
    env = {"PATH": "/usr/sbin:/usr/bin:/bin", "VAR_DIR": str(tmp_path), "HOME": str(tmp_path)}
    gateway = root / "deploy/local/gateway.sh"
    subprocess.run([gateway, "keys"], env=env, check=True, capture_output=True)
    jwks = tmp_path / "gateway/jwks"
    jwks.mkdir(parents=True)
    (tmp_path / "gateway/deny.map").write_text("")  # the sync writes it once the deny list is rebuilt
    for kid in ("-qDCSJebRdL9DfnneBbi2s9JnT-MSKilrLIPFduMVcc", "plainKid_0", "--double"):
        shutil.copy(tmp_path / "keys/jwt-public.pem", jwks / f"{kid}.pem")
    run = subprocess.run([gateway, "check"], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    config = (tmp_path / "gateway/haproxy.cfg").read_text()
    assert "-m str -- -qDCSJebRdL9DfnneBbi2s9JnT-MSKilrLIPFduMVcc }" in config


def test_R_EXT_04_a_token_signed_while_the_ring_changes_carries_the_kid_of_the_key_that_signed_it(tmp_path):
    """The ring re-reads its manifest on any access after a second: the key and its kid come from one state of it."""
    keys.init(tmp_path)
    before = KeySet(key_dir=tmp_path)
    before_ring = before.ring
    keys.rotate(tmp_path)
    after = KeySet(key_dir=tmp_path)
    after_ring = after.ring

    class Rotating(KeySet):  # every access sees the ring one rotation later than the access before
        states = iter([before_ring, after_ring, after_ring, after_ring])

        @property
        def ring(self):
            return next(self.states)

    issuer = TokenIssuer(Rotating(key_dir=tmp_path), "https://iss.example", 300)
    token, _, _ = issuer.access_token(sub="u1", client_id="c1", scopes=[], roles=[])
    kid = jwt.get_unverified_header(token)["kid"]
    assert issuer.verify(token)["sub"] == "u1", kid


def test_R_EXT_04_a_ring_read_during_a_rotation_keeps_serving_the_last_state(tmp_path):
    m = keys.init(tmp_path)
    ring = KeySet(key_dir=tmp_path)
    assert ring.active_kid == m["active"]
    (tmp_path / f"{m['next']}.pem").rename(tmp_path / "away.pem")  # as between a manifest's write and its key's
    (tmp_path / keys.MANIFEST).write_text((tmp_path / keys.MANIFEST).read_text())  # a new stamp
    _reload(ring)
    assert ring.active_kid == m["active"] and _kids(ring) == [m["active"], m["next"]]
    (tmp_path / "away.pem").rename(tmp_path / f"{m['next']}.pem")
    keys.rotate(tmp_path)
    _reload(ring)
    assert ring.active_kid == m["next"], "read again at the next check"

"""Upstream id_token verification for federated login (R-ANC-03), pure: signature from the upstream's JWKS,
issuer, audience, expiry and nonce."""
import time
from pathlib import Path

import jwt
import pytest

from identity_service.federation import verify_id_token
from identity_service.keys import KeySet
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def _keypair(tmp: Path, name: str = "upstream") -> tuple[str, None]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp / f"{name}.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
    return str(tmp / f"{name}.pem"), None


def test_R_ANC_03_upstream_id_tokens_are_checked_against_the_upstream_jwks(tmp_path):
    private, _ = _keypair(tmp_path)
    keys = KeySet(Path(private).read_text(), [])
    now = int(time.time())
    good = {"iss": "https://gbiz.example", "aud": "rp", "sub": "u1", "iat": now, "exp": now + 60, "nonce": "n"}

    def sign(claims, key=keys.private_pem, kid=keys.active_kid):
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})

    check = dict(issuer="https://gbiz.example", audience="rp", nonce="n")
    assert verify_id_token(sign(good), keys.jwks, **check)["sub"] == "u1"
    other, _ = _keypair(tmp_path, "impostor")  # a different key presented under the upstream's kid
    forged = [sign(good, key=Path(other).read_text()), sign({**good, "aud": "someone-else"}),
              sign({**good, "iss": "https://evil.example"}), sign({**good, "exp": now - 10}),
              sign({**good, "nonce": "replayed"}), sign(good, kid="unknown"),
              jwt.encode(good, None, algorithm="none")]
    for bad in forged:
        with pytest.raises(jwt.InvalidTokenError):
            verify_id_token(bad, keys.jwks, **check)

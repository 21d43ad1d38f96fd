"""R-EXT-02 DPoP proofs (RFC 9449), pure: a proof binds one request (method, URL, time, token) to one key."""
from __future__ import annotations

import json
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from servicekit import dpop

URL = "https://gw.example/api/identity/prefill/7000012050002"


def _key():
    private = ec.generate_private_key(ec.SECP256R1())
    return private, json.loads(ECAlgorithm.to_jwk(private.public_key()))


def proof(private, jwk, *, htm="GET", htu=URL, iat=None, token=None, jti=None, typ="dpop+jwt", **extra) -> str:
    claims = {"htm": htm, "htu": htu, "iat": int(time.time()) if iat is None else iat, "jti": jti or uuid.uuid4().hex,
              **extra}
    if token:
        claims["ath"] = dpop.token_hash(token)
    return jwt.encode(claims, private, algorithm="ES256", headers={"typ": typ, "jwk": jwk})


def test_R_EXT_02_a_proof_names_its_key_its_request_and_its_token():
    private, jwk = _key()
    checked = dpop.check(proof(private, jwk, token="tok"), method="GET", url=URL + "?x=1", access_token="tok")
    assert checked["jkt"] == dpop.thumbprint(jwk)


@pytest.mark.parametrize("change, why", [
    (dict(htm="POST"), "htm"), (dict(htu="https://gw.example/api/identity/consents"), "htu"),
    (dict(iat=int(time.time()) - 300), "iat"), (dict(token="another token"), "ath"), (dict(typ="JWT"), "typ"),
])
def test_R_EXT_02_a_proof_for_another_request_time_token_or_of_another_type_is_refused(change, why):
    private, jwk = _key()
    with pytest.raises(dpop.InvalidProof, match=why):
        dpop.check(proof(private, jwk, **{"token": "tok", **change}), method="GET", url=URL, access_token="tok")


def test_R_EXT_02_a_proof_signed_by_another_key_than_its_jwk_is_refused():
    private, _ = _key()
    _, other_jwk = _key()
    with pytest.raises(dpop.InvalidProof, match="signature"):
        dpop.check(proof(private, other_jwk), method="GET", url=URL)

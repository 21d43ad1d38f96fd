"""The identity service's signing keys: one active RS256 key, older public keys kept in the JWKS for rotation.

Keys come from files (a Kubernetes Secret in production, var/keys locally): JWT_PRIVATE_KEY_FILE signs;
JWT_RETIRED_PUBLIC_KEY_FILES (comma-separated) still verify tokens signed before a rotation.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from jwt.algorithms import RSAAlgorithm
from cryptography.hazmat.primitives import serialization


def _thumbprint(jwk: dict) -> str:
    """RFC 7638 key id."""
    import base64
    import hashlib

    canonical = json.dumps({k: jwk[k] for k in ("e", "kty", "n")}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


def _jwk(public_key) -> dict:
    jwk = json.loads(RSAAlgorithm.to_jwk(public_key))
    jwk.update(kid=_thumbprint(jwk), use="sig", alg="RS256")
    return jwk


@dataclass
class KeySet:
    private_pem: str
    retired_public_pems: list[str]

    @classmethod
    def from_env(cls) -> "KeySet":
        private = Path(os.environ.get("JWT_PRIVATE_KEY_FILE", "var/keys/jwt-private.pem")).read_text()
        retired = [Path(p).read_text() for p in os.environ.get("JWT_RETIRED_PUBLIC_KEY_FILES", "").split(",") if p]
        return cls(private, retired)

    @cached_property
    def private_key(self):
        return serialization.load_pem_private_key(self.private_pem.encode(), password=None)

    @cached_property
    def active_kid(self) -> str:
        return _jwk(self.private_key.public_key())["kid"]

    @cached_property
    def jwks(self) -> dict:
        keys = [_jwk(self.private_key.public_key())]
        keys += [_jwk(serialization.load_pem_public_key(p.encode())) for p in self.retired_public_pems]
        return {"keys": keys}

    def public_key_for(self, kid: str | None):
        for jwk in self.jwks["keys"]:
            if jwk["kid"] == kid:
                return RSAAlgorithm.from_jwk(json.dumps(jwk))
        return None

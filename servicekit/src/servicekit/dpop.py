"""DPoP (RFC 9449) proofs, checked where a token is issued (identity's token endpoint) and where it is used (every
service, servicekit.auth): R-EXT-02's sender-constrained access tokens.

A DPoP-bound access token carries `cnf.jkt`, the RFC 7638 thumbprint of the client's public key. With each request
the client sends a fresh proof: a JWT signed by that key, whose header carries the public key (`jwk`) and whose
claims name the request (`htm`, `htu`), its time (`iat`), a unique `jti` and, at a resource, the hash of the token
(`ath`). A stolen token is useless without the private key; a stolen proof is useless for another request, later,
or a second time (the replay cache). The gateway cannot check a proof (HAProxy 2.6 cannot verify a key embedded in
the JWT), so the services do.
"""
from __future__ import annotations

import base64
import hashlib
import json
import time
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

import jwt
from pymongo.errors import DuplicateKeyError

ALGS = ("ES256", "RS256", "PS256")
MAX_AGE = 60  # seconds a proof's iat may be off (either way)


class InvalidProof(Exception):
    pass


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def thumbprint(jwk: dict) -> str:
    """RFC 7638 JWK thumbprint (SHA-256) of an RSA or EC public key."""
    members = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y")}.get(jwk.get("kty"))
    if members is None or any(not isinstance(jwk.get(m), str) for m in members):
        raise InvalidProof("the proof's jwk is not an RSA or EC public key")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return _b64(hashlib.sha256(canonical.encode()).digest())


def token_hash(access_token: str) -> str:
    """`ath`: base64url SHA-256 of the access token."""
    return _b64(hashlib.sha256(access_token.encode("ascii")).digest())


def normal_url(url: str) -> str:
    """htu as compared: scheme and host lower-cased, no query or fragment (RFC 9449 §4.3)."""
    p = urlsplit(url)
    return urlunsplit((p.scheme.lower(), p.netloc.lower(), p.path or "/", "", ""))


def check(proof: str, *, method: str, url: str, access_token: str | None = None, now: float | None = None) -> dict:
    """Claims of a valid proof for this request, plus `jkt` (its key's thumbprint); raises InvalidProof."""
    now = time.time() if now is None else now
    try:
        header = jwt.get_unverified_header(proof)
    except jwt.InvalidTokenError as e:
        raise InvalidProof(f"the DPoP proof is not a JWT: {e}") from None
    jwk = header.get("jwk")
    if header.get("typ") != "dpop+jwt" or header.get("alg") not in ALGS or not isinstance(jwk, dict):
        raise InvalidProof("a DPoP proof needs typ dpop+jwt, alg ES256/RS256/PS256 and the public jwk")
    if "d" in jwk:
        raise InvalidProof("the proof's jwk must be a public key")
    jkt = thumbprint(jwk)
    try:
        key = jwt.PyJWK.from_dict(jwk, algorithm=header["alg"]).key
        claims = jwt.decode(proof, key, algorithms=[header["alg"]], options={"verify_aud": False, "verify_exp": False,
                                                                              "verify_iat": False})
    except (jwt.InvalidTokenError, jwt.PyJWKError, ValueError, TypeError) as e:
        raise InvalidProof(f"the DPoP proof's signature does not verify: {e}") from None
    if not isinstance(claims.get("jti"), str) or not 8 <= len(claims["jti"]) <= 256:
        raise InvalidProof("the DPoP proof has no usable jti")
    if claims.get("htm") != method.upper():
        raise InvalidProof("the DPoP proof is for another HTTP method (htm)")
    if not isinstance(claims.get("htu"), str) or normal_url(claims["htu"]) != normal_url(url):
        raise InvalidProof("the DPoP proof is for another URL (htu)")
    iat = claims.get("iat")
    if not isinstance(iat, (int, float)) or abs(now - iat) > MAX_AGE:
        raise InvalidProof("the DPoP proof is too old or from the future (iat)")
    if access_token is not None and claims.get("ath") != token_hash(access_token):
        raise InvalidProof("the DPoP proof is not for this access token (ath)")
    return {**claims, "jkt": jkt}


class ReplayCache:
    """jtis of proofs seen in the last 2 × MAX_AGE seconds (a proof older than that is refused by its iat anyway),
    kept in the service's database, so that behind a load balancer every replica sees a proof once: the first
    insert of `<jkt>:<jti>` wins, a second (here or on another replica) collides with it. Expired entries are
    pruned every `prune_every` proofs (by an index on `exp`)."""

    def __init__(self, collection, prune_every: int = 1000):
        self.col, self.prune_every, self._count, self._indexed = collection, prune_every, 0, False

    async def first_use(self, key: str, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        if not self._indexed:
            await self.col.create_index("exp")
            self._indexed = True
        try:
            await self.col.insert_one({"_id": key, "exp": datetime.fromtimestamp(now + 2 * MAX_AGE, UTC)})
        except DuplicateKeyError:
            # seen before; an entry past its time (not pruned yet) is only a jti the iat check refuses anyway
            return False
        self._count += 1
        if self._count % self.prune_every == 0:
            await self.col.delete_many({"exp": {"$lt": datetime.fromtimestamp(now, UTC)}})
        return True


def request_url(request) -> str:
    """The URL the client called, as a proof's htu names it: behind the gateway, with the /api/<service> prefix it
    strips (X-Forwarded-Prefix) and the scheme it terminated (X-Forwarded-Proto)."""
    h = request.headers
    scheme = h.get("x-forwarded-proto") or request.url.scheme
    host = h.get("host") or request.url.netloc
    return f"{scheme}://{host}{h.get('x-forwarded-prefix', '')}{request.url.path}"

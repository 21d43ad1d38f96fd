"""Issuing and checking the JWTs identity signs (RS256, short-lived access tokens)."""
from __future__ import annotations

import time
import uuid

import jwt

from contracts.vocab import ALL_SERVICES, service_audience
from identity_service.keys import KeySet

AUDIENCE = ALL_SERVICES


class TokenIssuer:
    def __init__(self, keys: KeySet, issuer: str, access_ttl: int):
        self.keys, self.issuer, self.access_ttl = keys, issuer, access_ttl

    @classmethod
    def from_settings(cls, settings) -> "TokenIssuer":
        return cls(KeySet.from_settings(settings), settings.oidc_issuer, settings.access_token_ttl)

    def _sign(self, claims: dict) -> str:
        return self.keys.sign(claims)

    def access_token(self, *, sub: str, client_id: str, scopes: list[str], roles: list[str], orgs: list[dict] = (),
                     extra: dict | None = None, aud: str = AUDIENCE) -> tuple[str, str, int]:
        """(token, jti, exp). `extra`: who the account acts for (`biz`, `dlg`, `bureau_id`, R-ID-07/08, R-PF-05);
        `aud`: every service (the portal's tokens) or one (`urn:smeportal:<service>`, a third party's, R-EXT-02)."""
        now = int(time.time())
        jti, exp = uuid.uuid4().hex, now + self.access_ttl
        return self._sign({**(extra or {}), "iss": self.issuer, "sub": sub, "aud": aud, "iat": now, "exp": exp,
                           "jti": jti, "client_id": client_id, "scope": " ".join(scopes), "roles": roles,
                           "orgs": list(orgs)}), jti, exp

    def id_token(self, *, sub: str, client_id: str, nonce: str | None, name: str, email: str) -> str:
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": sub, "aud": client_id, "iat": now, "exp": now + self.access_ttl,
                  "auth_time": now, "name": name, "email": email}
        if nonce:
            claims["nonce"] = nonce
        return self._sign(claims)

    def verify(self, token: str) -> dict:
        """Claims of a valid access token signed by one of our keys; raises jwt.InvalidTokenError."""
        kid = jwt.get_unverified_header(token).get("kid")
        key = self.keys.public_key_for(kid)
        if key is None:
            raise jwt.InvalidTokenError("unknown signing key")
        return jwt.decode(token, key, algorithms=["RS256"], audience=[AUDIENCE, service_audience("identity")],
                          issuer=self.issuer,
                          options={"require": ["exp", "sub", "aud", "jti"]})

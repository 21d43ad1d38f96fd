"""Access-token checks in every service: RS256 JWTs verified locally, then role / scope checks.

The gateway verifies tokens too; services check again (cheap, local) so no endpoint trusts the network.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import jwt
from fastapi import Request

from servicekit.problems import Problem


@dataclass(frozen=True)
class Principal:
    subject: str
    roles: frozenset[str] = field(default_factory=frozenset)
    scopes: frozenset[str] = field(default_factory=frozenset)
    client_id: str | None = None
    # Platform memberships (R-PF-04): ({"org_id", "platform_id", "member_role", "rights": [...]}, ...)
    orgs: tuple[dict, ...] = ()

    def orgs_with(self, right: str, platform_id: str | None = None) -> list[str]:
        """Ids of the organisations the caller acts for that hold `right` (in `platform_id`, if given)."""
        return [o["org_id"] for o in self.orgs
                if right in o.get("rights", ()) and (platform_id is None or o.get("platform_id") == platform_id)]


@lru_cache(maxsize=4)
def _public_key(path: str) -> str:
    return Path(path).read_text()


async def authenticate(request: Request) -> Principal:
    settings = request.app.state.settings
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("bearer "):
        raise Problem(401, "Unauthorized", "An access token is required (Authorization: Bearer ...).")
    if not settings.jwt_public_key_file:
        raise Problem(401, "Unauthorized", "This service has no token key configured, so it accepts no token.")
    try:
        claims = jwt.decode(header[7:].strip(), _public_key(settings.jwt_public_key_file), algorithms=["RS256"],
                            audience=settings.jwt_audience, issuer=settings.issuer,
                            options={"require": ["exp", "sub", "aud", "iss"]})
    except jwt.ExpiredSignatureError:
        raise Problem(401, "Unauthorized", "The access token has expired.") from None
    except jwt.InvalidTokenError as e:
        raise Problem(401, "Unauthorized", f"The access token is not valid: {e}.") from None
    if not await request.app.state.service.subject_active(claims):
        raise Problem(401, "Unauthorized", "This account or client has been revoked.")
    return Principal(
        subject=claims["sub"],
        roles=frozenset(claims.get("roles", [])),
        scopes=frozenset(str(claims.get("scope", "")).split()),
        client_id=claims.get("client_id"),
        orgs=tuple(claims.get("orgs") or ()),
    )


def require(*roles: str, scope: str | None = None):
    """FastAPI dependency: the caller must hold one of `roles` (if given) and `scope` (if given)."""

    async def dependency(request: Request) -> Principal:
        p = await authenticate(request)
        if roles and not p.roles & set(roles):
            raise Problem(403, "Forbidden", f"This action needs one of the roles: {', '.join(sorted(roles))}.")
        if scope and scope not in p.scopes:
            raise Problem(403, "Forbidden", f"This action needs the scope '{scope}'.")
        return p

    return dependency

"""Access-token checks in every service: RS256 JWTs verified locally (signature, exp, aud, iss), the deny list
kept from identity's revocation events (R-ID-09), then role / scope checks.

The verifying key is chosen by the token's `kid` from identity's JWKS (JWT_JWKS_URL), cached and fetched again when
a token names a kid the cache does not hold (at most once a second), so a signing-key rotation needs no restart
(R-EXT-04). JWT_PUBLIC_KEY_FILE is a fixed key trusted as well (tests, or a deployment without a JWKS URL).

The gateway verifies tokens too; services check again (cheap, local) so no endpoint trusts the network.

Who the caller acts for travels in the token (R-ID-07, R-ID-08):
- `biz`: the businesses the account is bound to, [{"id": business_id, "role": "prime" | "member"}];
- `dlg`: delegations its institution holds, [{"id", "business_id", "org_id", "scopes": [...], "exp"}];
- `bureau_id`: the block of a bureau account (R-PF-05);
- scope `portal`: a first-party portal front end; a third-party client's token reaches only routes that
  name a scope it carries.
"""
from __future__ import annotations

import asyncio
import json
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import httpx
import jwt
from jwt.algorithms import RSAAlgorithm
from fastapi import Request, Security
from fastapi.security import OAuth2AuthorizationCodeBearer

from contracts.vocab import PORTAL_SCOPE, service_audience
from servicekit import dpop
from servicekit.problems import Problem
from servicekit.refusals import Rejected


# The OAuth client the current request's caller acts through: events and audit entries written while handling the
# request name it (R-OPS-02: who did what, when, through which client), without every handler passing it on.
current_client: ContextVar[str | None] = ContextVar("current_client", default=None)


@dataclass(frozen=True)
class Principal:
    subject: str
    roles: frozenset[str] = field(default_factory=frozenset)
    scopes: frozenset[str] = field(default_factory=frozenset)
    client_id: str | None = None
    # Platform memberships (R-PF-04): ({"org_id", "platform_id", "member_role", "rights": [...]}, ...)
    orgs: tuple[dict, ...] = ()
    # R-ID-07: business id -> "prime" | "member"
    businesses: dict[str, str] = field(default_factory=dict)
    # R-ID-08: ({"id", "business_id", "org_id", "scopes", "exp"}, ...), revoked and expired ones already removed
    delegations: tuple[dict, ...] = ()
    bureau_id: str | None = None

    def orgs_with(self, right: str, platform_id: str | None = None) -> list[str]:
        """Ids of the organisations the caller acts for that hold `right` (in `platform_id`, if given)."""
        return [o["org_id"] for o in self.orgs
                if right in o.get("rights", ()) and (platform_id is None or o.get("platform_id") == platform_id)]

    @property
    def first_party(self) -> bool:
        return PORTAL_SCOPE in self.scopes

    def acts_for(self, business_id: str | None) -> bool:
        """R-ID-07: the caller is the business itself (its prime or a member account)."""
        return business_id is not None and business_id in self.businesses

    def own_business(self, asked: str | None = None) -> str:
        """R-ID-07: the business a business account acts for comes from its token, never from what it types.

        `asked` (a business_id the caller named) must be one the token binds; with none named, the token's only
        business. Refuses with a problem the caller can act on: not bound yet, not theirs, or which one of several."""
        if asked is not None:
            if not self.acts_for(asked):
                raise Rejected("forbidden", "Forbidden", f"You do not act for business {asked}.")
            return asked
        if len(self.businesses) == 1:
            return next(iter(self.businesses))
        if not self.businesses:
            raise Rejected("forbidden", "No business", "Your account is not bound to a business yet: register it at "
                           "the portal (a corporation first enters the code from the letter sent to its head office).")
        raise Rejected("invalid", "Which business?", f"You act for several businesses "
                       f"({', '.join(sorted(self.businesses))}): name business_id.")

    def delegation(self, business_id: str | None, scope: str) -> dict | None:
        """R-ID-08: the caller's institution holds a live delegation from `business_id` covering `scope`."""
        return next((d for d in self.delegations if d.get("business_id") == business_id
                     and scope in d.get("scopes", ())), None)

    def may(self, business_id: str | None, scope: str) -> bool:
        """The business itself, or an institution it delegated `scope` to."""
        return self.acts_for(business_id) or self.delegation(business_id, scope) is not None

    @property
    def is_staff(self) -> bool:
        return bool(self.roles & {"agency", "operator"})


@lru_cache(maxsize=4)
def _public_key(path: str) -> str:
    return Path(path).read_text()


class Jwks:
    """Public keys by kid from a JWKS document: kept for `max_age` seconds, fetched again at once (but at most every
    `min_interval` seconds) when a token names a kid not held. `fetch` returns the JWKS document (tests pass one)."""

    def __init__(self, url: str = "", *, fetch=None, max_age: float = 300.0, min_interval: float = 1.0):
        self.url, self.max_age, self.min_interval = url, max_age, min_interval
        self._fetch = fetch or self._get
        self._keys: dict[str, object] = {}
        self._fetched = -1e9
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def _get(self) -> dict:
        async with httpx.AsyncClient(timeout=5) as http:
            r = await http.get(self.url)
            r.raise_for_status()
            return r.json()

    async def _refresh(self) -> None:
        doc = await self._fetch()
        self.fetches += 1
        self._keys = {k["kid"]: RSAAlgorithm.from_jwk(json.dumps(k)) for k in doc.get("keys", ())
                      if isinstance(k, dict) and k.get("kty") == "RSA" and k.get("kid")}
        self._fetched = time.monotonic()

    async def key(self, kid: str | None):
        """The key of `kid`, or None when the JWKS does not hold it (or cannot be read right now)."""
        if kid is None:
            return None
        age = time.monotonic() - self._fetched
        if (kid not in self._keys and age >= self.min_interval) or age >= self.max_age:
            async with self._lock:
                age = time.monotonic() - self._fetched
                if (kid not in self._keys and age >= self.min_interval) or age >= self.max_age:
                    try:
                        await self._refresh()
                    except (httpx.HTTPError, ValueError, KeyError, TypeError):
                        self._fetched = time.monotonic()  # keep the keys held; try again after min_interval
        return self._keys.get(kid)


async def verification_key(request: Request, token: str):
    """The key that verifies `token`: its kid's key from the JWKS, else the fixed key file; None if neither."""
    settings, state = request.app.state.settings, request.app.state
    jwks = getattr(state, "jwks", None)
    if jwks is None and getattr(settings, "jwt_jwks_url", ""):
        jwks = state.jwks = Jwks(settings.jwt_jwks_url)
    if jwks is not None:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.InvalidTokenError:
            kid = None
        key = await jwks.key(kid if isinstance(kid, str) else None)
        if key is not None:
            return key
    return _public_key(settings.jwt_public_key_file) if settings.jwt_public_key_file else None


def deny_keys(claims: dict) -> dict[str, str]:
    """The deny-list keys a token can be struck by, each with what it strikes (R-ID-09)."""
    keys = {claims["sub"]: "account", f"jti:{claims.get('jti')}": "token",
            f"client:{claims.get('client_id')}": "client"}
    for b in claims.get("biz") or ():
        keys[f"bind:{b.get('id')}:{claims['sub']}"] = f"biz:{b.get('id')}"
        keys[f"consent:{b.get('id')}:{claims.get('client_id')}"] = f"biz:{b.get('id')}"
    for d in claims.get("dlg") or ():
        keys[f"dlg:{d.get('id')}"] = f"dlg:{d.get('id')}"
    return keys


def principal_from(claims: dict, struck: set[str] = frozenset(), now: float | None = None) -> Principal:
    """The caller described by verified claims, minus what the deny list struck (`struck`: values of deny_keys)."""
    now = time.time() if now is None else now
    return Principal(
        subject=claims["sub"],
        roles=frozenset(claims.get("roles", [])),
        scopes=frozenset(str(claims.get("scope", "")).split()),
        client_id=claims.get("client_id"),
        orgs=tuple(claims.get("orgs") or ()),
        businesses={b["id"]: b.get("role", "member") for b in claims.get("biz") or ()
                    if isinstance(b, dict) and b.get("id") and f"biz:{b['id']}" not in struck},
        delegations=tuple(d for d in claims.get("dlg") or () if isinstance(d, dict)
                          and f"dlg:{d.get('id')}" not in struck and d.get("exp", 0) > now),
        bureau_id=claims.get("bureau_id"),
    )


async def authenticate(request: Request) -> Principal:
    settings = request.app.state.settings
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    scheme, token = scheme.lower(), token.strip()
    if scheme not in ("bearer", "dpop") or not token:
        raise Problem(401, "Unauthorized", "An access token is required (Authorization: Bearer ... or DPoP ...).")
    key = await verification_key(request, token)
    if key is None:
        raise Problem(401, "Unauthorized", "The access token's signing key is not one this service knows.")
    try:
        claims = jwt.decode(token, key, algorithms=["RS256"],
                            audience=[settings.jwt_audience, service_audience(settings.service_name)],
                            issuer=settings.issuer,
                            options={"require": ["exp", "sub", "aud", "iss"]})
    except jwt.ExpiredSignatureError:
        raise Problem(401, "Unauthorized", "The access token has expired.") from None
    except jwt.InvalidTokenError as e:
        raise Problem(401, "Unauthorized", f"The access token is not valid: {e}.") from None
    await _check_sender(request, scheme, token, claims)
    struck = await request.app.state.service.struck(claims)
    if struck & {"account", "token", "client"}:
        raise Problem(401, "Unauthorized", "This token, its account or its client has been revoked.")
    p = principal_from(claims, struck)
    current_client.set(p.client_id)
    return p


async def _check_sender(request: Request, scheme: str, token: str, claims: dict) -> None:
    """R-EXT-02: a token bound to a key (`cnf.jkt`) is taken only as `Authorization: DPoP` with a fresh proof of that
    key for this very request (RFC 9449 §7); the same token without its proof, or with another key's, is refused."""
    cnf = claims.get("cnf")
    jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
    if jkt is None:
        return
    if scheme != "dpop":
        raise Problem(401, "Unauthorized", "This access token is bound to a key: send it as 'Authorization: DPoP' with "
                      "a DPoP proof.")
    proof = request.headers.get("dpop", "")
    try:
        checked = dpop.check(proof, method=request.method, url=dpop.request_url(request), access_token=token)
    except dpop.InvalidProof as e:
        raise Problem(401, "Unauthorized", str(e) + ".") from None
    if checked["jkt"] != jkt:
        raise Problem(401, "Unauthorized", "The DPoP proof is signed by another key than the token is bound to.")
    if not await proofs_seen(request).first_use(f"{jkt}:{checked['jti']}"):
        raise Problem(401, "Unauthorized", "This DPoP proof was used before.")


def proofs_seen(request: Request) -> dpop.ReplayCache:
    """The DPoP replay cache in this service's database, shared by every replica of the service."""
    state = request.app.state
    if getattr(state, "dpop_replay", None) is None:
        state.dpop_replay = dpop.ReplayCache(state.service.db.dpop_proofs)
    return state.dpop_replay


# How the API documents say who may call a route (FastAPI puts it in each operation's `security`): the scope a
# third-party client's token needs, or `portal` (the platform's own front ends only). It checks nothing itself
# (auto_error=False); `authenticate` does.
OAUTH2 = OAuth2AuthorizationCodeBearer(
    authorizationUrl="/api/identity/authorize", tokenUrl="/api/identity/token", scheme_name="smeportal",
    auto_error=False, scopes={
        PORTAL_SCOPE: "the platform's own portal front ends (the user's full rights); third parties never get it",
        "prefill:read": "read the profile a business consented to share with the client (R-ID-04, R-EXT-02)",
        "prefill:financials": "also the financial periods of that profile",
        "audit:read": "the client's own calls, as audited (R-EXT-04)"},
    description="OpenID Connect: authorization code with PKCE (S256) and PAR; private_key_jwt client authentication; "
                "DPoP-bound tokens (send `Authorization: DPoP <token>` with a `DPoP` proof). Roles in the token "
                "(business, expert, institution, bureau, agency, operator, client) are checked per route too.")


def require(*roles: str, scope: str | None = None):
    """FastAPI dependency: the caller must hold one of `roles` (if given) and `scope` (if given). A token that is not
    the portal's own (a third-party client's) passes only where the route names a scope, and only with that scope."""

    async def dependency(request: Request, _: str | None = Security(OAUTH2, scopes=[scope or PORTAL_SCOPE])) -> Principal:
        p = await authenticate(request)
        if roles and not p.roles & set(roles):
            raise Problem(403, "Forbidden", f"This action needs one of the roles: {', '.join(sorted(roles))}.")
        if scope and scope not in p.scopes:
            raise Problem(403, "Forbidden", f"This action needs the scope '{scope}'.")
        if not scope and not p.first_party:
            raise Problem(403, "Forbidden", "This token was issued to a third-party application; it may use only "
                          "the actions its granted scopes name, and this is not one of them.")
        return p

    return dependency

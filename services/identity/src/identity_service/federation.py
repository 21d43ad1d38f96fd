"""Federated login (R-ANC-03): sign in through an upstream OpenID Connect provider (e.g. GビズID), linked to one account.

The upstream is an ordinary OIDC provider: discovery, authorization code + PKCE through Authlib's client, and its
id_token verified against the upstream's published JWKS (signature, issuer, audience, expiry, nonce).
Configuration: UPSTREAM_OIDC_ISSUER, UPSTREAM_OIDC_CLIENT_ID, UPSTREAM_OIDC_CLIENT_SECRET, UPSTREAM_OIDC_NAME.
"""
from __future__ import annotations

import html
import time
import uuid
from dataclasses import dataclass

import httpx
import jwt
from authlib.common.errors import AuthlibBaseError
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel
from pymongo.errors import DuplicateKeyError

from contracts.events.identity import AccountRegistered
from identity_service import domain, mfa, oidc, secrets
from identity_service.audit import record
from servicekit.auth import Principal, require
from servicekit.problems import Problem

router = APIRouter(tags=["federation"])
STATE_TTL = 600
_ALGORITHMS = ["RS256", "ES256", "PS256"]


@dataclass
class Upstream:
    issuer: str
    client_id: str
    client_secret: str
    name: str
    callback: str = ""  # our redirect URI: identity's public URL + /federation/callback
    _metadata: dict | None = None

    @classmethod
    def from_settings(cls, settings) -> "Upstream | None":
        issuer = settings.upstream_oidc_issuer
        if not issuer:
            return None
        return cls(issuer.rstrip("/"), settings.upstream_oidc_client_id, settings.upstream_oidc_client_secret,
                   settings.upstream_oidc_name, f"{settings.public_url}/federation/callback")

    async def metadata(self) -> dict:
        if self._metadata is None:
            async with httpx.AsyncClient(timeout=10) as http:
                r = await http.get(f"{self.issuer}/.well-known/openid-configuration")
                r.raise_for_status()
                meta = r.json()
            if meta.get("issuer", "").rstrip("/") != self.issuer:
                raise ValueError("the upstream discovery document names another issuer")
            self._metadata = meta
        return self._metadata

    async def jwks(self) -> dict:
        """Fetched on every verification: a rotated upstream key is picked up at once (logins are rare)."""
        async with httpx.AsyncClient(timeout=10) as http:
            r = await http.get((await self.metadata())["jwks_uri"])
            r.raise_for_status()
            return r.json()

    def oauth(self) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(self.client_id, self.client_secret, scope="openid profile email",
                                 redirect_uri=self.callback, code_challenge_method="S256",
                                 timeout=10)


def verify_id_token(id_token: str, jwks: dict, *, issuer: str, audience: str, nonce: str) -> dict:
    """Claims of an upstream id_token signed by a key of `jwks`, for us, unexpired and answering our nonce;
    raises jwt.InvalidTokenError otherwise."""
    header = jwt.get_unverified_header(id_token)
    keys = {k.key_id: k for k in jwt.PyJWKSet.from_dict(jwks).keys}
    key = keys.get(header.get("kid"))
    if key is None or header.get("alg") not in _ALGORITHMS:
        raise jwt.InvalidTokenError("the id_token is not signed by a key the upstream publishes")
    claims = jwt.decode(id_token, key.key, algorithms=_ALGORITHMS, audience=audience, issuer=issuer,
                        options={"require": ["exp", "iat", "sub", "aud", "iss"]})
    if claims.get("nonce") != nonce:
        raise jwt.InvalidTokenError("the id_token does not answer this login's nonce")
    return claims


def _upstream(request: Request) -> Upstream:
    up = request.app.state.upstream
    if up is None:
        raise Problem(404, "No upstream login", "This portal has no upstream identity provider configured.")
    return up


def _page(title: str, text: str, status: int) -> HTMLResponse:
    return HTMLResponse(f'<!doctype html><html lang="ja"><meta charset="utf-8"><title>{html.escape(title)}</title>'
                        f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p></html>", status_code=status)


async def _begin(request: Request, up: Upstream, pending: dict) -> str:
    """Stores the login in progress and returns the upstream authorization URL."""
    try:
        endpoint = (await up.metadata())["authorization_endpoint"]
    except (httpx.HTTPError, ValueError, KeyError) as e:
        raise Problem(503, "Upstream unavailable", f"{up.name} cannot be reached just now ({type(e).__name__}); "
                      "try again shortly or sign in with your password.") from None
    state, nonce, verifier = generate_token(32), generate_token(24), generate_token(64)
    await request.app.state.service.db.federation_states.insert_one({
        "_id": secrets.digest(state), "nonce": nonce, "verifier": verifier, "expires_at": time.time() + STATE_TTL,
        **pending})
    url, _ = up.oauth().create_authorization_url(endpoint, state=state, nonce=nonce, code_verifier=verifier)
    return url


@router.get("/federation/start", summary="Sign in through the upstream provider (redirects there, R-ANC-03)")
async def start(request: Request, client_id: str = "", redirect_uri: str = "", scope: str = "openid", state: str = "",
                code_challenge: str = "", code_challenge_method: str = "S256", nonce: str = ""):
    up = _upstream(request)
    if await oidc._client_and_redirect(request.app.state.service.db, client_id, redirect_uri) is None:
        return oidc.oauth_error("invalid_request", "unknown client_id or a redirect_uri not registered for it")
    if not code_challenge or code_challenge_method != "S256":
        return oidc.oauth_error("invalid_request", "a S256 code_challenge is required")
    params = {"client_id": client_id, "redirect_uri": redirect_uri, "scope": scope, "state": state,
              "code_challenge": code_challenge, "code_challenge_method": code_challenge_method, "nonce": nonce}
    return RedirectResponse(await _begin(request, up, {"params": params}), status_code=302)


class LinkStartOut(BaseModel):
    authorization_url: str


@router.post("/accounts/me/federated-identities", response_model=LinkStartOut, tags=["federation"],
             summary="Link your account to your upstream identity: open the returned URL and sign in there")
async def link_start(request: Request, who: Principal = Depends(require(*domain.ACTOR_KINDS))) -> LinkStartOut:
    up = _upstream(request)
    if await request.app.state.service.db.accounts.find_one({"_id": who.subject, "status": "active"}, {"_id": 1}) is None:
        raise Problem(403, "Not an account", "Only an active account can link an upstream identity.")
    return LinkStartOut(authorization_url=await _begin(request, up, {"link_account_id": who.subject}))


class LinkOut(BaseModel):
    issuer: str
    subject: str
    linked_at: float


@router.get("/accounts/me/federated-identities", response_model=list[LinkOut], tags=["federation"],
            summary="Upstream identities linked to your account")
async def links(request: Request, who: Principal = Depends(require(*domain.ACTOR_KINDS))) -> list[LinkOut]:
    cursor = request.app.state.service.db.federated_links.find({"account_id": who.subject}).limit(20)
    return [LinkOut(issuer=d["issuer"], subject=d["subject"], linked_at=d["linked_at"]) async for d in cursor]


@router.get("/federation/callback", response_class=HTMLResponse,
            summary="Where the upstream provider returns after sign-in (R-ANC-03)")
async def callback(request: Request, code: str = "", state: str = "", error: str = "", error_description: str = ""):
    up = _upstream(request)
    svc = request.app.state.service
    pending = await svc.db.federation_states.find_one_and_delete({"_id": secrets.digest(state)})  # single use
    if pending is None or pending["expires_at"] < time.time():
        return _page("ログインできません / Sign-in failed", "This sign-in link is unknown, used or expired; start again.", 400)
    if error or not code:
        return _page("ログインできません / Sign-in failed", f"{up.name}: {error_description or error or 'no code'}", 400)
    try:
        meta = await up.metadata()
        tokens = await up.oauth().fetch_token(meta["token_endpoint"], code=code, code_verifier=pending["verifier"])
        claims = verify_id_token(tokens.get("id_token", ""), await up.jwks(), issuer=up.issuer, audience=up.client_id,
                                 nonce=pending["nonce"])
    except (httpx.HTTPError, AuthlibBaseError, jwt.PyJWTError, ValueError, KeyError) as e:
        svc.log.warning("upstream login refused", extra={"fields": {"error": repr(e)}})
        return _page("ログインできません / Sign-in failed", f"{up.name} did not confirm the sign-in: {e}", 401)

    link_id = f"{up.issuer}|{claims['sub']}"
    if pending.get("link_account_id"):
        return await _link_existing(request, up, link_id, claims, pending["link_account_id"])
    account = await _linked_account(request, up, link_id, claims)
    if isinstance(account, HTMLResponse):
        return account
    params = pending["params"]
    client = await oidc._client_and_redirect(svc.db, params["client_id"], params["redirect_uri"])
    if client is None:
        return oidc.oauth_error("invalid_request", "the client or its redirect_uri is no longer registered")
    return await mfa.after_first_factor(request, client, params, account, federated=True)  # TOTP applies here too


async def _link_existing(request: Request, up: Upstream, link_id: str, claims: dict, account_id: str) -> HTMLResponse:
    db = request.app.state.service.db
    try:
        await db.federated_links.insert_one({"_id": link_id, "issuer": up.issuer, "subject": claims["sub"],
                                             "account_id": account_id, "linked_at": time.time()})
    except DuplicateKeyError:
        owner = (await db.federated_links.find_one({"_id": link_id}))["account_id"]
        if owner != account_id:
            return _page("連携できません / Not linked", f"This {up.name} identity is already linked to another account.", 409)
    await record(db, actor=account_id, action="identity.FederatedIdentityLinked", key=account_id,
                 payload={"issuer": up.issuer, "subject": claims["sub"]})
    return _page("連携しました / Linked", f"Your account now signs in with {up.name} too.", 200)


async def _linked_account(request: Request, up: Upstream, link_id: str, claims: dict) -> dict | HTMLResponse:
    """The account linked to this upstream identity; on a first sign-in, a new account under the upstream's
    verified real name (R-ID-01)."""
    svc = request.app.state.service
    link = await svc.db.federated_links.find_one({"_id": link_id})
    if link is None:
        email, name = (claims.get("email") or "").lower(), claims.get("name") or ""
        if not email or not name:
            return _page("ログインできません / Sign-in failed", f"{up.name} did not share a name and e-mail address.", 400)
        if await svc.db.accounts.find_one({"email": email}, {"_id": 1}):
            return _page("連携が必要です / Link first",
                         f"An account with {email} exists: sign in with its password and link {up.name} from your "
                         "account settings.", 409)
        account_id = f"acc-{uuid.uuid4().hex}"
        try:
            await svc.db.federated_links.insert_one({"_id": link_id, "issuer": up.issuer, "subject": claims["sub"],
                                                     "account_id": account_id, "linked_at": time.time()})
        except DuplicateKeyError:  # a parallel first sign-in linked it a moment ago
            link = await svc.db.federated_links.find_one({"_id": link_id})
        else:
            doc = {"_id": account_id, "email": email, "password_hash": None, "real_name": name, "kind": "business",
                   "roles": ["business"], "status": "active", "email_verified": bool(claims.get("email_verified")),
                   "verification_digest": None, "failed": 0, "locked_until": None, "created_at": time.time(),
                   "federated_from": up.issuer}
            event = svc.event(AccountRegistered(account_id=account_id, kind="business", real_name=name), actor=link_id)
            try:
                await svc.insert(svc.db.accounts, doc, events=[event])
            except DuplicateKeyError:
                await svc.db.federated_links.delete_one({"_id": link_id})
                return _page("連携が必要です / Link first", f"An account with {email} exists.", 409)
            return doc
    account = await svc.db.accounts.find_one({"_id": link["account_id"]})
    if account is None or account["status"] == "revoked":
        return _page("ログインできません / Sign-in failed", "this account has been revoked", 403)
    return account


def install(app, settings) -> None:
    app.state.upstream = Upstream.from_settings(settings)
    app.include_router(router)


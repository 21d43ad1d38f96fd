"""OpenID Connect provider endpoints: discovery, JWKS, authorize (code + PKCE), token, revoke, introspect, userinfo.

OAuth errors use the RFC 6749 JSON shape ({"error", "error_description"}) because OAuth client libraries
expect it there; every other error is a problem document.
"""
from __future__ import annotations

import base64
import html
import time
from urllib.parse import urlencode

import jwt
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from contracts.events.identity import TokenRevoked
from identity_service import bindings, domain, fapi, mfa, orgs, secrets
from servicekit import dpop

router = APIRouter(tags=["openid-connect"])
CODE_TTL = 60
REFRESH_TTL = 30 * 24 * 3600


def public_url(settings) -> str:
    """Where callers reach this service (through the gateway by default): IDENTITY_PUBLIC_URL, else
    OIDC_ISSUER/api/identity, from the identity settings."""
    return settings.public_url


def oauth_error(error: str, description: str, status: int = 400) -> JSONResponse:
    headers = {"Cache-Control": "no-store"}
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="smeportal"'
    return JSONResponse({"error": error, "error_description": description}, status_code=status, headers=headers)


@router.get("/.well-known/openid-configuration", summary="OpenID Connect discovery document")
async def discovery(request: Request) -> dict:
    base, issuer = public_url(request.app.state.settings), request.app.state.issuer.issuer
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{base}/authorize",
        "token_endpoint": f"{base}/token",
        "jwks_uri": f"{base}/jwks.json",
        "userinfo_endpoint": f"{base}/userinfo",
        "revocation_endpoint": f"{base}/revoke",
        "introspection_endpoint": f"{base}/introspect",
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_basic", "client_secret_post",
                                                  "none"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "PS256", "ES256"],
        "pushed_authorization_request_endpoint": f"{base}/par",
        "dpop_signing_alg_values_supported": list(dpop.ALGS),
        "authorization_response_iss_parameter_supported": True,
        "scopes_supported": ["openid", "profile", "email", "offline_access", "prefill:read", "prefill:financials",
                             "audit:read"],
        "claims_supported": ["sub", "name", "email", "roles", "orgs"],
    }


@router.get("/jwks.json", summary="Public signing keys (JWKS), including retired keys still in use")
async def jwks(request: Request) -> dict:
    return request.app.state.issuer.keys.jwks


# --- authorization endpoint (login) -------------------------------------------------------------
async def _client_and_redirect(db, client_id: str, redirect_uri: str):
    client = await db.clients.find_one({"_id": client_id, "status": "active"})
    if client is None or redirect_uri not in client.get("redirect_uris", []):
        return None
    return client


_FORM = """<!doctype html><html lang="ja"><meta charset="utf-8"><title>支援ポータル ログイン</title>
<h1>支援ポータル — ログイン / Sign in</h1>{notice}<p>{error}</p>
<form method="post">{hidden}
<label>メールアドレス / E-mail <input name="email" type="email" required></label><br>
<label>パスワード / Password <input name="password" type="password" required></label><br>
<button type="submit">ログイン / Sign in</button></form>
<p><a id="reset" href="pages/reset-password">パスワードをお忘れの方 / Forgot your password?</a>
 · <a id="verify" href="pages/verify-email">確認メールの再送 / Confirmation mail</a></p>{federation}</html>"""

_AUTH_PARAMS = ("client_id", "redirect_uri", "scope", "state", "code_challenge", "code_challenge_method", "nonce",
                "request_uri")


def consent_notice(client: dict | None, scope: str) -> str:
    """What a third-party application asks for, shown before the person signs in: signing in grants exactly these
    scopes, and its tokens carry nothing else (never the portal's own rights)."""
    if client is None or client.get("first_party"):
        return ""
    name = html.escape(client.get("name", "?"))
    scopes = html.escape(" ".join(domain.granted_scopes(scope or "openid", client.get("scopes", [])) or []))
    return (f'<p id="consent">外部サービス「{name}」が次の利用を求めています: <code>{scopes}</code>。'
            f'ログインすると、この範囲だけを許可します。 / The third-party service "{name}" asks for: '
            f'<code>{scopes}</code>. Signing in grants exactly this, nothing more.</p>')


def _login_page(settings, params: dict, error: str = "", status: int = 200, notice: str = "") -> HTMLResponse:
    hidden = "".join(f'<input type="hidden" name="{k}" value="{html.escape(v or "")}">' for k, v in params.items())
    federation = ""
    if settings.upstream_oidc_issuer:  # R-ANC-03: offer the upstream login next to the password
        upstream_name = settings.upstream_oidc_name
        href = html.escape(f"federation/start?{urlencode({k: v or '' for k, v in params.items()})}")
        federation = f'<p><a id="federated" href="{href}">{html.escape(upstream_name)}でログイン / Sign in with {html.escape(upstream_name)}</a></p>'
    return HTMLResponse(_FORM.format(hidden=hidden, error=html.escape(error), federation=federation, notice=notice),
                        status_code=status)


@router.get("/authorize", response_class=HTMLResponse, summary="Start login (authorization code + PKCE)")
async def authorize_form(request: Request, client_id: str = "", redirect_uri: str = "", response_type: str = "",
                         scope: str = "openid", state: str = "", code_challenge: str = "",
                         code_challenge_method: str = "", nonce: str = "", request_uri: str = ""):
    db = request.app.state.service.db
    params = {k: v for k, v in locals().items() if k in _AUTH_PARAMS}
    if request_uri:  # RFC 9126: the request was pushed (and its client authenticated) beforehand
        params = await fapi.pushed_params(db, client_id, request_uri)
        if params is None:
            return oauth_error("invalid_request_uri", "the request_uri is unknown, expired, used or another client's")
    elif await _requires_par(db, client_id):
        return oauth_error("invalid_request", "this client must push its authorization request (PAR, /par) first")
    client = await _client_and_redirect(db, client_id, params["redirect_uri"])
    if client is None:
        return oauth_error("invalid_request", "unknown client_id or a redirect_uri not registered for it")
    if params.get("response_type", response_type) != "code" or not params["code_challenge"] \
            or params["code_challenge_method"] != "S256":
        return _redirect(params["redirect_uri"], params["state"], error="invalid_request",
                         error_description="response_type=code with a S256 code_challenge is required")
    params = {k: v for k, v in params.items() if k in _AUTH_PARAMS}
    return _login_page(request.app.state.settings, params, notice=consent_notice(client, params["scope"]))


async def _requires_par(db, client_id: str) -> bool:
    client = await db.clients.find_one({"_id": client_id}, {"require_pushed_authorization_requests": 1})
    return bool(client and client.get("require_pushed_authorization_requests"))


def _redirect(redirect_uri: str, state: str, **params) -> RedirectResponse:
    if state:
        params["state"] = state
    sep = "&" if "?" in redirect_uri else "?"
    return RedirectResponse(f"{redirect_uri}{sep}{urlencode(params)}", status_code=302)


@router.post("/authorize", response_class=HTMLResponse, summary="Submit the login form; redirects with a code")
async def authorize_submit(request: Request, email: str = Form(), password: str = Form(), client_id: str = Form(),
                           redirect_uri: str = Form(), scope: str = Form("openid"), state: str = Form(""),
                           code_challenge: str = Form(), code_challenge_method: str = Form("S256"),
                           nonce: str = Form(""), request_uri: str = Form("")):
    svc = request.app.state.service
    params = {k: v for k, v in locals().items() if k in _AUTH_PARAMS}
    if request_uri:  # what was pushed counts, not what the form says
        params = await fapi.pushed_params(svc.db, client_id, request_uri)
        if params is None:
            return oauth_error("invalid_request_uri", "the request_uri is unknown, expired, used or another client's")
        params = {k: v for k, v in params.items() if k in _AUTH_PARAMS}
    elif await _requires_par(svc.db, client_id):
        return oauth_error("invalid_request", "this client must push its authorization request (PAR, /par) first")
    client = await _client_and_redirect(svc.db, client_id, params["redirect_uri"])
    if client is None:
        return oauth_error("invalid_request", "unknown client_id or a redirect_uri not registered for it")
    account = await login(svc.db, email, password)
    if isinstance(account, str):
        return _login_page(request.app.state.settings, params, account, status=401)
    return await mfa.after_first_factor(request, client, params, account)  # e-mail confirmed? second factor? (R-ID-10)


async def issue_code(request: Request, client: dict, params: dict, account: dict) -> RedirectResponse:
    """The end of a successful login (password or federated): a single-use code back to the client."""
    redirect_uri, state = params["redirect_uri"], params.get("state") or ""
    scopes = domain.granted_scopes(params.get("scope") or "openid", client["scopes"])
    if scopes is None:
        return _redirect(redirect_uri, state, error="invalid_scope", error_description="scope not allowed for this client")
    if params.get("request_uri") and not await fapi.spend(request.app.state.service.db, params["request_uri"]):
        return _redirect(redirect_uri, state, error="invalid_request", error_description="this request_uri was used")
    code = secrets.new_token()
    await request.app.state.service.db.auth_codes.insert_one({
        "_id": secrets.digest(code), "client_id": client["_id"], "redirect_uri": redirect_uri,
        "account_id": account["_id"], "scopes": scopes, "code_challenge": params["code_challenge"],
        "code_challenge_method": params.get("code_challenge_method") or "S256",
        "nonce": params.get("nonce") or None, "expires_at": time.time() + CODE_TTL})
    return _redirect(redirect_uri, state, code=code, iss=request.app.state.issuer.issuer)


async def login(db, email: str, password: str) -> dict | str:
    """The account for these credentials, or the reason for refusing (lockout after repeated failures).
    The failure count is cleared when the whole login completes (mfa), not here: wrong TOTP codes count too."""
    account = await db.accounts.find_one({"email": email.lower()})
    generic = "the e-mail address or the password is wrong"
    if account is None:
        secrets.hash_password(password)  # same work as a real check: no timing hint that the account is absent
        return generic
    now = time.time()
    if refusal := domain.login_refusal(account["status"], account.get("failed", 0), account.get("locked_until"), now):
        return refusal
    if not account.get("password_hash") or not secrets.password_ok(account["password_hash"], password):
        failed, locked_until = domain.after_failed_login(account.get("failed", 0), now)
        await db.accounts.update_one({"_id": account["_id"]}, {"$set": {"failed": failed, "locked_until": locked_until}})
        return generic
    return account


# --- token endpoint ------------------------------------------------------------------------------
async def authenticate_client(request: Request, form) -> dict | JSONResponse:
    """private_key_jwt (R-EXT-02), client_secret_basic, client_secret_post, or none (public clients, which must use
    PKCE). A client registered for private_key_jwt authenticates only that way: it has no secret."""
    if form.get("client_assertion_type") or form.get("client_assertion"):
        return await fapi.assertion_client(request, form)
    client_id, secret = form.get("client_id"), form.get("client_secret")
    header = request.headers.get("authorization", "")
    if header.lower().startswith("basic "):
        try:
            from urllib.parse import unquote

            client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
            client_id, secret = unquote(client_id), unquote(secret)
        except ValueError:
            return oauth_error("invalid_client", "malformed Basic credentials", 401)
    if not client_id:
        return oauth_error("invalid_client", "client authentication is required", 401)
    client = await request.app.state.service.db.clients.find_one({"_id": client_id, "status": "active"})
    if client is None:
        return oauth_error("invalid_client", "unknown or revoked client", 401)
    if client.get("token_endpoint_auth_method") == "private_key_jwt":
        return oauth_error("invalid_client", "this client authenticates with private_key_jwt (a signed client_assertion)",
                           401)
    if client["confidential"] and (not secret or secrets.digest(secret) != client["secret_hash"]):
        return oauth_error("invalid_client", "wrong client secret", 401)
    return client


@router.post("/token", summary="OAuth 2.0 token endpoint (authorization_code, refresh_token, client_credentials)")
async def token(request: Request):
    form = await request.form()
    client = await authenticate_client(request, form)
    if isinstance(client, JSONResponse):
        return client
    grant = form.get("grant_type")
    if grant not in client["grant_types"]:
        return oauth_error("unauthorized_client", f"this client may not use grant_type={grant}")
    bound = await fapi.dpop_binding(request, client)  # R-EXT-02: the key the access token will be bound to, if any
    if isinstance(bound, JSONResponse):
        return bound
    request.state.jkt = bound
    if grant == "authorization_code":
        return await _code_grant(request, client, form)
    if grant == "refresh_token":
        return await _refresh_grant(request, client, form)
    if grant == "client_credentials":
        scopes = domain.granted_scopes(form.get("scope"), client["scopes"])
        if scopes is None:
            return oauth_error("invalid_scope", "a requested scope is not granted to this client")
        try:
            aud = domain.audience(scopes, client.get("first_party", False), form.get("resource"))
        except ValueError as e:
            return oauth_error("invalid_target", str(e))
        access, _, _ = request.app.state.issuer.access_token(sub=client["_id"], client_id=client["_id"], scopes=scopes,
                                                             roles=["client"], extra=fapi.cnf(request, client), aud=aud)
        return _token_response(request, access, scopes)
    return oauth_error("unsupported_grant_type", f"grant_type={grant} is not supported")


async def _code_grant(request: Request, client: dict, form):
    db = request.app.state.service.db
    code_id = secrets.digest(form.get("code") or "")
    code = await db.auth_codes.find_one_and_update({"_id": code_id, "used": {"$ne": True}},
                                                   {"$set": {"used": True, "used_at": time.time()}})  # single use
    if code is None:
        replayed = await db.auth_codes.find_one({"_id": code_id, "used": True})
        if replayed and replayed.get("family"):  # RFC 9700 §4.2.4: a replayed code revokes what it issued
            await revoke_family(request.app.state.service, replayed["family"], "authorization code replayed")
        return oauth_error("invalid_grant", "the code is unknown, used, expired or issued to another client/redirect_uri")
    if (code["expires_at"] < time.time() or code["client_id"] != client["_id"]
            or code["redirect_uri"] != form.get("redirect_uri")):
        return oauth_error("invalid_grant", "the code is unknown, used, expired or issued to another client/redirect_uri")
    if not domain.pkce_matches(form.get("code_verifier") or "", code["code_challenge"], code["code_challenge_method"]):
        return oauth_error("invalid_grant", "code_verifier does not match the code_challenge")
    account = await db.accounts.find_one({"_id": code["account_id"], "status": {"$ne": "revoked"}})
    if account is None:
        return oauth_error("invalid_grant", "the account is no longer active")
    family = f"fam-{secrets.new_token(12)}"
    await db.auth_codes.update_one({"_id": code_id}, {"$set": {"family": family}})
    return await _user_tokens(request, client, account, code["scopes"], code.get("nonce"), family)


async def _refresh_grant(request: Request, client: dict, form):
    db = request.app.state.service.db
    token_id = secrets.digest(form.get("refresh_token") or "")
    old = await db.refresh_tokens.find_one_and_update({"_id": token_id, "used": {"$ne": True}},
                                                      {"$set": {"used": True, "used_at": time.time()}})
    if old is None:
        reused = await db.refresh_tokens.find_one({"_id": token_id, "used": True})
        if reused:  # RFC 9700 §4.14.2: a rotated-out refresh token came back: someone holds a copy; end the family
            await revoke_family(request.app.state.service, reused["family"], "refresh token reused")
        return oauth_error("invalid_grant", "the refresh token is unknown, revoked, expired or not this client's")
    if old["client_id"] != client["_id"] or old["expires_at"] < time.time():
        return oauth_error("invalid_grant", "the refresh token is unknown, revoked, expired or not this client's")
    account = await db.accounts.find_one({"_id": old["account_id"], "status": {"$ne": "revoked"}})
    if account is None:
        return oauth_error("invalid_grant", "the account is no longer active")
    return await _user_tokens(request, client, account, old["scopes"], None, old["family"])


async def revoke_family(svc, family: str, reason: str) -> None:
    """Ends a grant (R-ID-09): its refresh tokens are deleted and every access token it issued is denied everywhere."""
    fam = await svc.db.families.find_one({"_id": family})
    await svc.db.refresh_tokens.delete_many({"family": family})
    if fam is None:
        return
    now = int(time.time())
    live = [t for t in fam.get("tokens", []) if t["exp"] > now]
    for t in live:
        await svc.db.revoked_tokens.update_one({"_id": t["jti"]}, {"$set": {"expires_at": t["exp"]}}, upsert=True)
    events = [svc.event(TokenRevoked(jti=t["jti"], expires_at=t["exp"], reason=reason)) for t in live]
    await svc.write(svc.db.families, {"_id": family}, {"$set": {"status": "revoked", "reason": reason}, "$unset": {"tokens": ""}},
                    events=events)


async def _user_tokens(request: Request, client: dict, account: dict, scopes: list[str], nonce: str | None, family: str):
    svc, issuer = request.app.state.service, request.app.state.issuer
    fam = await svc.db.families.find_one({"_id": family}, {"status": 1})
    if fam is not None and fam.get("status") == "revoked":
        return oauth_error("invalid_grant", "this grant has been revoked")
    token_scopes = domain.token_scopes(scopes, client.get("first_party", False))
    try:
        aud = domain.audience(token_scopes, client.get("first_party", False), (await request.form()).get("resource"))
    except ValueError as e:
        return oauth_error("invalid_target", str(e))
    roles = domain.effective_roles(account["kind"], account["roles"], account.get("org_id"))
    access, jti, exp = issuer.access_token(sub=account["_id"], client_id=client["_id"], scopes=token_scopes, roles=roles,
                                           aud=aud,
                                           orgs=await orgs.memberships(svc.db, account),
                                           extra={**await bindings.token_claims(svc.db, account),
                                                  **fapi.cnf(request, client)})
    await svc.db.families.update_one({"_id": family}, {
        "$setOnInsert": {"account_id": account["_id"], "client_id": client["_id"], "status": "active"},
        "$push": {"tokens": {"$each": [{"jti": jti, "exp": exp}], "$slice": -50}}}, upsert=True)
    refresh = secrets.new_token()
    await svc.db.refresh_tokens.insert_one({"_id": secrets.digest(refresh), "client_id": client["_id"], "family": family,
                                            "account_id": account["_id"], "scopes": scopes,
                                            "expires_at": time.time() + REFRESH_TTL})
    id_token = None
    if "openid" in scopes:
        id_token = issuer.id_token(sub=account["_id"], client_id=client["_id"], nonce=nonce,
                                   name=account["real_name"], email=account["email"])
    return _token_response(request, access, token_scopes, refresh=refresh, id_token=id_token)


def _token_response(request: Request, access: str, scopes: list[str], refresh: str | None = None,
                    id_token: str | None = None) -> JSONResponse:
    body = {"access_token": access, "token_type": "DPoP" if getattr(request.state, "jkt", None) else "Bearer",
            "expires_in": request.app.state.issuer.access_ttl,
            "scope": " ".join(scopes)}
    if refresh:
        body["refresh_token"] = refresh
    if id_token:
        body["id_token"] = id_token
    return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


# --- revocation (RFC 7009) and introspection (RFC 7662) --------------------------------------------
@router.post("/revoke", summary="Revoke a refresh or access token (RFC 7009)")
async def revoke(request: Request):
    form = await request.form()
    client = await authenticate_client(request, form)
    if isinstance(client, JSONResponse):
        return client
    svc, tok = request.app.state.service, form.get("token") or ""
    refresh = await svc.db.refresh_tokens.find_one({"_id": secrets.digest(tok), "client_id": client["_id"]})
    if refresh is not None:  # the grant ends: the refresh token and the access tokens it issued
        await revoke_family(svc, refresh["family"], "revoked by the client (RFC 7009)")
        return JSONResponse({}, headers={"Cache-Control": "no-store"})
    try:
        claims = request.app.state.issuer.verify(tok)
        if claims.get("client_id") == client["_id"]:
            event = svc.event(TokenRevoked(jti=claims["jti"], expires_at=claims["exp"], reason="revoked by the client (RFC 7009)"))
            await svc.write(svc.db.revoked_tokens, {"_id": claims["jti"]}, {"$set": {"expires_at": claims["exp"]}},
                            events=[event], upsert=True)
    except jwt.InvalidTokenError:
        pass  # RFC 7009: an invalid token is not an error
    return JSONResponse({}, headers={"Cache-Control": "no-store"})


async def token_claims_if_active(request: Request, token: str) -> dict | None:
    """Claims of a token that is valid, unrevoked, and whose subject is not revoked; else None."""
    try:
        claims = request.app.state.issuer.verify(token)
    except jwt.InvalidTokenError:
        return None
    return claims if await still_active(request.app.state.service.db, claims) else None


async def still_active(db, claims: dict) -> bool:
    """Identity is the authority: a revoked account, client or token id is refused at once (R-ID-06, R-ID-09)."""
    return not (await bindings.struck(db, claims)) & {"account", "client", "token"}


@router.post("/introspect", summary="Is this token active? (RFC 7662; confidential clients only)")
async def introspect(request: Request):
    form = await request.form()
    client = await authenticate_client(request, form)
    if isinstance(client, JSONResponse):
        return client
    if not client["confidential"]:
        return oauth_error("invalid_client", "only confidential clients may introspect", 401)
    claims = await token_claims_if_active(request, form.get("token") or "")
    if claims is None:
        return {"active": False}
    return {"active": True, "token_type": "Bearer", **{k: claims[k] for k in
            ("sub", "client_id", "scope", "exp", "iat", "iss", "aud", "jti") if k in claims}, "roles": claims.get("roles", [])}


@router.get("/userinfo", summary="Claims about the signed-in account (OIDC)")
async def userinfo(request: Request):
    header = request.headers.get("authorization", "")
    claims = await token_claims_if_active(request, header[7:].strip()) if header.lower().startswith("bearer ") else None
    if claims is None:
        return JSONResponse({"error": "invalid_token"}, status_code=401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    account = await request.app.state.service.db.accounts.find_one({"_id": claims["sub"]})
    if account is None:
        return JSONResponse({"error": "invalid_token"}, status_code=401)
    return {"sub": account["_id"], "name": account["real_name"], "email": account["email"],
            "email_verified": account.get("email_verified", False), "roles": account["roles"]}

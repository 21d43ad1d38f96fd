"""FAPI 2.0-style credentials for partner services (R-EXT-02): private_key_jwt client authentication against the
client's registered JWKS, pushed authorization requests (RFC 9126) and DPoP-bound access tokens (RFC 9449).

- private_key_jwt (RFC 7523 §2.2): `client_assertion` is a JWT the client signs with a key of its registered JWKS;
  iss = sub = client_id, aud = this issuer or the endpoint it is posted to, a short exp, and a jti used once.
- PAR: the client posts its authorization request to /par (authenticated as at /token) and gets a `request_uri`
  good for 60 s and one login; /authorize then takes only client_id + request_uri. A client registered with
  `require_pushed_authorization_requests` cannot start a login any other way.
- DPoP at /token: a valid proof binds the access token to the proof's key (`cnf.jkt`, token_type DPoP); a client
  registered with `dpop_bound_access_tokens` gets no token without one. The services check the proofs
  (servicekit.auth, servicekit.dpop).
"""
from __future__ import annotations

import time

import jwt
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pymongo.errors import DuplicateKeyError

from identity_service import domain, secrets
from servicekit import dpop
from servicekit.auth import proofs_seen

router = APIRouter(tags=["openid-connect"])
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
REQUEST_URI_PREFIX = "urn:ietf:params:oauth:request_uri:"
PAR_TTL = 60
ASSERTION_MAX_LIFETIME = 3600  # longer-lived assertions are refused (their jti is kept until they expire); 3600 s is
# what client libraries sign by default (Authlib), so a partner need not tune it


def _error(error: str, description: str, status: int = 400) -> JSONResponse:
    from identity_service.oidc import oauth_error

    return oauth_error(error, description, status)


# --- private_key_jwt ----------------------------------------------------------------------------------------------
async def assertion_client(request: Request, form) -> dict | JSONResponse:
    """The client a valid, unused client assertion authenticates; else an invalid_client answer."""
    from identity_service.oidc import public_url

    assertion = form.get("client_assertion") or ""
    if form.get("client_assertion_type") != ASSERTION_TYPE or not assertion:
        return _error("invalid_client", f"client_assertion_type must be {ASSERTION_TYPE}", 401)
    try:
        unverified = jwt.decode(assertion, options={"verify_signature": False})
        header = jwt.get_unverified_header(assertion)
    except jwt.InvalidTokenError:
        return _error("invalid_client", "the client_assertion is not a JWT", 401)
    client_id = unverified.get("iss")
    if not isinstance(client_id, str) or unverified.get("sub") != client_id or form.get("client_id", client_id) != client_id:
        return _error("invalid_client", "the client_assertion's iss and sub must both be the client_id", 401)
    db = request.app.state.service.db
    client = await db.clients.find_one({"_id": client_id, "status": "active"})
    if client is None or client.get("token_endpoint_auth_method") != "private_key_jwt" or not client.get("jwks"):
        return _error("invalid_client", "unknown or revoked client, or one not registered for private_key_jwt", 401)
    keys = [k for k in jwt.PyJWKSet.from_dict(client["jwks"]).keys
            if header.get("kid") in (None, k.key_id)]
    base = public_url(request.app.state.settings)
    audiences = [request.app.state.issuer.issuer, f"{base}/token", f"{base}/par",
                 dpop.request_url(request)]
    claims = None
    for key in keys:
        try:
            claims = jwt.decode(assertion, key.key, algorithms=["RS256", "PS256", "ES256"], audience=audiences,
                                options={"require": ["exp", "jti"]})
            break
        except jwt.InvalidSignatureError:
            continue
        except jwt.InvalidTokenError as e:
            return _error("invalid_client", f"the client_assertion is not valid: {e}", 401)
    if claims is None:
        return _error("invalid_client", "the client_assertion is not signed by a key of the client's JWKS", 401)
    if claims["exp"] - time.time() > ASSERTION_MAX_LIFETIME:
        return _error("invalid_client", f"a client_assertion may live at most {ASSERTION_MAX_LIFETIME} s", 401)
    try:  # single use: the jti is kept until the assertion has expired
        await db.client_assertions.insert_one({"_id": f"{client_id}:{claims['jti']}", "expires_at": claims["exp"]})
    except DuplicateKeyError:
        return _error("invalid_client", "this client_assertion was used before", 401)
    return client


# --- DPoP at the token endpoint ----------------------------------------------------------------------------------
async def dpop_binding(request: Request, client: dict) -> str | None | JSONResponse:
    """The thumbprint the new access token is bound to (None: a plain bearer token), or the error to answer."""
    proof = request.headers.get("dpop")
    if not proof:
        if client.get("dpop_bound_access_tokens"):
            return _error("invalid_dpop_proof", "this client's access tokens are DPoP-bound: send a DPoP proof")
        return None
    try:
        checked = dpop.check(proof, method=request.method, url=dpop.request_url(request))
    except dpop.InvalidProof as e:
        return _error("invalid_dpop_proof", str(e))
    if not await proofs_seen(request).first_use(f"{checked['jkt']}:{checked['jti']}"):
        return _error("invalid_dpop_proof", "this DPoP proof was used before")
    return checked["jkt"]


def cnf(request: Request, client: dict) -> dict:
    """Claims of the partner's access token issued in this request: the key it is bound to (`cnf`, DPoP) and the
    client's rate tier (`tier`, which the gateway applies, R-EXT-04)."""
    jkt = getattr(request.state, "jkt", None)
    return {**({"cnf": {"jkt": jkt}} if jkt else {}), **({"tier": client["tier"]} if client.get("tier") else {})}


# --- pushed authorization requests (RFC 9126) ---------------------------------------------------------------------
@router.post("/par", status_code=201, summary="Pushed authorization request (RFC 9126): returns a request_uri for /authorize")
async def pushed_authorization_request(request: Request):
    from identity_service.oidc import authenticate_client

    form = await request.form()
    client = await authenticate_client(request, form)
    if isinstance(client, JSONResponse):
        return client
    if "request_uri" in form:
        return _error("invalid_request", "request_uri is not allowed in a pushed authorization request")
    params = {k: str(form.get(k) or "") for k in ("client_id", "redirect_uri", "response_type", "scope", "state",
                                                  "code_challenge", "code_challenge_method", "nonce")}
    params["client_id"] = client["_id"]
    if params["redirect_uri"] not in client.get("redirect_uris", []):
        return _error("invalid_request", "redirect_uri is not one registered for this client (exact match)")
    if params["response_type"] != "code" or not params["code_challenge"] or params["code_challenge_method"] != "S256":
        return _error("invalid_request", "response_type=code with a S256 code_challenge is required")
    if domain.granted_scopes(params["scope"] or "openid", client["scopes"]) is None:
        return _error("invalid_scope", "a requested scope is not granted to this client")
    handle = secrets.new_token()
    await request.app.state.service.db.par_requests.insert_one({
        "_id": secrets.digest(handle), "client_id": client["_id"], "params": params,
        "expires_at": time.time() + PAR_TTL})
    return JSONResponse({"request_uri": REQUEST_URI_PREFIX + handle, "expires_in": PAR_TTL}, status_code=201,
                        headers={"Cache-Control": "no-store"})


async def pushed_params(db, client_id: str, request_uri: str) -> dict | None:
    """The parameters pushed for this client under `request_uri`, if unexpired and not used for a login yet."""
    if not request_uri.startswith(REQUEST_URI_PREFIX):
        return None
    doc = await db.par_requests.find_one({"_id": secrets.digest(request_uri[len(REQUEST_URI_PREFIX):]),
                                          "client_id": client_id, "used": {"$ne": True}})
    if doc is None or doc["expires_at"] < time.time():
        return None
    return {**doc["params"], "request_uri": request_uri}


async def spend(db, request_uri: str) -> bool:
    """Marks a pushed request used (one login per request_uri); False if it was used already."""
    res = await db.par_requests.update_one({"_id": secrets.digest(request_uri[len(REQUEST_URI_PREFIX):]),
                                            "used": {"$ne": True}}, {"$set": {"used": True}})
    return res.modified_count == 1

"""R-EXT-02 acceptance: an unmodified Authlib client (requests integration), configured as a partner would from the
README, runs PAR + private_key_jwt + PKCE S256 + DPoP through the real gateway, the prime of a business that
consented signs in, and the partner reads that business's prefill. The same access token without its DPoP proof, with a proof of another
key, or with a replayed proof is refused; so are a login that skips PAR and a reused client assertion."""
from __future__ import annotations

import asyncio
import html
import json
import re
import time
import uuid
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from tests.integration.identity_support import OPERATOR, PASSWORD, PROFILE, REDIRECT, mail_env, password_login
from tests.integration.identity_support import portal_client, prove_prime, second_factor, signup
from tests.support import service_port


def _dpop_key():
    private = ec.generate_private_key(ec.SECP256R1())
    return private, json.loads(ECAlgorithm.to_jwk(private.public_key()))


def dpop_proof(key, method: str, url: str, access_token: str | None = None) -> str:
    """What the partner's code does per request (RFC 9449 §4): a JWT of its DPoP key naming the request."""
    private, jwk = key
    claims = {"htm": method, "htu": url, "iat": int(time.time()), "jti": uuid.uuid4().hex}
    if access_token:
        import base64
        import hashlib
        claims["ath"] = base64.urlsafe_b64encode(hashlib.sha256(access_token.encode()).digest()).rstrip(b"=").decode()
    return jwt.encode(claims, private, algorithm="ES256", headers={"typ": "dpop+jwt", "jwk": jwk})


def _hidden_fields(page: str) -> dict:
    return {m[0]: html.unescape(m[1]) for m in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page)}


async def test_R_EXT_02_authlib_partner_par_private_key_jwt_pkce_dpop_reads_prefill_with_consent(services, gateway):
    services("identity", port=service_port("identity"), **mail_env())
    base = f"{gateway}/api/identity"
    client_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    client_pem = client_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()).decode()
    client_jwk = {**json.loads(RSAAlgorithm.to_jwk(client_key.public_key())), "kid": "partner-1", "use": "sig"}
    async with httpx.AsyncClient(base_url=base, timeout=15) as http:
        r = await http.post("/clients", headers=OPERATOR, json={
            "name": "会計クラウド", "confidential": True, "redirect_uris": [REDIRECT],
            "scopes": ["openid", "prefill:read"], "grant_types": ["authorization_code"],
            "token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": [client_jwk]},
            "dpop_bound_access_tokens": True, "require_pushed_authorization_requests": True})
        assert r.status_code == 201 and r.json()["client_secret"] is None, r.text
        client_id = r.json()["client_id"]
        # the person who will sign in at the partner: the prime of a business that consented to the partner
        email = f"owner-{uuid.uuid4().hex[:6]}@example.jp"
        await signup(http, email)
        portal = await portal_client(http)
        person = {"authorization": f"Bearer {(await password_login(http, portal['client_id'], email))['access_token']}"}
        bid = await prove_prime(http, person)
        assert (await http.post(f"/businesses/{bid}/consents", headers=person,
                                json={"client_id": client_id})).status_code == 201

        # a login that skips PAR is refused for this client
        r = await http.get("/authorize", params={"client_id": client_id, "redirect_uri": REDIRECT, "response_type": "code",
                                                 "code_challenge": "x" * 43, "code_challenge_method": "S256"})
        assert r.status_code == 400 and "PAR" in r.json()["error_description"]

    # --- the partner's side: Authlib, as the README's recipe configures it
    session = OAuth2Session(client_id, client_pem, token_endpoint_auth_method="private_key_jwt",
                            scope="openid prefill:read", redirect_uri=REDIRECT, code_challenge_method="S256")
    session.register_client_auth_method(PrivateKeyJWT())  # aud: the endpoint it posts to
    meta = session.get(f"{gateway}/.well-known/openid-configuration", withhold_token=True).json()
    verifier = uuid.uuid4().hex + uuid.uuid4().hex
    url, state = session.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier)
    pushed = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    r = session.post(meta["pushed_authorization_request_endpoint"], data=pushed, withhold_token=True,
                     auth=session.client_auth("private_key_jwt"))
    assert r.status_code == 201, r.text
    request_uri = r.json()["request_uri"]

    # --- the person's browser: the login page of the pushed request, then the second factor
    async with httpx.AsyncClient(base_url=base, timeout=15) as browser:
        page = await browser.get("/authorize", params={"client_id": client_id, "request_uri": request_uri})
        assert page.status_code == 200 and 'id="consent"' in page.text, page.text
        r = await browser.post("/authorize", data={**_hidden_fields(page.text), "email": email, "password": PASSWORD})
        r = await second_factor(browser, r, email)
        assert r.status_code == 302, r.text
        redirect = r.headers["location"]
        assert parse_qs(urlsplit(redirect).query)["state"] == [state]
        # the request_uri served one login
        again = await browser.get("/authorize", params={"client_id": client_id, "request_uri": request_uri})
        assert again.status_code == 400

    # --- back at the partner: the code for a DPoP-bound token, private_key_jwt again
    key = _dpop_key()
    token_url = meta["token_endpoint"]
    token = await asyncio.to_thread(session.fetch_token, token_url, authorization_response=redirect,
                                    code_verifier=verifier, headers={"DPoP": dpop_proof(key, "POST", token_url)})
    assert token["token_type"] == "DPoP"
    access = token["access_token"]
    assert jwt.decode(access, options={"verify_signature": False})["cnf"]["jkt"]

    prefill = f"{base}/prefill/{PROFILE['corporate_number']}"
    with httpx.Client(timeout=15) as api:
        ok = api.get(prefill, headers={"Authorization": f"DPoP {access}", "DPoP": dpop_proof(key, "GET", prefill, access)})
        assert ok.status_code == 200 and ok.json()["name"] == PROFILE["name"], ok.text
        # the same token without its proof, as a bearer token, with another key's proof, or with a replayed proof
        assert api.get(prefill, headers={"Authorization": f"DPoP {access}"}).status_code == 401
        assert api.get(prefill, headers={"Authorization": f"Bearer {access}"}).status_code == 401
        stranger = dpop_proof(_dpop_key(), "GET", prefill, access)
        r = api.get(prefill, headers={"Authorization": f"DPoP {access}", "DPoP": stranger})
        assert r.status_code == 401 and "another key" in r.json()["detail"]
        once = dpop_proof(key, "GET", prefill, access)
        assert api.get(prefill, headers={"Authorization": f"DPoP {access}", "DPoP": once}).status_code == 200
        assert api.get(prefill, headers={"Authorization": f"DPoP {access}", "DPoP": once}).status_code == 401
        # a proof for the token endpoint does not open the API
        r = api.get(prefill, headers={"Authorization": f"DPoP {access}", "DPoP": dpop_proof(key, "POST", token_url)})
        assert r.status_code == 401

    # a client assertion is single-use; a client secret is no way in for this client
    auth = PrivateKeyJWT()
    _, headers, body = auth(session.client_auth("private_key_jwt"), "POST", token_url, {},
                            "grant_type=authorization_code&code=x")
    with httpx.Client(timeout=15) as raw:
        first = raw.post(token_url, content=body, headers={**headers, "content-type": "application/x-www-form-urlencoded"})
        second = raw.post(token_url, content=body, headers={**headers, "content-type": "application/x-www-form-urlencoded"})
        assert first.json()["error"] != "invalid_client" and second.json()["error"] == "invalid_client"
        r = raw.post(token_url, auth=(client_id, "guess"), data={"grant_type": "authorization_code", "code": "x"})
        assert r.status_code == 401


async def test_R_EXT_02_a_third_partys_token_is_for_the_one_service_of_its_scopes(services, gateway):
    """Audience per service: a partner's token names `urn:smeportal:identity` (the service of its scopes); the gateway
    refuses it on any other service's path and a service refuses a token for another service, while the portal's
    tokens (`smeportal`) go everywhere."""
    from tests.support import token

    services("identity", port=service_port("identity"))
    partner = {"sub": "acc-p", "roles": ["business"], "scope": "openid prefill:read", "client_id": "partner-x"}
    for_identity = token(aud="urn:smeportal:identity", **partner)
    for_ratings = token(aud="urn:smeportal:ratings", **partner)
    direct = f"http://127.0.0.1:{service_port('identity')}/prefill/1234567890123"
    async with httpx.AsyncClient(timeout=15) as http:
        # at the gateway: the path's service must be the token's
        r = await http.get(f"{gateway}/api/ratings/pending", headers={"Authorization": f"Bearer {for_identity}"})
        assert r.status_code == 401 and "audience" in r.json()["detail"], r.text
        r = await http.get(f"{gateway}/api/identity/prefill/1234567890123",
                           headers={"Authorization": f"Bearer {for_identity}"})
        assert r.status_code != 401, r.text
        # at the service: a token for another service is not valid here
        r = await http.get(direct, headers={"Authorization": f"Bearer {for_ratings}"})
        assert r.status_code == 401 and "audience" in r.json()["detail"].lower(), r.text
        r = await http.get(direct, headers={"Authorization": f"Bearer {for_identity}"})
        assert r.status_code != 401, r.text


async def test_R_EXT_04_the_developer_portal_page_is_public_through_the_gateway(services, gateway):
    services("identity", port=service_port("identity"))
    async with httpx.AsyncClient(base_url=f"{gateway}/api/identity", timeout=15) as http:
        page = await http.get("/developers/apis")  # no token: anyone deciding to build a client reads it
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html"), page.text
        assert "/api/identity/prefill/{corporate_number}" in page.text and "prefill:read" in page.text
        assert "default-src 'none'" in page.headers["content-security-policy"]
        doc = (await http.get("/developers/openapi.json")).json()
        assert doc["paths"]["/api/identity/prefill/{corporate_number}"]["get"]["security"] == [
            {"smeportal": ["prefill:read"]}]
        assert (await http.get("/developers/asyncapi.json")).json()["asyncapi"].startswith("3.")

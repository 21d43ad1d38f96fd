"""Identity as an OpenID Connect provider, driven by an unmodified standard client library (Authlib),
through the real gateway, on real Kafka and MongoDB. Rules: R-ID-01, R-ID-05, R-ID-06."""
from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client

from tests.integration.identity_support import mail_env, signup
from tests.support import GATEWAY_PORT, eventually, service_port, token

ISSUER = f"http://127.0.0.1:{GATEWAY_PORT}"
REDIRECT = "http://127.0.0.1:9/callback"
PASSWORD = "correct horse battery 9"


def operator() -> dict:
    return {"authorization": f"Bearer {token(sub='op-1', roles=['operator'])}"}


@pytest.fixture
def identity(services):
    return services("identity", port=service_port("identity"), OIDC_ISSUER=ISSUER, **mail_env())


class _Form(HTMLParser):
    def __init__(self):
        super().__init__()
        self.fields = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "input" and a.get("type") == "hidden":
            self.fields[a["name"]] = a.get("value", "")


async def _signup(http: httpx.AsyncClient, email: str, kind: str = "business") -> dict:
    """Registration and the e-mail confirmation (R-ID-10), through the gateway."""
    return await signup(http, email, kind, prefix="/api/identity")


async def _client(http, **body) -> dict:
    r = await http.post("/api/identity/clients", json=body, headers=operator())
    assert r.status_code == 201, r.text
    return r.json()


async def _browser_login(http: httpx.AsyncClient, authorize_url: str, email: str, password: str) -> httpx.Response:
    """What a person's browser does: open the login page, submit the form."""
    page = await http.get(authorize_url)
    assert page.status_code == 200 and "ログイン" in page.text
    form = _Form()
    form.feed(page.text)
    return await http.post(urlsplit(authorize_url).path, data={**form.fields, "email": email, "password": password})


async def test_R_ID_01_standard_client_completes_discovery_code_pkce_refresh_and_userinfo(identity, gateway):
    async with httpx.AsyncClient(base_url=gateway, timeout=15) as http:
        meta = (await http.get("/.well-known/openid-configuration")).json()
        assert meta["issuer"] == ISSUER and "S256" in meta["code_challenge_methods_supported"]
        account = await _signup(http, "owner@example.jp")
        portal = await _client(http, name="portal", confidential=False, redirect_uris=[REDIRECT], first_party=True,
                               scopes=["openid", "profile", "email"], grant_types=["authorization_code", "refresh_token"])

        oauth = AsyncOAuth2Client(portal["client_id"], redirect_uri=REDIRECT, scope="openid profile",
                                  code_challenge_method="S256", token_endpoint_auth_method="none")
        verifier, nonce = generate_token(64), generate_token(16)
        url, state = oauth.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier, nonce=nonce)
        login = await _browser_login(http, url, "owner@example.jp", PASSWORD)
        assert login.status_code == 302, login.text
        location = login.headers["location"]
        assert location.startswith(REDIRECT) and parse_qs(urlsplit(location).query)["state"] == [state]

        tokens = await oauth.fetch_token(meta["token_endpoint"], authorization_response=location, code_verifier=verifier)
        # id_token verified the standard way, from the published JWKS
        signing_key = jwt.PyJWKClient(meta["jwks_uri"]).get_signing_key_from_jwt(tokens["id_token"])
        id_claims = jwt.decode(tokens["id_token"], signing_key.key, algorithms=["RS256"], audience=portal["client_id"],
                               issuer=ISSUER)
        assert (id_claims["sub"], id_claims["nonce"]) == (account["account_id"], nonce)

        me = await http.get("/api/identity/accounts/me", headers={"authorization": f"Bearer {tokens['access_token']}"})
        assert me.status_code == 200 and me.json()["email"] == "owner@example.jp"
        info = await http.get("/api/identity/userinfo", headers={"authorization": f"Bearer {tokens['access_token']}"})
        assert info.json()["sub"] == account["account_id"]

        old_refresh = tokens["refresh_token"]
        refreshed = await oauth.refresh_token(meta["token_endpoint"])
        assert refreshed["access_token"] != tokens["access_token"] and refreshed["refresh_token"] != old_refresh
        reuse = await http.post("/api/identity/token", data={"grant_type": "refresh_token", "refresh_token": old_refresh,
                                                             "client_id": portal["client_id"]})
        assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"  # refresh tokens rotate

        # the code is single-use and bound to the verifier
        replay = await http.post("/api/identity/token", data={
            "grant_type": "authorization_code", "code": parse_qs(urlsplit(location).query)["code"][0],
            "redirect_uri": REDIRECT, "client_id": portal["client_id"], "code_verifier": verifier})
        assert replay.json()["error"] == "invalid_grant"


async def test_R_ID_05_client_credentials_scopes_introspection_and_revocation(identity, gateway):
    async with httpx.AsyncClient(base_url=gateway, timeout=15) as http:
        meta = (await http.get("/.well-known/openid-configuration")).json()
        partner = await _client(http, name="会計クラウド", confidential=True, scopes=["prefill:read"],
                                grant_types=["client_credentials"])
        oauth = AsyncOAuth2Client(partner["client_id"], partner["client_secret"], scope="prefill:read")
        tok = await oauth.fetch_token(meta["token_endpoint"], grant_type="client_credentials")
        claims = jwt.decode(tok["access_token"], options={"verify_signature": False})
        assert (claims["client_id"], claims["scope"], claims["roles"]) == (partner["client_id"], "prefill:read", ["client"])

        too_much = await http.post("/api/identity/token", auth=(partner["client_id"], partner["client_secret"]),
                                   data={"grant_type": "client_credentials", "scope": "prefill:read openid"})
        assert too_much.json()["error"] == "invalid_scope"  # least privilege: only registered scopes
        wrong_secret = await http.post("/api/identity/token", auth=(partner["client_id"], "guess"),
                                       data={"grant_type": "client_credentials"})
        assert wrong_secret.status_code == 401 and wrong_secret.json()["error"] == "invalid_client"

        creds = (partner["client_id"], partner["client_secret"])
        active = await http.post("/api/identity/introspect", auth=creds, data={"token": tok["access_token"]})
        assert active.json()["active"] is True and active.json()["client_id"] == partner["client_id"]
        await http.post("/api/identity/revoke", auth=creds, data={"token": tok["access_token"]})
        assert (await http.post("/api/identity/introspect", auth=creds, data={"token": tok["access_token"]})).json() == {"active": False}

        # revoking the client stops it at once
        fresh = await oauth.fetch_token(meta["token_endpoint"], grant_type="client_credentials")
        assert (await http.post(f"/api/identity/clients/{partner['client_id']}/revoke", headers=operator())).status_code == 204
        me = await http.get("/api/identity/accounts/me", headers={"authorization": f"Bearer {fresh['access_token']}"})
        assert me.status_code == 401 and "revoked" in me.json()["detail"]
        again = await http.post("/api/identity/token", auth=creds, data={"grant_type": "client_credentials"})
        assert again.status_code == 401


async def test_R_ID_01_lockout_after_repeated_wrong_passwords(identity, gateway):
    async with httpx.AsyncClient(base_url=gateway, timeout=15) as http:
        await _signup(http, "locked@example.jp")
        portal = await _client(http, name="portal", confidential=False, redirect_uris=[REDIRECT], first_party=True, scopes=["openid"],
                               grant_types=["authorization_code"])
        url = AsyncOAuth2Client(portal["client_id"], redirect_uri=REDIRECT, scope="openid", code_challenge_method="S256") \
            .create_authorization_url("/api/identity/authorize", code_verifier=generate_token(64))[0]
        for _ in range(5):
            assert (await _browser_login(http, url, "locked@example.jp", "wrong password 1")).status_code == 401
        refused = await _browser_login(http, url, "locked@example.jp", PASSWORD)
        assert refused.status_code == 401 and "locked" in refused.text


async def test_R_ID_06_forced_exit_stops_tokens_in_identity_and_in_every_other_service(identity, gateway, services):
    recommend = services("recommend", port=service_port("recommend"))
    async with httpx.AsyncClient(base_url=gateway, timeout=15) as http:
        account = await _signup(http, "colluder@example.jp", kind="expert")
        expert = {"authorization": f"Bearer {token(sub=account['account_id'], roles=['expert'])}"}
        assert (await http.get("/api/identity/accounts/me", headers=expert)).status_code == 200
        assert (await http.get("/api/recommend/businesses/x", headers=expert)).status_code == 403  # allowed in, wrong role

        r = await http.post(f"/api/identity/accounts/{account['account_id']}/revoke", headers=operator(),
                            json={"reason": "fraud case 2026-17 (R-DSP-13)"})
        assert r.status_code == 200 and r.json()["status"] == "revoked"
        me = await http.get("/api/identity/accounts/me", headers=expert)
        assert me.status_code == 401 and "revoked" in me.json()["detail"]

        async def refused_by_recommend():  # learnt from identity.events: AccountRevoked
            r = await http.get("/api/recommend/businesses/x", headers=expert)
            return r.status_code == 401 and "revoked" in r.json()["detail"]

        await eventually(refused_by_recommend)


@pytest.mark.parametrize("method,path,body", [
    ("post", "/api/identity/staff-accounts", {"email": "a@b.jp", "password": PASSWORD, "real_name": "x", "kind": "operator"}),
    ("post", "/api/identity/clients", {"name": "x", "confidential": True, "scopes": [], "grant_types": ["client_credentials"]}),
    ("post", "/api/identity/accounts/acc-x/revoke", {"reason": "x"}),
    ("post", "/api/identity/clients/cl-x/revoke", None),
])
async def test_R_ID_05_operator_only_endpoints_refuse_every_other_role(identity, method, path, body):
    async with httpx.AsyncClient(base_url=identity.url, timeout=15) as http:
        svc_path = re.sub(r"^/api/identity", "", path)
        assert (await http.request(method, svc_path, json=body)).status_code == 401
        for role in ("business", "founder", "expert", "institution", "bureau", "agency", "client"):
            r = await http.request(method, svc_path, json=body,
                                   headers={"authorization": f"Bearer {token(roles=[role])}"})
            assert r.status_code == 403, (role, r.text)

"""Federated login (R-ANC-03): a second, independent OpenID Connect provider (another identity process with its
own database and keys) is the upstream, like GビズID; signing in there yields one linked account here."""
from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import jwt
import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.integration.identity_support import (PASSWORD, REDIRECT, mail_env, password_login, portal_client, signup,
                                                start_identity)
from tests.support import TEST_ISSUER, free_port, token


def _keypair(tmp: Path, name: str = "upstream") -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    (tmp / f"{name}-private.pem").write_text(private)
    (tmp / f"{name}-public.pem").write_text(public)
    return str(tmp / f"{name}-private.pem"), str(tmp / f"{name}-public.pem")


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.hidden, self.links = {}, {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "input" and a.get("type") == "hidden":
            self.hidden[a["name"]] = a.get("value", "")
        if tag == "a" and a.get("id"):
            self.links[a["id"]] = a["href"]


@pytest.fixture
def pair(services, ns, tmp_path):
    """(upstream, downstream): two identity processes; the downstream trusts the upstream as its OIDC provider."""
    private, public = _keypair(tmp_path)
    up_port, down_port = free_port(), free_port()
    up_url, down_url = f"http://127.0.0.1:{up_port}", f"http://127.0.0.1:{down_port}"
    upstream = services("identity", port=up_port, OIDC_ISSUER=up_url, JWT_ISSUER=TEST_ISSUER, IDENTITY_PUBLIC_URL=up_url,
                        MONGO_DB=ns.db("gbizid"), TOPIC_PREFIX=ns.prefix + "gbizid.", JWT_PRIVATE_KEY_FILE=private,
                        JWT_PUBLIC_KEY_FILE=public, **mail_env())
    up_operator = {"authorization": f"Bearer {token(sub='gbiz-op', roles=['operator'], key=Path(private).read_text())}"}
    r = httpx.post(f"{up_url}/clients", headers=up_operator, timeout=15, json={
        "name": "支援ポータル", "confidential": True, "redirect_uris": [f"{down_url}/federation/callback"],
        "scopes": ["openid", "profile", "email"], "grant_types": ["authorization_code"]})
    assert r.status_code == 201, r.text
    rp = r.json()
    downstream = start_identity(services, down_port, UPSTREAM_OIDC_ISSUER=up_url,
                                            UPSTREAM_OIDC_CLIENT_ID=rp["client_id"],
                                            UPSTREAM_OIDC_CLIENT_SECRET=rp["client_secret"], UPSTREAM_OIDC_NAME="GビズID")
    return upstream, downstream


async def _upstream_login(http: httpx.AsyncClient, upstream_authorize_url: str, email: str) -> str:
    """The browser at the upstream: its login page, the form; returns where the upstream sends it back."""
    page = await http.get(upstream_authorize_url)
    assert page.status_code == 200, page.text
    form = _Page()
    form.feed(page.text)
    r = await http.post(upstream_authorize_url.split("?")[0], data={**form.hidden, "email": email, "password": PASSWORD})
    assert r.status_code == 302, r.text
    return r.headers["location"]


async def _federated_login(http, upstream, down, portal: dict, email: str) -> dict:
    oauth = AsyncOAuth2Client(portal["client_id"], redirect_uri=REDIRECT, scope="openid", code_challenge_method="S256",
                              token_endpoint_auth_method="none")
    verifier = generate_token(64)
    url, state = oauth.create_authorization_url(f"{down.url}/authorize", code_verifier=verifier, nonce=generate_token(16))
    page = _Page()
    page.feed((await http.get(url)).text)
    start = await http.get(urljoin(url, page.links["federated"]))  # "GビズIDでログイン"
    assert start.status_code == 302 and start.headers["location"].startswith(upstream.url)
    back = await _upstream_login(http, start.headers["location"], email)
    assert back.startswith(f"{down.url}/federation/callback")
    done = await http.get(back)
    assert done.status_code == 302, done.text
    location = done.headers["location"]
    assert location.startswith(REDIRECT) and parse_qs(urlsplit(location).query)["state"] == [state]
    return await oauth.fetch_token(f"{down.url}/token", authorization_response=location, code_verifier=verifier)


async def test_R_ANC_03_upstream_login_creates_then_reuses_one_linked_account(pair):
    upstream, down = pair
    async with httpx.AsyncClient(timeout=15) as http:
        async with httpx.AsyncClient(base_url=upstream.url, timeout=15) as up:
            await signup(up, "taro@gbiz.example.jp", real_name="経産 太郎")
        async with httpx.AsyncClient(base_url=down.url, timeout=15) as d:
            portal = await portal_client(d)
        first = await _federated_login(http, upstream, down, portal, "taro@gbiz.example.jp")
        second = await _federated_login(http, upstream, down, portal, "taro@gbiz.example.jp")
        sub1 = jwt.decode(first["access_token"], options={"verify_signature": False})["sub"]
        sub2 = jwt.decode(second["access_token"], options={"verify_signature": False})["sub"]
        assert sub1 == sub2 and sub1.startswith("acc-")  # one account, linked
        me = (await http.get(f"{down.url}/accounts/me", headers={"authorization": f"Bearer {first['access_token']}"})).json()
        assert (me["real_name"], me["email"], me["kind"]) == ("経産 太郎", "taro@gbiz.example.jp", "business")
        # a federated-only account has no password here
        r = await http.post(f"{down.url}/authorize", data={"email": "taro@gbiz.example.jp", "password": PASSWORD,
                                                           "client_id": portal["client_id"], "redirect_uri": REDIRECT,
                                                           "code_challenge": "x" * 43})
        assert r.status_code == 401


async def test_R_ANC_03_an_existing_account_links_its_upstream_identity_and_then_signs_in_with_it(pair):
    upstream, down = pair
    async with httpx.AsyncClient(timeout=15) as http:
        async with httpx.AsyncClient(base_url=upstream.url, timeout=15) as up:
            await signup(up, "hanako@gbiz.example.jp", real_name="経産 花子")
        async with httpx.AsyncClient(base_url=down.url, timeout=15) as d:
            local = await signup(d, "hanako@example.jp", real_name="経産 花子")
            portal = await portal_client(d)
            tokens = await password_login(d, portal["client_id"], "hanako@example.jp")
            auth = {"authorization": f"Bearer {tokens['access_token']}"}
            r = await d.post("/accounts/me/federated-identities", headers=auth)
            assert r.status_code == 200, r.text
            back = await _upstream_login(http, r.json()["authorization_url"], "hanako@gbiz.example.jp")
            linked = await http.get(back)
            assert linked.status_code == 200 and "Linked" in linked.text
            assert [i["issuer"] for i in (await d.get("/accounts/me/federated-identities", headers=auth)).json()] == [upstream.url]
            # a callback replayed (same state) is refused
            assert (await http.get(back)).status_code == 400
            # a forged code: the upstream refuses it, and so do we (a page saying so, not a crash)
            again = await d.post("/accounts/me/federated-identities", headers=auth)
            state = parse_qs(urlsplit(again.json()["authorization_url"]).query)["state"][0]
            forged = await http.get(f"{down.url}/federation/callback", params={"state": state, "code": "forged"})
            assert forged.status_code == 401 and "did not confirm" in forged.text
        via_upstream = await _federated_login(http, upstream, down, portal, "hanako@gbiz.example.jp")
        assert jwt.decode(via_upstream["access_token"], options={"verify_signature": False})["sub"] == local["account_id"]

"""Helpers shared by the identity integration tests: start the service directly (no gateway), log in."""
from __future__ import annotations

import base64
import hashlib
import io
import re
import secrets
from datetime import date
from urllib.parse import parse_qs, urlsplit

import httpx

from contracts.vocab import fiscal_year

from tests.support import free_port, token

PASSWORD = "correct horse battery 9"
REDIRECT = "http://127.0.0.1:9/callback"


def bearer(sub: str = "op-1", roles=("operator",), **claims) -> dict:
    return {"authorization": f"Bearer {token(sub=sub, roles=list(roles), **claims)}"}


def start_identity(services, port: int | None = None, **env):
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    return services("identity", port=port, **{"IDENTITY_PUBLIC_URL": url, **env})


async def signup(http: httpx.AsyncClient, email: str, kind: str = "business", real_name: str = "中小 太郎") -> dict:
    r = await http.post("/accounts", json={"email": email, "password": PASSWORD, "real_name": real_name, "kind": kind})
    assert r.status_code == 201, r.text
    return r.json()


async def portal_client(http: httpx.AsyncClient, scopes=("openid",), headers: dict | None = None) -> dict:
    r = await http.post("/clients", headers=headers or bearer(), json={
        "name": "portal", "confidential": False, "redirect_uris": [REDIRECT], "scopes": list(scopes), "first_party": True,
        "grant_types": ["authorization_code", "refresh_token"]})
    assert r.status_code == 201, r.text
    return r.json()


async def partner_client(http: httpx.AsyncClient, scopes=("prefill:read",), name: str = "会計クラウド") -> dict:
    r = await http.post("/clients", headers=bearer(), json={
        "name": name, "confidential": True, "scopes": list(scopes), "grant_types": ["client_credentials"]})
    assert r.status_code == 201, r.text
    return r.json()


async def client_token(http: httpx.AsyncClient, client: dict, scope: str | None = None) -> str:
    data = {"grant_type": "client_credentials", **({"scope": scope} if scope else {})}
    r = await http.post("/token", auth=(client["client_id"], client["client_secret"]), data=data)
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


async def password_login(http: httpx.AsyncClient, client_id: str, email: str, password: str = PASSWORD) -> dict:
    """The code + PKCE flow a portal front end runs, reduced to its two requests."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    r = await http.post("/authorize", data={"email": email, "password": password, "client_id": client_id,
                                            "redirect_uri": REDIRECT, "scope": "openid", "state": "s",
                                            "code_challenge": challenge, "code_challenge_method": "S256"})
    assert r.status_code == 302, r.text
    code = parse_qs(urlsplit(r.headers["location"]).query)["code"][0]
    t = await http.post("/token", data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                                        "client_id": client_id, "code_verifier": verifier})
    assert t.status_code == 200, t.text
    return t.json()


FY = fiscal_year(date.today())
PROFILE = {"corporate_number": "7000012050002", "name": "熊本精密工業株式会社", "postal_code": "860-0001",
           "address": "熊本県熊本市中央区千葉城町1-1", "prefecture": "熊本県", "representative": "熊本 一郎",
           "capital": 10_000_000, "industry": "製造業", "employees": 48,
           "financials": [{"fiscal_year": FY - 1, "sales": 520_000_000, "operating_profit": 31_000_000},
                          {"fiscal_year": FY - 2, "sales": 480_000_000, "operating_profit": 25_000_000},
                          {"fiscal_year": FY - 3, "sales": 455_000_000, "operating_profit": -2_000_000}]}
# minted at import, so valid for the length of a whole suite run, not just the default five minutes
OWNER = bearer("owner-1", ["business"], ttl=6 * 3600)


OPERATOR = bearer("op-1", ["operator"])


async def letter_code(http: httpx.AsyncClient, business_id: str) -> tuple[str, str]:
    """What the mailroom prints and the representative reads off the paper (R-ID-07): (letter id, code)."""
    from pypdf import PdfReader

    letters = (await http.get("/letters", headers=OPERATOR)).json()
    letter = [x for x in letters if x["business_id"] == business_id][-1]
    pdf = await http.get(f"/letters/{letter['letter_id']}.pdf", headers=OPERATOR)
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    text = PdfReader(io.BytesIO(pdf.content)).pages[0].extract_text()
    return letter["letter_id"], re.search(r"CONFIRMATION CODE: (\d{8})", text).group(1)


async def prove_prime(http: httpx.AsyncClient, headers: dict, profile: dict = PROFILE) -> str:
    """Registers a corporation and proves the caller its prime account with the letter's code; its id."""
    r = await http.post("/businesses", headers=headers, json=profile)
    assert r.status_code == 201, r.text
    bid = r.json()["business_id"]
    _, code = await letter_code(http, bid)
    r = await http.post(f"/businesses/{bid}/prime-proof", headers=headers, json={"code": code})
    assert r.status_code == 200, r.text
    return bid

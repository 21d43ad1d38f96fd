"""Helpers shared by the identity integration tests: start the service directly (no gateway), log in."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import html
import io
import re
import secrets
import time
from datetime import date
from urllib.parse import parse_qs, urlsplit

import httpx
import pyotp

from contracts.vocab import fiscal_year

from tests.support import free_port, shared_mailbox, token

PASSWORD = "correct horse battery 9"
REDIRECT = "http://127.0.0.1:9/callback"


def bearer(sub: str = "op-1", roles=("operator",), **claims) -> dict:
    return {"authorization": f"Bearer {token(sub=sub, roles=list(roles), **claims)}"}


def mail_env() -> dict:
    """Settings that make an identity process send its account mails (R-ID-10) to the tests' SMTP server."""
    return {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(shared_mailbox()[1]), "SMTP_BACKOFF_SECONDS": "0.2"}


def start_identity(services, port: int | None = None, **env):
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    return services("identity", port=port, **{"IDENTITY_PUBLIC_URL": url, **mail_env(), **env})


def mails(address: str, purpose: str) -> list:
    """Account mails of one kind (verify-email, password-reset, password-changed) the tests' SMTP server got."""
    return [m for m in shared_mailbox()[0].to(address) if m["X-SMEPortal-Mail"] == purpose]


async def next_mail(address: str, purpose: str, after: int, timeout: float = 15):
    """The first mail of `purpose` to `address` beyond the `after` ones there were before."""
    deadline = time.monotonic() + timeout
    while len(got := mails(address, purpose)) <= after:
        assert time.monotonic() < deadline, f"no {purpose} mail to {address} within {timeout}s"
        await asyncio.sleep(0.1)
    return got[after]


def mailed_token(message) -> str:
    """The token a mail carries (its link's fragment, also printed as the code)."""
    body = message.get_content()
    token_ = re.search(r"Code: (\S+)", body).group(1)
    assert f"#token={token_}" in body
    return token_


async def verify_email(http: httpx.AsyncClient, email: str, after: int = 0, prefix: str = "") -> str:
    """Confirms `email` the way a person does: the link from the mail (its token posted by the page)."""
    token_ = mailed_token(await next_mail(email, "verify-email", after))
    r = await http.post(f"{prefix}/accounts/verify-email", json={"token": token_})
    assert r.status_code == 204, r.text
    return token_


async def signup(http: httpx.AsyncClient, email: str, kind: str = "business", real_name: str = "中小 太郎",
                 verify: bool = True, prefix: str = "") -> dict:
    """Registers (R-ID-01) and, unless told not to, confirms the address through the mail identity sent."""
    before = len(mails(email, "verify-email"))
    r = await http.post(f"{prefix}/accounts", json={"email": email, "password": PASSWORD, "real_name": real_name,
                                                    "kind": kind})
    assert r.status_code == 201, r.text
    if verify:
        await verify_email(http, email, before, prefix)
    return r.json()


# --- TOTP (R-ID-10): what a person's authenticator app holds, per identity process and account ---------
AUTHENTICATOR: dict[tuple[str, str], dict] = {}


def _hidden(page: str, name: str) -> str:
    return html.unescape(re.search(rf'name="{name}" value="([^"]*)"', page).group(1))


def otpauth_secret(page: str) -> str:
    uri = html.unescape(re.search(r'id="otpauth" href="([^"]+)"', page).group(1))
    assert uri.startswith("otpauth://totp/")
    return parse_qs(urlsplit(uri).query)["secret"][0]


async def totp_now(key: tuple[str, str]) -> str:
    """A code for the next unused time step (identity accepts each step once), waiting if it lies too far ahead."""
    entry = AUTHENTICATOR[key]
    step = max(int(time.time() // 30), entry["last_step"] + 1)
    if (wait := (step - 1) * 30 - time.time()) > 0:
        await asyncio.sleep(wait + 0.5)
    entry["last_step"] = step
    return pyotp.HOTP(entry["secret"]).at(step)


async def second_factor(http: httpx.AsyncClient, r: httpx.Response, email: str, prefix: str = "") -> httpx.Response:
    """After the password: enrols TOTP when the page asks for it (keeping the secret and the recovery codes),
    or enters the code; returns the response that ends the login."""
    key = (str(http.base_url), email.lower())
    if r.status_code == 200 and 'id="otpauth"' in r.text:
        AUTHENTICATOR[key] = {"secret": otpauth_secret(r.text), "last_step": 0}
        ticket = _hidden(r.text, "ticket")
        shown = await http.post(f"{prefix}/authorize/totp", data={"ticket": ticket, "code": await totp_now(key)})
        assert shown.status_code == 200 and 'id="recovery-codes"' in shown.text, shown.text
        AUTHENTICATOR[key]["recovery"] = re.findall(r"<li><code>([0-9a-f-]+)</code></li>", shown.text)
        return await http.post(f"{prefix}/authorize/totp", data={"ticket": ticket})
    if r.status_code == 200 and 'name="ticket"' in r.text:
        return await http.post(f"{prefix}/authorize/totp", data={"ticket": _hidden(r.text, "ticket"),
                                                                 "code": await totp_now(key)})
    return r


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
    """The code + PKCE flow a portal front end runs, reduced to its requests (plus the second factor, R-ID-10)."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    r = await http.post("/authorize", data={"email": email, "password": password, "client_id": client_id,
                                            "redirect_uri": REDIRECT, "scope": "openid", "state": "s",
                                            "code_challenge": challenge, "code_challenge_method": "S256"})
    r = await second_factor(http, r, email)
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


OPERATOR = bearer("op-1", ["operator"], ttl=6 * 3600)  # minted at import, like OWNER


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

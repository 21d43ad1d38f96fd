"""Account life (R-ID-10) on a real identity process, real Kafka and MongoDB, and a real SMTP server: e-mail
verification and password reset by mail with expiring single-use links, the TOTP second factor in the login form
(required for agency, bureau and operator accounts), and no secret, code, password or token in any log."""
from __future__ import annotations

import base64
import hashlib
import re
import secrets as std_secrets
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pyotp
import pytest
from pymongo import AsyncMongoClient

from tests.integration.identity_support import (AUTHENTICATOR, PASSWORD, REDIRECT, bearer, mail_env, mailed_token,
                                                mails, next_mail, otpauth_secret, password_login, portal_client,
                                                second_factor, signup, start_identity, totp_now, verify_email)
from tests.support import GATEWAY_VAR, TEST_ISSUER, service_port

NEW_PASSWORD = "a new horse, staple 42"


@pytest.fixture
def identity(services):
    return start_identity(services)


def _db(infra, ns):
    return AsyncMongoClient(infra.mongo)[ns.db("identity")]


def _pkce() -> tuple[str, str]:
    verifier = std_secrets.token_urlsafe(48)
    return verifier, base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


async def _authorize(http: httpx.AsyncClient, client_id: str, email: str, password: str, prefix: str = ""):
    """The login form's first step; returns (response, PKCE verifier)."""
    verifier, challenge = _pkce()
    r = await http.post(f"{prefix}/authorize", data={"email": email, "password": password, "client_id": client_id,
                                                     "redirect_uri": REDIRECT, "scope": "openid", "state": "s",
                                                     "code_challenge": challenge, "code_challenge_method": "S256"})
    return r, verifier


def _ticket(page: str) -> str:
    return re.search(r'name="ticket" value="([^"]+)"', page).group(1)


async def _tokens(http, client_id: str, redirect: httpx.Response, verifier: str, prefix: str = "") -> dict:
    assert redirect.status_code == 302, redirect.text
    code = parse_qs(urlsplit(redirect.headers["location"]).query)["code"][0]
    t = await http.post(f"{prefix}/token", data={"grant_type": "authorization_code", "code": code, "client_id": client_id,
                                                 "redirect_uri": REDIRECT, "code_verifier": verifier})
    assert t.status_code == 200, t.text
    return {**t.json(), "code": code, "verifier": verifier}


async def _audit(infra, ns, action: str, key: str) -> list[dict]:
    return await _db(infra, ns).audit.find({"action": action, "key": key}).to_list(None)


async def test_R_ID_10_registration_mails_an_expiring_link_and_unverified_accounts_cannot_sign_in(identity, infra, ns):
    async with httpx.AsyncClient(base_url=identity.url, timeout=15) as http:
        before = len(mails("new@example.jp", "verify-email"))
        account = await signup(http, "new@example.jp", verify=False)
        assert account["email_verified"] is False
        first = await next_mail("new@example.jp", "verify-email", before)
        token = mailed_token(first)
        assert f"{identity.url}/pages/verify-email#token={token}" in first.get_content()  # the token in the fragment
        portal = await portal_client(http)

        # unverified: the right password does not complete a login (no code for the client), and says why
        r, _ = await _authorize(http, portal["client_id"], "new@example.jp", PASSWORD)
        assert r.status_code == 403 and "Confirm your e-mail address first" in r.text and "location" not in r.headers

        # resend: the same answer for a registered and an unknown address; throttled to one a minute per account
        known = await http.post("/accounts/verification-mails", json={"email": "new@example.jp"})
        unknown = await http.post("/accounts/verification-mails", json={"email": "nobody@example.jp"})
        assert known.status_code == unknown.status_code == 202 and known.json() == unknown.json()
        await _db(infra, ns).accounts.update_one({"_id": account["account_id"]},
                                                 {"$set": {"mails.verify": [time.time() - 3600]}})
        assert (await http.post("/accounts/verification-mails", json={"email": "new@example.jp"})).status_code == 202
        second = mailed_token(await next_mail("new@example.jp", "verify-email", before + 1))
        assert second != token
        assert mails("nobody@example.jp", "verify-email") == []

        # the older link stopped working; an expired one does not work; the newest works once
        assert (await http.post("/accounts/verify-email", json={"token": token})).status_code == 400
        db = _db(infra, ns)
        await db.verification_tokens.update_one({"account_id": account["account_id"]}, {"$set": {"expires_at": time.time() - 1}})
        assert (await http.post("/accounts/verify-email", json={"token": second})).status_code == 400
        await db.accounts.update_one({"_id": account["account_id"]}, {"$set": {"mails.verify": []}})
        r, _ = await _authorize(http, portal["client_id"], "new@example.jp", PASSWORD)  # a login attempt resends
        assert r.status_code == 403 and "we have just sent a new one" in r.text
        third = mailed_token(await next_mail("new@example.jp", "verify-email", before + 2))

        # the page the link opens: a form that posts the token (taken from the fragment) in the body
        page = await http.get("/pages/verify-email")
        assert page.status_code == 200 and 'id="token"' in page.text and "location.hash" in page.text
        done = await http.post("/pages/verify-email", data={"action": "verify", "token": third})
        assert done.status_code == 200 and "confirmed" in done.text
        again = await http.post("/pages/verify-email", data={"action": "verify", "token": third})
        assert again.status_code == 400  # single use

        assert (await http.get("/accounts/me", headers=bearer(account["account_id"], ["business"]))).json()["email_verified"]
        assert (await password_login(http, portal["client_id"], "new@example.jp"))["access_token"]
        assert await _audit(infra, ns, "identity.EmailVerified", account["account_id"])
        assert len(await _audit(infra, ns, "identity.VerificationMailSent", account["account_id"])) == 3


async def test_R_ID_10_password_reset_is_mailed_single_use_expiring_and_ends_refresh_tokens(identity, infra, ns):
    async with httpx.AsyncClient(base_url=identity.url, timeout=15) as http:
        account = await signup(http, "forgetful@example.jp")
        portal = await portal_client(http, scopes=("openid", "offline_access"))
        tokens = await password_login(http, portal["client_id"], "forgetful@example.jp")

        before = len(mails("forgetful@example.jp", "password-reset"))
        known = await http.post("/accounts/password-reset", json={"email": "Forgetful@example.jp"})
        unknown = await http.post("/accounts/password-reset", json={"email": "stranger@example.jp"})
        assert known.status_code == unknown.status_code == 202 and known.json() == unknown.json()
        message = await next_mail("forgetful@example.jp", "password-reset", before)
        token = mailed_token(message)
        assert f"/pages/reset-password#token={token}" in message.get_content()
        assert mails("stranger@example.jp", "password-reset") == []

        weak = await http.post("/accounts/password-reset/confirm", json={"token": token, "password": "short"})
        assert weak.status_code == 422 and "12 characters" in weak.text
        changed_before = len(mails("forgetful@example.jp", "password-changed"))
        ok = await http.post("/accounts/password-reset/confirm", json={"token": token, "password": NEW_PASSWORD})
        assert ok.status_code == 204, ok.text
        replay = await http.post("/accounts/password-reset/confirm", json={"token": token, "password": NEW_PASSWORD + "!"})
        assert replay.status_code == 400  # single use
        await next_mail("forgetful@example.jp", "password-changed", changed_before)  # the owner is told

        # every refresh token of the account ended; the old password no longer works, the new one does
        refresh = await http.post("/token", data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
                                                  "client_id": portal["client_id"]})
        assert refresh.status_code == 400 and refresh.json()["error"] == "invalid_grant"
        r, _ = await _authorize(http, portal["client_id"], "forgetful@example.jp", PASSWORD)
        assert r.status_code == 401
        assert (await password_login(http, portal["client_id"], "forgetful@example.jp", NEW_PASSWORD))["access_token"]
        audit = await _audit(infra, ns, "identity.PasswordReset", account["account_id"])
        assert audit and audit[0]["payload"] == {"refresh_tokens_ended": 1}

        # the pages the link opens; an expired link fails
        page = await http.get("/pages/reset-password")
        assert page.status_code == 200 and 'name="password_again"' in page.text
        await _db(infra, ns).accounts.update_one({"_id": account["account_id"]}, {"$set": {"mails.reset": []}})
        asked = await http.post("/pages/reset-password", data={"action": "request", "email": "forgetful@example.jp"})
        assert asked.status_code == 200
        second = mailed_token(await next_mail("forgetful@example.jp", "password-reset", before + 1))
        differ = await http.post("/pages/reset-password", data={"action": "set", "token": second, "password": PASSWORD,
                                                                "password_again": PASSWORD + "x"})
        assert differ.status_code == 400
        await _db(infra, ns).reset_tokens.update_one({"account_id": account["account_id"]},
                                                     {"$set": {"expires_at": time.time() - 1}})
        expired = await http.post("/pages/reset-password", data={"action": "set", "token": second, "password": PASSWORD,
                                                                 "password_again": PASSWORD})
        assert expired.status_code == 400 and "expired" in expired.text


async def test_R_ID_10_staff_must_enrol_totp_in_the_login_form_and_wrong_codes_count_toward_lockout(identity, infra, ns):
    async with httpx.AsyncClient(base_url=identity.url, timeout=15) as http:
        before = len(mails("bureau@example.jp", "verify-email"))
        r = await http.post("/staff-accounts", headers=bearer(), json={"email": "bureau@example.jp", "password": PASSWORD,
                                                                       "real_name": "九州 局員", "kind": "bureau",
                                                                       "bureau_id": "bureau-kyushu"})
        assert r.status_code == 201, r.text
        staff_id = r.json()["account_id"]
        await verify_email(http, "bureau@example.jp", before)
        portal = await portal_client(http)
        key = (str(http.base_url), "bureau@example.jp")

        # no login without a second factor: the form shows the secret once, and wants a first code
        page, verifier = await _authorize(http, portal["client_id"], "bureau@example.jp", PASSWORD)
        assert page.status_code == 200 and "location" not in page.headers
        secret, ticket = otpauth_secret(page.text), _ticket(page.text)
        assert "issuer=" in page.text and page.headers["cache-control"] == "no-store"
        wrong = await http.post("/authorize/totp", data={"ticket": ticket, "code": "000000"})
        assert wrong.status_code == 401 and "wrong" in wrong.text
        AUTHENTICATOR[key] = {"secret": secret, "last_step": 0}
        shown = await http.post("/authorize/totp", data={"ticket": ticket, "code": await totp_now(key)})
        assert shown.status_code == 200
        recovery = re.findall(r"<li><code>([0-9a-f-]+)</code></li>", shown.text)
        assert len(recovery) == 10
        first = await _tokens(http, portal["client_id"], await http.post("/authorize/totp", data={"ticket": ticket}), verifier)
        assert first["access_token"]
        assert (await http.post("/authorize/totp", data={"ticket": ticket})).status_code == 400  # the ticket is used up
        status = (await http.get("/accounts/me/totp", headers={"authorization": f"Bearer {first['access_token']}"})).json()
        assert status == {"enrolled": True, "required": True, "recovery_codes_left": 10}

        # enrolled: the password alone gives a code page; a replayed code is refused (and counts); a recovery code works once
        page, verifier = await _authorize(http, portal["client_id"], "bureau@example.jp", PASSWORD)
        assert page.status_code == 200 and 'name="code"' in page.text and 'id="otpauth"' not in page.text
        used = pyotp.HOTP(secret).at(AUTHENTICATOR[key]["last_step"])
        assert (await http.post("/authorize/totp", data={"ticket": _ticket(page.text), "code": used})).status_code == 401
        done = await http.post("/authorize/totp", data={"ticket": _ticket(page.text), "code": recovery[0].upper()})
        await _tokens(http, portal["client_id"], done, verifier)
        page, _ = await _authorize(http, portal["client_id"], "bureau@example.jp", PASSWORD)
        assert (await http.post("/authorize/totp", data={"ticket": _ticket(page.text), "code": recovery[0]})).status_code == 401
        assert await _audit(infra, ns, "identity.RecoveryCodeUsed", staff_id)

        # five wrong codes lock the account like five wrong passwords; then even both right factors are refused
        page, _ = await _authorize(http, portal["client_id"], "bureau@example.jp", PASSWORD)
        ticket = _ticket(page.text)
        for i in range(4):  # one failure is already counted (the second attempt of the recovery code)
            r = await http.post("/authorize/totp", data={"ticket": ticket, "code": f"{i:06d}"})
            assert r.status_code == 401
        assert "locked" in r.text and 'id="restart"' in r.text  # a way back to the login form
        assert (await http.post("/authorize/totp", data={"ticket": ticket, "code": await totp_now(key)})).status_code == 400
        r, _ = await _authorize(http, portal["client_id"], "bureau@example.jp", PASSWORD)
        assert r.status_code == 401 and "locked" in r.text

        # a lost device: an operator resets the factor; the next login enrols again
        await _db(infra, ns).accounts.update_one({"_id": staff_id}, {"$set": {"locked_until": None, "failed": 0}})
        assert (await http.post(f"/accounts/{staff_id}/totp/reset", headers=bearer())).status_code == 204
        r, _ = await _authorize(http, portal["client_id"], "bureau@example.jp", PASSWORD)
        assert 'id="otpauth"' in r.text and otpauth_secret(r.text) != secret
        assert await _audit(infra, ns, "identity.TotpReset", staff_id)


async def test_R_ID_10_any_account_may_add_totp_and_is_then_asked_for_it(identity):
    async with httpx.AsyncClient(base_url=identity.url, timeout=15) as http:
        await signup(http, "careful@example.jp")
        portal = await portal_client(http)
        auth = {"authorization": f"Bearer {(await password_login(http, portal['client_id'], 'careful@example.jp'))['access_token']}"}
        assert (await http.get("/accounts/me/totp", headers=auth)).json() == {"enrolled": False, "required": False,
                                                                              "recovery_codes_left": 0}
        start = await http.post("/accounts/me/totp", headers=auth)
        assert start.status_code == 200 and start.headers["cache-control"] == "no-store"
        uri = start.json()["otpauth_uri"]
        assert uri.startswith("otpauth://totp/") and "careful%40example.jp" in uri
        key = (str(http.base_url), "careful@example.jp")
        AUTHENTICATOR[key] = {"secret": start.json()["secret"], "last_step": 0}
        assert (await http.post("/accounts/me/totp/confirm", headers=auth, json={"code": "000000"})).status_code == 400
        confirmed = await http.post("/accounts/me/totp/confirm", headers=auth, json={"code": await totp_now(key)})
        assert confirmed.status_code == 200 and len(confirmed.json()["recovery_codes"]) == 10
        assert (await http.post("/accounts/me/totp", headers=auth)).status_code == 409

        page, verifier = await _authorize(http, portal["client_id"], "careful@example.jp", PASSWORD)
        assert page.status_code == 200 and 'name="code"' in page.text
        await _tokens(http, portal["client_id"], await second_factor(http, page, "careful@example.jp"), verifier)
        # turning it off needs a code; afterwards the password is enough again
        off = await http.post("/accounts/me/totp/disable", headers=auth, json={"code": confirmed.json()["recovery_codes"][0]})
        assert off.status_code == 204
        assert (await _authorize(http, portal["client_id"], "careful@example.jp", PASSWORD))[0].status_code == 302



async def test_R_ID_10_no_password_code_secret_or_token_in_any_log(services, gateway):
    """Registration, verification (the link's page), password reset, TOTP enrolment and login, token issuance and
    refresh, all through the gateway; then neither the identity log, nor its trace spans, nor the gateway's access
    log holds any of the passwords, codes, secrets or tokens used."""
    identity = services("identity", port=service_port("identity"), OIDC_ISSUER=TEST_ISSUER, **mail_env())
    gateway_log = GATEWAY_VAR / "log" / "gateway.log"
    gateway_from = gateway_log.stat().st_size if gateway_log.exists() else 0
    api = "/api/identity"
    used: list[str] = [PASSWORD, NEW_PASSWORD]
    async with httpx.AsyncClient(base_url=gateway, timeout=15) as http:
        before = len(mails("logscan@example.jp", "verify-email"))
        await signup(http, "logscan@example.jp", verify=False, prefix=api)
        used.append(token := mailed_token(await next_mail("logscan@example.jp", "verify-email", before)))
        assert (await http.get(f"{api}/pages/verify-email")).status_code == 200
        assert (await http.post(f"{api}/pages/verify-email", data={"action": "verify", "token": token})).status_code == 200

        before = len(mails("logscan-op@example.jp", "verify-email"))
        r = await http.post(f"{api}/staff-accounts", headers=bearer(), json={
            "email": "logscan-op@example.jp", "password": PASSWORD, "real_name": "運営 太郎", "kind": "operator"})
        assert r.status_code == 201, r.text
        used.append(await verify_email(http, "logscan-op@example.jp", before, prefix=api))
        r = await http.post(f"{api}/clients", headers=bearer(), json={
            "name": "portal", "confidential": False, "redirect_uris": [REDIRECT], "scopes": ["openid"], "first_party": True,
            "grant_types": ["authorization_code", "refresh_token"]})
        portal_id = r.json()["client_id"]

        resets = len(mails("logscan-op@example.jp", "password-reset"))
        assert (await http.post(f"{api}/accounts/password-reset", json={"email": "logscan-op@example.jp"})).status_code == 202
        used.append(reset := mailed_token(await next_mail("logscan-op@example.jp", "password-reset", resets)))
        assert (await http.post(f"{api}/accounts/password-reset/confirm",
                                json={"token": reset, "password": NEW_PASSWORD})).status_code == 204

        key = (str(http.base_url), "logscan-op@example.jp")
        page, verifier = await _authorize(http, portal_id, "logscan-op@example.jp", NEW_PASSWORD, prefix=api)
        secret, ticket = otpauth_secret(page.text), _ticket(page.text)
        AUTHENTICATOR[key] = {"secret": secret, "last_step": 0}
        used += [secret, ticket, code := await totp_now(key)]
        shown = await http.post(f"{api}/authorize/totp", data={"ticket": ticket, "code": code})
        recovery = re.findall(r"<li><code>([0-9a-f-]+)</code></li>", shown.text)
        used += recovery
        first = await _tokens(http, portal_id, await http.post(f"{api}/authorize/totp", data={"ticket": ticket}), verifier,
                              prefix=api)

        page, verifier = await _authorize(http, portal_id, "logscan-op@example.jp", NEW_PASSWORD, prefix=api)
        used += [_ticket(page.text), code := await totp_now(key)]
        second = await _tokens(http, portal_id, await http.post(f"{api}/authorize/totp",
                                                                data={"ticket": _ticket(page.text), "code": code}),
                               verifier, prefix=api)
        refreshed = await http.post(f"{api}/token", data={"grant_type": "refresh_token", "client_id": portal_id,
                                                          "refresh_token": second["refresh_token"]})
        assert refreshed.status_code == 200
        me = await http.get(f"{api}/accounts/me", headers={"authorization": f"Bearer {refreshed.json()['access_token']}"})
        assert me.status_code == 200 and me.json()["kind"] == "operator"
        for t in (first, second, refreshed.json()):
            used += [t[k] for k in ("access_token", "refresh_token", "id_token", "code", "verifier") if t.get(k)]

    identity.stop()  # every line written
    logs = {"identity log": identity.log_file.read_text(errors="replace"),
            "identity spans": identity.spans_file.read_text(errors="replace") if identity.spans_file.exists() else "",
            "gateway log": gateway_log.read_bytes()[gateway_from:].decode(errors="replace")}
    assert "account mail sent" in logs["identity log"]  # the log was written, and says what happened without content
    assert all(len(s) >= 6 for s in used) and len(used) > 20
    leaks = [f"{name} holds used[{i}]" for name, text in logs.items() for i, s in enumerate(used)
             if re.search(rf"(?<![0-9A-Za-z]){re.escape(s)}(?![0-9A-Za-z])", text)]
    assert not leaks, leaks

"""TOTP second factor (R-ID-10, RFC 6238) and the steps of a login after its first factor.

A login whose first factor succeeded (the password form, or a federated sign-in) continues here:
- a password account whose e-mail address is unconfirmed is refused, and sent a new link (throttled);
- an account with TOTP gets a page asking for the code (or a recovery code);
- an agency, bureau or operator account without TOTP gets an enrolment page: the secret, once, as an otpauth:// URI
  and as a key to type, confirmed with a first code; then its recovery codes, once; then the login completes;
- otherwise the login completes (a code back to the client).
Between the steps the browser holds a login ticket (a random token in a hidden field; stored as its digest, expiring
after 10 minutes). A wrong code counts toward the account's lockout like a wrong password, and the failure count is
cleared only when a login completes, so a right password cannot reset what wrong codes counted.
Each TOTP code is accepted once (the last used time step is kept; RFC 6238 §5.2). Recovery codes are stored as digests
and each works once.
"""
from __future__ import annotations

import html
import time
from urllib.parse import urlencode

import pyotp
from fastapi import APIRouter, Depends, Form, Request, Response
from pydantic import BaseModel, Field

from identity_service import account_life, domain, oidc, secrets
from identity_service.audit import record
from servicekit.auth import Principal, require
from servicekit.problems import Problem

router = APIRouter()
LOCKED = "too many failed attempts; the account is locked for a while"
TICKET_GONE = ("This sign-in has expired or is already complete. Start again from the application. / "
               "このログイン手続きは期限切れか完了済みです。アプリからもう一度お試しください。")


def roles_of(account: dict) -> set[str]:
    return set(account.get("roles") or []) | {account.get("kind")}


def enrolled(account: dict) -> bool:
    return bool((account.get("totp") or {}).get("secret"))


def otpauth_uri(secret: str, email: str, issuer_name: str = "SME Portal") -> str:
    """The otpauth:// link of a secret; `issuer_name` is what authenticator apps show (TOTP_ISSUER)."""
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=issuer_name)


def new_recovery_codes() -> list[str]:
    return ["-".join(h[i:i + 4] for i in range(0, 16, 4)) for h in (secrets.new_hex(8) for _ in range(domain.RECOVERY_CODE_COUNT))]


async def check_code(db, account: dict, code: str, now: float) -> str | None:
    """'totp' or 'recovery' if `code` is a right, unused code of the account (and marks it used); else None."""
    totp = account.get("totp") or {}
    if not totp.get("secret"):
        return None
    if domain.is_recovery_code(code):
        d = secrets.digest(domain.normalised_code(code))
        res = await db.accounts.update_one({"_id": account["_id"], "totp.recovery": d}, {"$pullAll": {"totp.recovery": [d]}})
        return "recovery" if res.modified_count == 1 else None
    step = domain.totp_match(totp["secret"], code, now, totp.get("last_step"))
    if step is None:
        return None
    # compare-and-set: of two requests with the same code, one wins
    res = await db.accounts.update_one({"_id": account["_id"], "totp.last_step": {"$lt": step}},
                                       {"$set": {"totp.last_step": step}})
    return "totp" if res.modified_count == 1 else None


async def store_enrolment(db, account_id: str, secret: str, step: int, now: float) -> list[str] | None:
    """Makes `secret` the account's second factor (unless one was enrolled meanwhile); its new recovery codes."""
    codes = new_recovery_codes()
    res = await db.accounts.update_one(
        {"_id": account_id, "totp.secret": {"$exists": False}},
        {"$set": {"totp": {"secret": secret, "enrolled_at": now, "last_step": step,
                           "recovery": [secrets.digest(domain.normalised_code(c)) for c in codes]}},
         "$unset": {"totp_pending": ""}})
    if res.matched_count != 1:
        return None
    await record(db, actor=account_id, action="identity.TotpEnrolled", key=account_id,
                 payload={"recovery_codes": len(codes)})
    return codes


# --- the login steps ----------------------------------------------------------------------------------
async def after_first_factor(request: Request, client: dict, params: dict, account: dict, *, federated: bool = False):
    """Where a login goes once the password (or the upstream provider) proved the person (see the module doc)."""
    svc, now = request.app.state.service, time.time()
    step = domain.login_next_step(email_verified=bool(account.get("email_verified")), federated=federated,
                                  totp_enrolled=enrolled(account), roles=roles_of(account))
    if step == "verify_email":
        sent = await account_life.send_verification(svc, account)
        return oidc._login_page(svc.settings, params, "Confirm your e-mail address first: open the link we mailed to you"
                                + (" (we have just sent a new one)." if sent else ".")
                                + " / メールアドレスの確認がまだです。お送りしたリンクを開いてください。", status=403)
    if step == "done":
        return await _complete(request, client, params, account)
    ticket = secrets.new_token()
    doc = {"_id": secrets.digest(ticket), "account_id": account["_id"], "params": params, "federated": federated,
           "stage": "totp" if step == "totp" else "enrol", "expires_at": now + domain.LOGIN_TICKET_TTL}
    if step == "enrol_totp":
        doc["secret"] = pyotp.random_base32()
    await svc.db.login_tickets.insert_one(doc)
    if step == "totp":
        return _code_page(svc.settings, ticket)
    return _enrol_page(svc.settings, ticket, doc["secret"], account["email"])


async def _complete(request: Request, client: dict, params: dict, account: dict):
    if account.get("failed") or account.get("locked_until"):
        await request.app.state.service.db.accounts.update_one({"_id": account["_id"]},
                                                               {"$set": {"failed": 0, "locked_until": None}})
    return await oidc.issue_code(request, client, params, account)


@router.post("/authorize/totp", tags=["openid-connect"],
             summary="Second step of the login form: the TOTP code, or enrolment of TOTP (R-ID-10)")
async def authorize_totp(request: Request, ticket: str = Form(max_length=200), code: str = Form("", max_length=100)):
    db, now = request.app.state.service.db, time.time()
    t = await db.login_tickets.find_one({"_id": secrets.digest(ticket)})
    if t is None or domain.expired(t["expires_at"], now):
        return account_life.page("ログインできません / Sign-in failed", f"<p>{html.escape(TICKET_GONE)}</p>", 400)
    params = t["params"]
    account = await db.accounts.find_one({"_id": t["account_id"]})
    refusal = "this account no longer exists" if account is None else domain.login_refusal(
        account["status"], account.get("failed", 0), account.get("locked_until"), now)
    if refusal:
        await db.login_tickets.delete_one({"_id": t["_id"]})
        return _restart_page(request.app.state.settings, params, refusal, 401)
    client = await oidc._client_and_redirect(db, params["client_id"], params["redirect_uri"])
    if client is None:
        return oidc.oauth_error("invalid_request", "the client or its redirect_uri is no longer registered")

    if t["stage"] == "enrol":
        step = domain.totp_match(t["secret"], code, now, None)
        if step is None:
            return await _wrong_code(request.app.state.settings, db, t, account, ticket, now)
        codes = await store_enrolment(db, account["_id"], t["secret"], step, now)
        if codes is None:  # enrolled in another window meanwhile: sign in with that one
            await db.login_tickets.delete_one({"_id": t["_id"]})
            return _restart_page(request.app.state.settings, params,
                                 "a second factor was set up meanwhile; sign in again", 409)
        await db.login_tickets.update_one({"_id": t["_id"]}, {"$set": {"stage": "enrolled"}, "$unset": {"secret": ""}})
        return _recovery_page(request.app.state.settings, ticket, codes)
    if t["stage"] == "totp":
        used = await check_code(db, account, code, now)
        if used is None:
            return await _wrong_code(request.app.state.settings, db, t, account, ticket, now)
        if used == "recovery":
            left = len(((await db.accounts.find_one({"_id": account["_id"]}, {"totp": 1})).get("totp") or {}).get("recovery", []))
            await record(db, actor=account["_id"], action="identity.RecoveryCodeUsed", key=account["_id"],
                         payload={"recovery_codes_left": left})
    # stage "totp" passed, or "enrolled" (the recovery codes were shown): the ticket is used up here, once
    if await db.login_tickets.find_one_and_delete({"_id": t["_id"]}) is None:
        return account_life.page("ログインできません / Sign-in failed", f"<p>{html.escape(TICKET_GONE)}</p>", 400)
    return await _complete(request, client, params, account)


async def _wrong_code(settings, db, t: dict, account: dict, ticket: str, now: float):
    """A wrong code counts like a wrong password (R-ID-01 lockout)."""
    failed, locked_until = domain.after_failed_login(account.get("failed", 0), now)
    await db.accounts.update_one({"_id": account["_id"]}, {"$set": {"failed": failed, "locked_until": locked_until}})
    if locked_until:
        await db.login_tickets.delete_one({"_id": t["_id"]})
        return _restart_page(settings, t["params"], LOCKED, 401)
    error = "the code is wrong or already used; try the next one / コードが正しくありません"
    if t["stage"] == "enrol":
        return _enrol_page(settings, ticket, t["secret"], account["email"], error, 401)
    return _code_page(settings, ticket, error, 401)


# --- the pages ----------------------------------------------------------------------------------------
def _form(settings, ticket: str, inner: str, button: str) -> str:
    action = html.escape(f"{oidc.public_url(settings)}/authorize/totp")
    return (f'<form method="post" action="{action}"><input type="hidden" name="ticket" value="{html.escape(ticket)}">'
            f'{inner}<button type="submit">{button}</button></form>')


def _restart_page(settings, params: dict, message: str, status: int):
    """The login ends here (locked, revoked, ...): what happened, and a link back to the login form."""
    again = html.escape(f"{oidc.public_url(settings)}/authorize?{urlencode({'response_type': 'code', **params})}")
    return account_life.page("ログインできません / Sign-in failed", f'<p id="message">{html.escape(message)}</p>'
                             f'<p><a id="restart" href="{again}">ログイン画面へ / Back to sign-in</a></p>', status)


_CODE_FIELD = ('<label>{label} <input name="code" autocomplete="one-time-code" required autofocus></label><br>')


def _error(text: str) -> str:
    return f'<p id="message">{html.escape(text)}</p>' if text else ""


def _code_page(settings, ticket: str, error: str = "", status: int = 200):
    return account_life.page("確認コード / Verification code", _error(error) + _form(
        settings, ticket, _CODE_FIELD.format(label="認証アプリの 6 桁のコード、またはリカバリーコード / "
                                         "The 6-digit code of your authenticator app, or a recovery code"),
        "確認 / Verify"), status)


def _enrol_page(settings, ticket: str, secret: str, email: str, error: str = "", status: int = 200):
    uri = otpauth_uri(secret, email, settings.totp_issuer)
    key = " ".join(secret[i:i + 4] for i in range(0, len(secret), 4))
    return account_life.page("二要素認証の設定 / Set up two-factor authentication", _error(error) + f"""
<p>このアカウントには二要素認証が必要です。認証アプリにこの鍵を登録し、表示される 6 桁のコードを入力してください。<br>
This account must sign in with a second factor. Add this key to an authenticator app (open the link on your phone, or
type the key), then enter the 6-digit code it shows.</p>
<p><a id="otpauth" href="{html.escape(uri)}">{html.escape(uri)}</a></p>
<p>鍵 / Key: <code id="secret">{html.escape(key)}</code></p>""" + _form(
        settings, ticket, _CODE_FIELD.format(label="コード / Code"), "設定する / Confirm"), status)


def _recovery_page(settings, ticket: str, codes: list[str]):
    items = "".join(f"<li><code>{html.escape(c)}</code></li>" for c in codes)
    return account_life.page("リカバリーコード / Recovery codes", f"""
<p>端末をなくしたときは、コードの代わりにこれらを 1 回ずつ使えます。今だけ表示します。安全な場所に保管してください。<br>
If you lose your device, each of these works once in place of a code. They are shown only now: keep them safe.</p>
<ul id="recovery-codes">{items}</ul>""" + _form(settings, ticket, "", "続ける / Continue"))


# --- self-service API (an account with a token) -----------------------------------------------------------
class TotpStatusOut(BaseModel):
    enrolled: bool
    required: bool = Field(description="agency, bureau and operator accounts must have TOTP (R-ID-10)")
    recovery_codes_left: int


class TotpStartOut(BaseModel):
    otpauth_uri: str = Field(description="shown once: add it to an authenticator app, then confirm with a code")
    secret: str
    expires_at: float


class CodeIn(BaseModel):
    code: str = Field(min_length=1, max_length=40, description="a 6-digit TOTP code (or, to disable, a recovery code)")


class RecoveryCodesOut(BaseModel):
    recovery_codes: list[str] = Field(description="shown once; each works once in place of a code")


async def _own_account(request: Request, who: Principal) -> dict:
    account = await request.app.state.service.db.accounts.find_one({"_id": who.subject})
    if account is None:
        raise Problem(404, "Not found", "This token's subject is not an account (a client token?).")
    return account


@router.get("/accounts/me/totp", response_model=TotpStatusOut, tags=["accounts"], summary="Your second factor's state")
async def totp_status(request: Request, who: Principal = Depends(require(*domain.ACTOR_KINDS))) -> TotpStatusOut:
    account = await _own_account(request, who)
    return TotpStatusOut(enrolled=enrolled(account), required=domain.totp_required(roles_of(account)),
                         recovery_codes_left=len((account.get("totp") or {}).get("recovery", [])))


@router.post("/accounts/me/totp", response_model=TotpStartOut, tags=["accounts"],
             summary="Start setting up TOTP: a new secret, shown once, to confirm with a first code")
async def totp_start(request: Request, response: Response,
                     who: Principal = Depends(require(*domain.ACTOR_KINDS))) -> TotpStartOut:
    account = await _own_account(request, who)
    if enrolled(account):
        raise Problem(409, "Already set up", "This account has TOTP; disable it first to set up another device.")
    secret, expires_at = pyotp.random_base32(), time.time() + domain.TOTP_ENROLMENT_TTL
    await request.app.state.service.db.accounts.update_one(
        {"_id": account["_id"]}, {"$set": {"totp_pending": {"secret": secret, "expires_at": expires_at}}})
    response.headers["Cache-Control"] = "no-store"
    uri = otpauth_uri(secret, account["email"], request.app.state.settings.totp_issuer)
    return TotpStartOut(otpauth_uri=uri, secret=secret, expires_at=expires_at)


@router.post("/accounts/me/totp/confirm", response_model=RecoveryCodesOut, tags=["accounts"],
             summary="Confirm TOTP with the first code; returns the recovery codes, once")
async def totp_confirm(body: CodeIn, request: Request, response: Response,
                       who: Principal = Depends(require(*domain.ACTOR_KINDS))) -> RecoveryCodesOut:
    account, now = await _own_account(request, who), time.time()
    pending = account.get("totp_pending") or {}
    if not pending or domain.expired(pending.get("expires_at"), now):
        raise Problem(409, "Nothing to confirm", "Start the set-up first (POST /accounts/me/totp); it lasts 10 minutes.")
    step = domain.totp_match(pending["secret"], body.code, now, None)
    if step is None:
        raise Problem(400, "Wrong code", "The code does not match the new secret; check the device's clock and try again.")
    codes = await store_enrolment(request.app.state.service.db, account["_id"], pending["secret"], step, now)
    if codes is None:
        raise Problem(409, "Already set up", "This account has TOTP already.")
    response.headers["Cache-Control"] = "no-store"
    return RecoveryCodesOut(recovery_codes=codes)


@router.post("/accounts/me/totp/disable", status_code=204, tags=["accounts"],
             summary="Turn TOTP off with a current code (not for agency, bureau and operator accounts)")
async def totp_disable(body: CodeIn, request: Request, who: Principal = Depends(require(*domain.ACTOR_KINDS))) -> None:
    db, account = request.app.state.service.db, await _own_account(request, who)
    if domain.totp_required(roles_of(account)):
        raise Problem(409, "Required", "Agency, bureau and operator accounts must keep a second factor (R-ID-10); "
                      "an operator can reset it for a new device.")
    if not enrolled(account):
        raise Problem(409, "Not set up", "This account has no TOTP.")
    if await check_code(db, account, body.code, time.time()) is None:
        raise Problem(400, "Wrong code", "The code is wrong or already used.")
    await db.accounts.update_one({"_id": account["_id"]}, {"$unset": {"totp": "", "totp_pending": ""}})
    await record(db, actor=account["_id"], action="identity.TotpDisabled", key=account["_id"], payload={})


@router.post("/accounts/{account_id}/totp/reset", status_code=204, tags=["accounts"],
             summary="Remove an account's TOTP (lost device; operators only): it signs out and sets TOTP up again")
async def totp_reset(account_id: str, request: Request, who: Principal = Depends(require("operator"))) -> None:
    db = request.app.state.service.db
    res = await db.accounts.update_one({"_id": account_id}, {"$unset": {"totp": "", "totp_pending": ""}})
    if res.matched_count != 1:
        raise Problem(404, "Not found", f"No account {account_id}.")
    await db.refresh_tokens.delete_many({"account_id": account_id})
    await db.login_tickets.delete_many({"account_id": account_id})
    await record(db, actor=who.subject, action="identity.TotpReset", key=account_id, payload={})

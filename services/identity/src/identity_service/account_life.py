"""Account life (R-ID-10): e-mail verification and password reset, by mail with expiring single-use links.

Links carry their token in the URL fragment (`…/pages/verify-email#token=…`): a browser never sends a fragment,
so the token reaches no access log (gateway or service) and no trace; the page's form posts it in the body. The
mail also shows the token as a code to paste. Only SHA-256 digests of tokens are stored.

Requests that name an e-mail address (resend, reset) answer the same whether or not an account has it, and do
their work after the answer is sent, so neither the answer nor its timing tells whether the address is registered.
"""
from __future__ import annotations

import html
import logging
import time
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Form, Request
from fastapi.responses import HTMLResponse
from pydantic import AfterValidator, BaseModel, Field

from identity_service import domain, mail, secrets
from identity_service.audit import record
from servicekit.problems import Problem

router = APIRouter(tags=["accounts"])
log = logging.getLogger("identity.account_life")
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
SAME_ANSWER = "If an account with this address can receive it, a mail is on its way. / 該当するアカウントがあれば、メールを送信しました。"
BAD_LINK = "This link or code is unknown, already used or expired; ask for a new one."


def pages_url(settings) -> str:
    """Where the links in mails point: these pages by default, or a portal front end (ACCOUNT_PAGES_URL)."""
    return settings.pages_url


# --- the work ---------------------------------------------------------------------------------------
async def send_verification(svc, account: dict, *, throttle: bool = True) -> bool:
    """A new verification link (the previous one stops working) mailed to the account; False if throttled."""
    now, db = time.time(), svc.db
    sent = (account.get("mails") or {}).get("verify", [])
    if throttle and not domain.mail_allowed(sent, now):
        return False
    token = await _new_link_token(db.verification_tokens, account["_id"], now + domain.VERIFICATION_TTL)
    await db.accounts.update_one({"_id": account["_id"]}, {"$set": {"mails.verify": domain.mail_history(sent, now)}})
    link = f"{pages_url(svc.settings)}/verify-email#token={token}"
    subject, body = mail.verification_mail(account["real_name"], link, token,
                                           domain.VERIFICATION_TTL // 3600)
    svc.app.state.mailer.send_soon(account["email"], subject, body, purpose="verify-email", account_id=account["_id"])
    await record(db, actor=account["_id"], action="identity.VerificationMailSent", key=account["_id"],
                 payload={"expires_at": now + domain.VERIFICATION_TTL})
    return True


async def _new_link_token(col, account_id: str, expires_at: float) -> str:
    """A single-use link token for the account, stored only as its digest; the account's earlier link stops working."""
    token = secrets.new_token()
    await col.delete_many({"account_id": account_id})
    await col.insert_one({"_id": secrets.digest(token), "account_id": account_id, "expires_at": expires_at})
    return token


async def resend_verification(svc, email: str) -> None:
    account = await svc.db.accounts.find_one({"email": email.lower(), "status": {"$ne": "revoked"},
                                              "email_verified": {"$ne": True}})
    if account is not None:
        await send_verification(svc, account)


async def verify(svc, token: str) -> str | None:
    """Confirms the address the token was mailed to; the reason for refusing, or None."""
    found = await svc.db.verification_tokens.find_one_and_delete({"_id": secrets.digest(token)})  # single use
    if found is None or domain.expired(found["expires_at"], time.time()):
        return BAD_LINK
    res = await svc.db.accounts.update_one({"_id": found["account_id"], "status": {"$ne": "revoked"}},
                                           {"$set": {"email_verified": True}})
    if res.matched_count != 1:
        return BAD_LINK
    await record(svc.db, actor=found["account_id"], action="identity.EmailVerified", key=found["account_id"], payload={})
    return None


async def request_reset(svc, email: str) -> None:
    """Mails a single-use reset link if an active account with a password has this address (and is not throttled)."""
    now, db = time.time(), svc.db
    account = await db.accounts.find_one({"email": email.lower(), "status": {"$ne": "revoked"}})
    if account is None or not account.get("password_hash"):  # federated-only accounts sign in upstream
        return
    sent = (account.get("mails") or {}).get("reset", [])
    if not domain.mail_allowed(sent, now):
        return
    token = await _new_link_token(db.reset_tokens, account["_id"], now + domain.RESET_TTL)
    await db.accounts.update_one({"_id": account["_id"]}, {"$set": {"mails.reset": domain.mail_history(sent, now)}})
    link = f"{pages_url(svc.settings)}/reset-password#token={token}"
    subject, body = mail.reset_mail(account["real_name"], link, token,
                                    domain.RESET_TTL // 60)
    svc.app.state.mailer.send_soon(account["email"], subject, body, purpose="password-reset", account_id=account["_id"])
    await record(db, actor=None, action="identity.PasswordResetRequested", key=account["_id"],
                 payload={"expires_at": now + domain.RESET_TTL})


async def reset_password(svc, token: str, password: str) -> str | None:
    """Sets a new password with a reset token (once); ends the account's refresh tokens and logins in progress,
    lifts a lockout and confirms the address (the mail reached it). The second factor stays as it is."""
    now, db = time.time(), svc.db
    found = await db.reset_tokens.find_one_and_delete({"_id": secrets.digest(token)})  # single use
    if found is None or domain.expired(found["expires_at"], now):
        return BAD_LINK
    account_id = found["account_id"]
    res = await db.accounts.update_one({"_id": account_id, "status": {"$ne": "revoked"}}, {"$set": {
        "password_hash": secrets.hash_password(password), "failed": 0, "locked_until": None, "email_verified": True,
        "password_changed_at": now}})
    if res.matched_count != 1:
        return BAD_LINK
    ended = (await db.refresh_tokens.delete_many({"account_id": account_id})).deleted_count
    await db.reset_tokens.delete_many({"account_id": account_id})
    await db.login_tickets.delete_many({"account_id": account_id})
    await record(db, actor=account_id, action="identity.PasswordReset", key=account_id,
                 payload={"refresh_tokens_ended": ended})
    account = await db.accounts.find_one({"_id": account_id}, {"email": 1, "real_name": 1})
    subject, body = mail.password_changed_mail(account["real_name"])
    svc.app.state.mailer.send_soon(account["email"], subject, body, purpose="password-changed", account_id=account_id)
    return None


async def _quietly(job, *args) -> None:
    """Runs after the answer: an error is logged by class only (its message could hold an address)."""
    try:
        await job(*args)
    except Exception as e:
        log.error("account mail job failed", extra={"fields": {"job": job.__name__, "error": type(e).__name__}})


# --- JSON API (for portal front ends) ---------------------------------------------------------------
class TokenIn(BaseModel):
    token: str = Field(min_length=1, max_length=200, description="the token from the mail's link, or its code")


class EmailIn(BaseModel):
    email: str = Field(pattern=EMAIL_PATTERN, max_length=254)


def _strong(v: str) -> str:
    if problem := domain.password_problem(v):
        raise ValueError(problem)
    return v


# A password as every form takes it (sign-up, staff accounts, reset): domain.password_problem's strength rules
StrongPassword = Annotated[str, Field(min_length=1, max_length=256), AfterValidator(_strong)]


class NewPasswordIn(TokenIn):
    password: StrongPassword


class AcceptedOut(BaseModel):
    detail: str


@router.post("/accounts/verify-email", status_code=204, summary="Confirm your e-mail address with the mailed token (R-ID-10)")
async def verify_email(body: TokenIn, request: Request) -> None:
    if problem := await verify(request.app.state.service, body.token):
        raise Problem(400, "Not confirmed", problem)


@router.post("/accounts/verification-mails", status_code=202, response_model=AcceptedOut,
             summary="Send a new verification link (same answer whether or not the address is registered)")
async def resend(body: EmailIn, request: Request, background: BackgroundTasks) -> AcceptedOut:
    background.add_task(_quietly, resend_verification, request.app.state.service, body.email)
    return AcceptedOut(detail=SAME_ANSWER)


@router.post("/accounts/password-reset", status_code=202, response_model=AcceptedOut,
             summary="Ask for a password-reset link by e-mail (same answer whether or not the address is registered)")
async def password_reset_request(body: EmailIn, request: Request, background: BackgroundTasks) -> AcceptedOut:
    background.add_task(_quietly, request_reset, request.app.state.service, body.email)
    return AcceptedOut(detail=SAME_ANSWER)


@router.post("/accounts/password-reset/confirm", status_code=204,
             summary="Set a new password with the mailed token (once); signs the account out everywhere")
async def password_reset_confirm(body: NewPasswordIn, request: Request) -> None:
    if problem := await reset_password(request.app.state.service, body.token, body.password):
        raise Problem(400, "Not reset", problem)


# --- HTML pages (where the mails' links land) ----------------------------------------------------------
_FRAGMENT_TO_FIELD = """<script>(function(){var m=/[#&]token=([^&]+)/.exec(location.hash);if(m){
document.getElementById('token').value=decodeURIComponent(m[1]);history.replaceState(null,'',location.pathname);
var r=document.getElementById('request');if(r){r.hidden=true;}}})();</script>"""


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(f'<!doctype html><html lang="ja"><meta charset="utf-8"><meta name="referrer" content="no-referrer">'
                        f"<title>{html.escape(title)}</title><h1>{html.escape(title)}</h1>{body}</html>",
                        status_code=status, headers={"Cache-Control": "no-store"})


def _message(text: str) -> str:
    return f'<p id="message">{html.escape(text)}</p>' if text else ""


def _verify_page(message: str = "", status: int = 200) -> HTMLResponse:
    return page("メールアドレスの確認 / Confirm your e-mail address", _message(message) + """
<form method="post"><input type="hidden" name="action" value="verify">
<label>確認コード / Code <input id="token" name="token" required autocomplete="off"></label>
<button type="submit">確認する / Confirm</button></form>
<section id="request"><h2>新しいリンクを送る / Send a new link</h2>
<form method="post"><input type="hidden" name="action" value="resend">
<label>メールアドレス / E-mail <input name="email" type="email" required></label>
<button type="submit">送信 / Send</button></form></section>""" + _FRAGMENT_TO_FIELD, status)


def _reset_page(message: str = "", status: int = 200) -> HTMLResponse:
    return page("パスワードの再設定 / Reset your password", _message(message) + """
<section id="request"><h2>再設定リンクを受け取る / Get a reset link</h2>
<form method="post"><input type="hidden" name="action" value="request">
<label>メールアドレス / E-mail <input name="email" type="email" required></label>
<button type="submit">送信 / Send</button></form></section>
<h2>新しいパスワード / New password</h2>
<form method="post"><input type="hidden" name="action" value="set">
<label>再設定コード / Code <input id="token" name="token" required autocomplete="off"></label><br>
<label>新しいパスワード / New password (12+ characters, letters and others)
<input name="password" type="password" autocomplete="new-password" required></label><br>
<label>もう一度 / Repeat <input name="password_again" type="password" autocomplete="new-password" required></label><br>
<button type="submit">設定する / Set</button></form>""" + _FRAGMENT_TO_FIELD, status)


@router.get("/pages/verify-email", response_class=HTMLResponse, summary="Page of the verification link (HTML)")
async def verify_page() -> HTMLResponse:
    return _verify_page()


@router.post("/pages/verify-email", response_class=HTMLResponse, summary="The verification page's forms (HTML)")
async def verify_page_submit(request: Request, background: BackgroundTasks, action: str = Form("verify"),
                             token: str = Form("", max_length=200), email: str = Form("", max_length=254)) -> HTMLResponse:
    svc = request.app.state.service
    if action == "resend":
        background.add_task(_quietly, resend_verification, svc, email)
        return _verify_page(SAME_ANSWER)
    if not token or await verify(svc, token):
        return _verify_page(BAD_LINK, 400)
    return page("確認しました / Confirmed", "<p>メールアドレスを確認しました。ログインできます。 / "
                "Your e-mail address is confirmed: you can sign in now.</p>")


@router.get("/pages/reset-password", response_class=HTMLResponse, summary="Page of the reset link (HTML)")
async def reset_page() -> HTMLResponse:
    return _reset_page()


@router.post("/pages/reset-password", response_class=HTMLResponse, summary="The reset page's forms (HTML)")
async def reset_page_submit(request: Request, background: BackgroundTasks, action: str = Form("set"),
                            email: str = Form("", max_length=254), token: str = Form("", max_length=200),
                            password: str = Form("", max_length=256),
                            password_again: str = Form("", max_length=256)) -> HTMLResponse:
    svc = request.app.state.service
    if action == "request":
        background.add_task(_quietly, request_reset, svc, email)
        return _reset_page(SAME_ANSWER)
    if password != password_again:
        return _reset_page("The two passwords differ. / パスワードが一致しません。", 400)
    if weak := domain.password_problem(password):
        return _reset_page(weak, 400)
    if not token or await reset_password(svc, token, password):
        return _reset_page(BAD_LINK, 400)
    return page("再設定しました / Password changed", "<p>新しいパスワードでログインしてください。 / "
                "Sign in with your new password.</p>")

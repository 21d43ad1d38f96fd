"""Account mails (R-ID-10): identity sends them itself through SMTP.

Why not through the notifications service: a verification or reset link is a credential. Sent as a Kafka command
it would sit in the topic's log, in the outbox and its audit trail, and in the notifications service's deliveries
for as long as those are kept. Sent from here, the link exists only in this process's memory while it is mailed;
identity stores no more than its SHA-256 digest. The price is no mail queue: a send is retried a few times with
backoff, and if the mail server stays down the person asks again (resend, or a new reset request).

Configuration as in the notifications service: SMTP_HOST, SMTP_PORT, SMTP_FROM, SMTP_TIMEOUT, plus
SMTP_ATTEMPTS. Nothing of a mail's content is logged: only its kind, the account id and the error class.
"""
from __future__ import annotations

import asyncio
import logging
from email.message import EmailMessage

import aiosmtplib

log = logging.getLogger("identity.mail")
PURPOSE_HEADER = "X-SMEPortal-Mail"  # lets a mailbox (and the tests) tell the kinds of mail apart


class Mailer:
    def __init__(self, host: str, port: int, sender: str, timeout: float = 10, attempts: int = 3,
                 backoff_seconds: float = 1.0):
        self.host, self.port, self.sender, self.timeout = host, port, sender, timeout
        self.attempts, self.backoff_seconds = attempts, backoff_seconds
        self._tasks: set[asyncio.Task] = set()

    @classmethod
    def from_settings(cls, settings) -> "Mailer":
        return cls(settings.smtp_host, settings.smtp_port, settings.smtp_from, settings.smtp_timeout,
                   settings.smtp_attempts, settings.smtp_backoff_seconds)

    async def send(self, to: str, subject: str, body: str, *, purpose: str, account_id: str) -> bool:
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = self.sender, to, subject
        msg[PURPOSE_HEADER] = purpose
        msg.set_content(body)
        for attempt in range(1, self.attempts + 1):
            try:
                await aiosmtplib.send(msg, hostname=self.host, port=self.port, timeout=self.timeout, start_tls=False)
                log.info("account mail sent", extra={"fields": {"purpose": purpose, "account_id": account_id}})
                return True
            except Exception as e:  # network, refusal, timeout: the error class only, never the message
                log.warning("account mail attempt failed", extra={"fields": {
                    "purpose": purpose, "account_id": account_id, "attempt": attempt, "error": type(e).__name__}})
                if attempt < self.attempts:
                    await asyncio.sleep(self.backoff_seconds * 2 ** (attempt - 1))
        return False

    def send_soon(self, to: str, subject: str, body: str, *, purpose: str, account_id: str) -> None:
        """Sends in the background, so a request's answer does not wait for (or reveal) the mail."""
        task = asyncio.get_running_loop().create_task(self.send(to, subject, body, purpose=purpose,
                                                                account_id=account_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


# --- the mails (Japanese first, English below) --------------------------------------------------------
def verification_mail(real_name: str, link: str, token: str, hours: int) -> tuple[str, str]:
    return ("【支援ポータル】メールアドレスの確認 / Confirm your e-mail address",
            f"{real_name} 様\n\n支援ポータルへのご登録ありがとうございます。次のリンクを開いて、メールアドレスを確認してください"
            f"（有効期限 {hours} 時間）。\n{link}\n\nリンクが開けない場合は、確認ページに次のコードを入力してください。\n"
            f"確認コード / Code: {token}\n\n"
            f"Thank you for registering. Open the link above within {hours} hours to confirm your e-mail address,\n"
            "or enter the code on the confirmation page. You can sign in once the address is confirmed.\n\n"
            "心当たりのない場合は、このメールを破棄してください。 / If this was not you, ignore this mail.\n")


def reset_mail(real_name: str, link: str, token: str, minutes: int) -> tuple[str, str]:
    return ("【支援ポータル】パスワードの再設定 / Reset your password",
            f"{real_name} 様\n\nパスワード再設定のご依頼を受け付けました。次のリンクを開いて、新しいパスワードを設定してください"
            f"（有効期限 {minutes} 分、1 回限り）。\n{link}\n\nリンクが開けない場合は、再設定ページに次のコードを入力してください。\n"
            f"再設定コード / Code: {token}\n\n"
            f"Open the link above within {minutes} minutes to set a new password (it works once), or enter the code\n"
            "on the reset page. Setting a new password signs you out of every device.\n\n"
            "ご依頼に心当たりのない場合は、このメールを破棄してください。パスワードは変わりません。\n"
            "If you did not ask for this, ignore this mail: your password stays as it is.\n")


def password_changed_mail(real_name: str) -> tuple[str, str]:
    return ("【支援ポータル】パスワードが変更されました / Your password was changed",
            f"{real_name} 様\n\nあなたのアカウントのパスワードが再設定され、すべての端末でサインアウトしました。\n"
            "心当たりのない場合は、すぐに運営事務局へご連絡ください。\n\n"
            "Your password was reset and every device was signed out. If this was not you, contact the portal's\n"
            "operators at once.\n")

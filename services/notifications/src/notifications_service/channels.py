"""The channels a delivery goes out on (R-NOT-04): e-mail over SMTP, Web Push (RFC 8030 with the payload
encrypted per RFC 8291 and a VAPID signature per RFC 8292, through pywebpush / py_vapid), and a messaging app
through an adapter shaped like LINE's Messaging API push endpoint.

Each sender takes one delivery document and returns, or raises `Transient` (retried with backoff) or `Permanent`
(the delivery fails at once; `pause` tells the caller to pause the channel for the person, or to drop the push
subscription, which the push service says is gone).
"""
from __future__ import annotations

import json
import time
import uuid
from email.message import EmailMessage
from urllib.parse import urlsplit

import aiosmtplib
import httpx
from py_vapid import Vapid02, b64urlencode
from pywebpush import WebPusher
from cryptography.hazmat.primitives import serialization

from notifications_service import domain


class Transient(Exception):
    pass


class Permanent(Exception):
    def __init__(self, reason: str, pause: bool = False):
        super().__init__(reason)
        self.pause = pause


class EmailSender:
    def __init__(self, settings):
        self.host, self.port, self.sender = settings.smtp_host, settings.smtp_port, settings.smtp_from
        self.timeout = settings.smtp_timeout

    async def send(self, d: dict) -> None:
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = self.sender, d["to"], d["subject"]
        msg["Message-ID"] = d.get("message_id") or message_id(d["_id"])
        if d.get("unsubscribe"):  # RFC 8058: one click in the mail client unsubscribes from this category
            msg["List-Unsubscribe"] = f"<{d['unsubscribe']}>"
            msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        msg.set_content(d["body"])
        try:
            await aiosmtplib.send(msg, hostname=self.host, port=self.port, timeout=self.timeout, start_tls=False)
        except aiosmtplib.SMTPRecipientsRefused as e:
            codes = [r.code for r in e.recipients]
            if codes and all(500 <= c < 600 for c in codes):
                raise Permanent(f"recipient refused: {codes}", pause=True) from e
            raise Transient(repr(e)) from e
        except Exception as e:  # network, refusal, timeout: retried with backoff, then failed
            raise Transient(repr(e)) from e


def message_id(delivery_id: str) -> str:
    return domain.message_id(delivery_id)


class WebPushSender:
    """RFC 8030 push with an aes128gcm payload (RFC 8291) and a VAPID Authorization header (RFC 8292)."""

    def __init__(self, vapid: Vapid02, subject: str, timeout: float = 10):
        self.vapid, self.subject, self.timeout = vapid, subject, timeout

    async def send(self, d: dict) -> None:
        sub = d["subscription"]
        body = WebPusher({"endpoint": sub["endpoint"], "keys": sub["keys"]}).encode(
            json.dumps(d["payload"], ensure_ascii=False).encode(), "aes128gcm")["body"]
        parts = urlsplit(sub["endpoint"])
        headers = {**self.vapid.sign({"aud": f"{parts.scheme}://{parts.netloc}", "sub": self.subject,
                                      "exp": int(time.time()) + 12 * 3600}),
                   "TTL": "86400", "Content-Encoding": "aes128gcm", "Content-Type": "application/octet-stream",
                   "Urgency": "normal"}
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as http:
                r = await http.post(sub["endpoint"], content=body, headers=headers)
        except httpx.HTTPError as e:
            raise Transient(repr(e)) from e
        if r.status_code in (404, 410):
            raise Permanent(f"push subscription gone ({r.status_code})", pause=True)
        if r.status_code == 429 or r.status_code >= 500:
            raise Transient(f"push service answered {r.status_code}")
        if r.status_code >= 400:
            raise Permanent(f"push service refused: {r.status_code} {r.text[:200]}")


def vapid_from_pem(pem: bytes) -> Vapid02:
    return Vapid02.from_pem(pem)


def new_vapid_pem() -> bytes:
    v = Vapid02()
    v.generate_keys()
    return v.private_pem()


def vapid_public_key(v: Vapid02) -> str:
    """The applicationServerKey a browser subscribes with (base64url of the uncompressed P-256 point)."""
    return b64urlencode(v.public_key.public_bytes(serialization.Encoding.X962,
                                                  serialization.PublicFormat.UncompressedPoint))


class LineSender:
    """A messaging-app adapter shaped like LINE's Messaging API: POST /v2/bot/message/push with the channel access
    token as Bearer, {"to": user id, "messages": [{"type": "text", ...}]}, and X-Line-Retry-Key fixed per delivery
    so a retried push is accepted once."""

    def __init__(self, settings):
        self.base = settings.line_api_base.rstrip("/")
        self.token = settings.line_channel_token
        self.timeout = settings.line_timeout

    async def send(self, d: dict) -> None:
        if not self.token:
            raise Permanent("no messaging channel token configured (LINE_CHANNEL_TOKEN)")
        p = d["payload"]
        text = f"{p['title']}\n{p['body']}" + (f"\n{p['url']}" if p.get("url") and p["url"] not in p["body"] else "")
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json",
                   "X-Line-Retry-Key": str(uuid.uuid5(uuid.NAMESPACE_URL, d["_id"]))}
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as http:
                r = await http.post(f"{self.base}/v2/bot/message/push", headers=headers,
                                    json={"to": d["to"], "messages": [{"type": "text", "text": text[:5000]}]})
        except httpx.HTTPError as e:
            raise Transient(repr(e)) from e
        if r.status_code in (200, 409):  # 409: this retry key was accepted before
            return
        if r.status_code == 429 or r.status_code >= 500:
            raise Transient(f"messaging API answered {r.status_code}")
        raise Permanent(f"messaging API refused: {r.status_code} {r.text[:200]}", pause=r.status_code in (400, 403))

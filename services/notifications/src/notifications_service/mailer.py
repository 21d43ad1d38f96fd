"""Sends queued e-mails through SMTP with retries and backoff; every attempt is recorded on the delivery."""
from __future__ import annotations

import asyncio
import logging
import os
from datetime import timedelta
from email.message import EmailMessage

import aiosmtplib

from notifications_service import domain
from notifications_service.store import audit, now

log = logging.getLogger("notifications.mailer")


class Mailer:
    def __init__(self, db, poll_seconds: float = 1.0):
        self.db = db
        self.host = os.environ.get("SMTP_HOST", "127.0.0.1")
        self.port = int(os.environ.get("SMTP_PORT", "25"))
        self.sender = os.environ.get("SMTP_FROM", "no-reply@smeportal.example.jp")
        self.timeout = float(os.environ.get("SMTP_TIMEOUT", "10"))
        self.params = domain.Params(backoff_base_seconds=float(os.environ.get("SMTP_BACKOFF_SECONDS", "2")),
                                    max_attempts=int(os.environ.get("SMTP_MAX_ATTEMPTS", "5")))
        self.poll_seconds = poll_seconds
        self._wake = asyncio.Event()

    def kick(self) -> None:
        self._wake.set()

    async def _claim(self):
        """Takes one due delivery with a lease, so two replicas never send the same e-mail at once."""
        t = now()
        for filt in ({"status": "queued", "next_at": {"$lte": t}}, {"status": "sending", "lease_until": {"$lte": t}}):
            doc = await self.db.deliveries.find_one_and_update(
                filt, {"$set": {"status": "sending", "lease_until": t + timedelta(seconds=self.timeout * 3)}})
            if doc:
                return doc
        return None

    async def send_due(self) -> int:
        sent = 0
        while (d := await self._claim()) is not None:
            msg = EmailMessage()
            msg["From"], msg["To"], msg["Subject"] = self.sender, d["to"], d["subject"]
            msg["Message-ID"] = f"<{d['_id'].replace(':', '.')}@smeportal>"
            msg.set_content(d["body"])
            attempts = d["attempts"] + 1
            try:
                await aiosmtplib.send(msg, hostname=self.host, port=self.port, timeout=self.timeout, start_tls=False)
            except Exception as e:  # network, refusal, timeout: retried with backoff, then failed
                status = domain.delivery_after_failure(attempts, self.params)
                delay = domain.backoff_seconds(attempts, self.params)
                await self.db.deliveries.update_one({"_id": d["_id"]}, {
                    "$set": {"status": status, "attempts": attempts, "last_error": repr(e)[:500],
                             "next_at": now() + timedelta(seconds=delay)},
                    "$push": {"history": {"at": now(), "result": "error", "error": repr(e)[:500]}}})
                log.warning("e-mail attempt failed", extra={"fields": {"delivery": d["_id"], "attempt": attempts, "error": repr(e)}})
                if status == "failed":
                    await audit(self.db, "notifications.EmailFailed", d["recipient_id"], {"delivery": d["_id"]})
                continue
            await self.db.deliveries.update_one({"_id": d["_id"]}, {
                "$set": {"status": "sent", "attempts": attempts, "sent_at": now()},
                "$push": {"history": {"at": now(), "result": "sent"}}})
            await audit(self.db, "notifications.EmailSent", d["recipient_id"], {"delivery": d["_id"], "to": d["to"]})
            sent += 1
        return sent

    async def run(self) -> None:
        while True:
            try:
                await self.send_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("mailer pass failed; retrying")
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
            except TimeoutError:
                pass
            self._wake.clear()

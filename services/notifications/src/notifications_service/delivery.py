"""Sends queued deliveries on their channel (e-mail, Web Push, messaging app) with retries and backoff, within a
rate per channel, and sends the daily digests when due; every attempt is recorded on its delivery.

A bounce-like answer (an e-mail recipient refused for good, a push subscription gone, a messaging account that
cannot be reached) fails the delivery at once and pauses that channel for the person (R-NOT-04).
"""
from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta

from pymongo.errors import DuplicateKeyError

from notifications_service import domain
from notifications_service.channels import Permanent, Transient, message_id
from notifications_service.store import audit, now, pause_channel

log = logging.getLogger("notifications.delivery")


class RateLimit:
    """At most `per_second` sends on one channel from this process (a token bucket with a one-second burst), so the
    mail server and push services are kept within what they accept."""

    def __init__(self, per_second: float):
        self.rate, self.tokens, self.last = per_second, per_second, time.monotonic()

    async def take(self) -> None:
        while True:
            t = time.monotonic()
            self.tokens = min(self.rate, self.tokens + (t - self.last) * self.rate)
            self.last = t
            if self.tokens >= 1:
                self.tokens -= 1
                return
            await asyncio.sleep((1 - self.tokens) / self.rate)


class Deliverer:
    def __init__(self, db, senders: dict, settings, poll_seconds: float = 1.0):
        self.db, self.senders, self.poll_seconds = db, senders, poll_seconds
        self.params = domain.Params(backoff_base_seconds=settings.smtp_backoff_seconds,
                                    max_attempts=settings.smtp_max_attempts)
        self.lease = settings.smtp_timeout * 3
        self.limits = {c: RateLimit(getattr(settings, f"notify_rate_{c}")) for c in ("email", "webpush", "line")}
        self._wake = asyncio.Event()

    def kick(self) -> None:
        self._wake.set()

    async def _claim(self, channel: str):
        """Takes one due delivery with a lease, so two replicas never send the same message at once."""
        t = now()
        for filt in ({"channel": channel, "status": "queued", "next_at": {"$lte": t}},
                     {"channel": channel, "status": "sending", "lease_until": {"$lte": t}}):
            doc = await self.db.deliveries.find_one_and_update(
                filt, {"$set": {"status": "sending", "lease_until": t + timedelta(seconds=self.lease)}})
            if doc:
                return doc
        return None

    async def send_due(self) -> int:
        await self.send_digests()
        sent = 0
        for channel, sender in self.senders.items():
            while (d := await self._claim(channel)) is not None:
                await self.limits[channel].take()
                sent += await self._attempt(sender, d)
        return sent

    async def _attempt(self, sender, d: dict) -> int:
        attempts = d["attempts"] + 1
        try:
            await sender.send(d)
        except Transient as e:
            status = domain.delivery_after_failure(attempts, self.params)
            delay = domain.backoff_seconds(attempts, self.params)
            await self._record(d, status, attempts, "error", str(e), next_at=now() + timedelta(seconds=delay))
            log.warning("delivery attempt failed", extra={"fields": {"delivery": d["_id"], "channel": d["channel"],
                                                                    "attempt": attempts, "error": str(e)}})
            if status == "failed":
                await audit(self.db, "notifications.DeliveryFailed", d["recipient_id"], {"delivery": d["_id"]})
            return 0
        except Permanent as e:
            await self._record(d, "failed", attempts, "refused", str(e))
            await audit(self.db, "notifications.DeliveryFailed", d["recipient_id"],
                        {"delivery": d["_id"], "reason": str(e)})
            if e.pause:
                await pause_channel(self.db, d, str(e))
            return 0
        await self._record(d, "sent", attempts, "sent", None, sent_at=now())
        await audit(self.db, "notifications.DeliverySent", d["recipient_id"], {"delivery": d["_id"],
                                                                              "channel": d["channel"]})
        return 1

    async def _record(self, d: dict, status: str, attempts: int, result: str, error: str | None, **fields) -> None:
        entry = {"at": now(), "result": result, "attempt": attempts, **({"error": error[:500]} if error else {})}
        await self.db.deliveries.update_one({"_id": d["_id"]}, {
            "$set": {"status": status, "attempts": attempts, **({"last_error": error[:500]} if error else {}), **fields},
            "$push": {"history": entry}})

    async def send_digests(self) -> int:
        """Each due digest becomes one e-mail delivery (id = the digest's, so two replicas make one), sent by the
        e-mail loop; the digest is closed after its delivery exists, so a crash in between loses nothing."""
        made = 0
        async for g in self.db.digests.find({"status": "open", "due_at": {"$lte": now()}}).limit(500):
            contact = await self.db.contacts.find_one({"_id": g["recipient_id"]}) or {}
            account = await self.db.accounts.find_one({"_id": g["recipient_id"]}, {"email": 1}) or {}
            to = contact.get("email") or account.get("email")
            if to and "email" not in (contact.get("paused") or {}):
                language = contact.get("language") or "ja"
                subject, body = domain.digest_text(g["items"], language)
                try:
                    await self.db.deliveries.insert_one({
                        "_id": f"digest:{g['_id']}", "message_id": message_id(f"digest:{g['_id']}"), "channel": "email", "recipient_id": g["recipient_id"], "to": to,
                        "subject": subject, "body": body, "language": language, "template": "daily_digest",
                        "category": "digest", "status": "queued", "attempts": 0, "next_at": now(),
                        "created_at": now(), "history": [], "items": len(g["items"])})
                    made += 1
                except DuplicateKeyError:
                    pass
            await self.db.digests.update_one({"_id": g["_id"]}, {"$set": {"status": "sent", "sent_at": now()}})
        return made

    async def run(self) -> None:
        while True:
            try:
                await self.send_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("delivery pass failed; retrying")
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
            except TimeoutError:
                pass
            self._wake.clear()


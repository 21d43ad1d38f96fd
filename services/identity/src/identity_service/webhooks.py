"""Signed webhooks to partner services when a consent changes (R-EXT-03), with retries and a delivery log.

A client registered with a `webhook_url` is told when a business grants or withdraws its consent. Identity reads its
own `identity.events` (ConsentGranted / ConsentWithdrawn), so a webhook follows every committed change and only
those, and records one delivery per event (its id is the event id: a redelivered event adds nothing). The
delivery loop POSTs each pending one; a non-2xx answer or no answer is retried with backoff (2 s doubling to
10 min, 16 attempts over more than an hour), and every attempt is logged on the delivery.

The body is a JWT signed with identity's current signing key (`application/jwt`, header `typ: webhook+jwt`), so the
receiver verifies it with the JWKS it already uses and no shared secret exists: `iss` identity, `aud` the client
id, `jti` the delivery id (dedupe on it), `iat`, and `event` {type, business_id, client_id, occurred_at}.
"""
from __future__ import annotations

import asyncio
import logging
import time

import httpx
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel
from pymongo.errors import DuplicateKeyError

from contracts import Envelope
from contracts.events.identity import ConsentGranted, ConsentWithdrawn
from servicekit.auth import Principal, require
from servicekit.problems import Problem

log = logging.getLogger("identity.webhooks")
router = APIRouter(tags=["clients"])
MAX_ATTEMPTS = 16  # 2 s doubling to 10 min: the last attempt comes > 1 h after the first
FIRST_DELAY, MAX_DELAY = 2.0, 600.0


def next_delay(attempts: int) -> float:
    """Seconds before attempt `attempts + 1` (pure): 2, 4, 8 … capped at 10 min."""
    return min(FIRST_DELAY * 2 ** max(attempts - 1, 0), MAX_DELAY)


def handlers(svc):
    async def on_consent(env: Envelope, e: ConsentGranted | ConsentWithdrawn) -> None:
        client = await svc.db.clients.find_one({"_id": e.client_id}, {"webhook_url": 1})
        if not client or not client.get("webhook_url"):
            return
        kind = "consent.withdrawn" if isinstance(e, ConsentWithdrawn) else "consent.granted"
        try:
            await svc.db.webhook_deliveries.insert_one({
                "_id": env.event_id, "client_id": e.client_id, "url": client["webhook_url"], "status": "pending",
                "event": {"type": kind, "business_id": e.business_id, "client_id": e.client_id,
                          "occurred_at": env.occurred_at.isoformat()},
                "attempts": [], "next_at": time.time(), "created_at": time.time()})
        except DuplicateKeyError:
            pass  # this event's delivery exists already

    return {ConsentGranted: on_consent, ConsentWithdrawn: on_consent}


def signed(issuer, delivery: dict) -> str:
    now = int(time.time())
    return issuer.keys.sign({"iss": issuer.issuer, "aud": delivery["client_id"], "iat": now, "jti": delivery["_id"],
                             "event": delivery["event"]}, {"typ": "webhook+jwt"})


async def deliver_due(svc, issuer, http: httpx.AsyncClient, now: float | None = None) -> int:
    """One pass: every pending delivery that is due is attempted once; returns how many were attempted."""
    now = time.time() if now is None else now
    due = await svc.db.webhook_deliveries.find({"status": "pending", "next_at": {"$lte": now}}).limit(50).to_list(50)
    for d in due:
        started = time.time()
        try:
            r = await http.post(d["url"], content=signed(issuer, d), headers={"content-type": "application/jwt"})
            outcome, status = ("delivered" if 200 <= r.status_code < 300 else "failed"), r.status_code
        except httpx.HTTPError as e:
            outcome, status = "failed", type(e).__name__
        attempt = {"at": started, "status": status, "ms": round((time.time() - started) * 1000)}
        n = len(d["attempts"]) + 1
        new_status = outcome if outcome == "delivered" else ("pending" if n < MAX_ATTEMPTS else "abandoned")
        await svc.db.webhook_deliveries.update_one({"_id": d["_id"]}, {
            "$push": {"attempts": attempt}, "$set": {"status": new_status, "next_at": time.time() + next_delay(n)}})
    return len(due)


def install(svc, issuer_of) -> None:
    svc.consume("identity.events", handlers(svc))

    @svc.background("webhooks")
    async def loop() -> None:
        async with httpx.AsyncClient(timeout=10) as http:
            while True:
                try:
                    await deliver_due(svc, issuer_of(), http)
                except Exception:  # a database outage: the next pass tries again
                    log.warning("webhook pass failed", exc_info=True)
                await asyncio.sleep(0.5)


class Delivery(BaseModel):
    id: str
    status: str
    event: dict
    attempts: list[dict]


@router.get("/clients/{client_id}/webhook-deliveries", response_model=list[Delivery],
            summary="A client's webhook delivery log, newest first: every attempt with its answer (operators)")
async def deliveries(client_id: str, request: Request, who: Principal = Depends(require("operator"))) -> list[Delivery]:
    db = request.app.state.service.db
    if await db.clients.find_one({"_id": client_id}, {"_id": 1}) is None:
        raise Problem(404, "Not found", f"No client {client_id}.")
    found = db.webhook_deliveries.find({"client_id": client_id}).sort("created_at", -1).limit(200)
    return [Delivery(id=d["_id"], status=d["status"], event=d["event"], attempts=d["attempts"]) async for d in found]

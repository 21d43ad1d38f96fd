"""HTTP routes of the channels and preferences (R-NOT-04): what each person wants to hear where and when, the Web
Push subscriptions of their browsers, their messaging-app account, one-click unsubscribe (RFC 8058), bounce reports
(RFC 3464) and the messaging app's webhook (signed, X-Line-Signature)."""
from __future__ import annotations

import base64
import binascii
import hashlib
import html
import json
from typing import Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field, field_validator

from notifications_service import domain, dsn
from notifications_service.store import audit, now
from servicekit.auth import Principal, require
from servicekit.problems import Problem

router = APIRouter()
ANYONE = ("business", "founder", "expert", "institution", "bureau", "agency", "operator")
Channel = Literal["email", "webpush", "line"]
Category = Literal["dispatch", "rating", "programme", "platform", "saved_search", "reminder", "community", "other"]
HHMM = r"^([01]\d|2[0-3]):[0-5]\d$"


def _db(request: Request):
    return request.app.state.service.db


class QuietHours(BaseModel):
    start: str = Field(pattern=HHMM, description="Japanese time, e.g. 22:00")
    end: str = Field(pattern=HHMM, description="Japanese time, e.g. 07:00 (may be on the next day)")


class PreferencesIn(BaseModel):
    channels: list[Channel] = Field(default=["email"], max_length=3, description="channels that are on")
    categories: dict[Category, list[Channel]] = Field(
        default_factory=dict, description="per category, the channels it may use (a category not named: every channel "
                                          "that is on; an empty list: inbox only)")
    quiet_hours: QuietHours | None = None
    digest: list[Category] = Field(default_factory=list, description="categories gathered into one e-mail a day")
    digest_hour: int = Field(default=8, ge=0, le=23, description="when the daily digest goes (Japanese time)")
    resume: list[Channel] = Field(default_factory=list, description="channels paused by a bounce to turn on again")


class PreferencesOut(BaseModel):
    channels: list[str]
    categories: dict[str, list[str]]
    quiet_hours: QuietHours | None
    digest: list[str]
    digest_hour: int
    paused: dict[str, str] = Field(description="channel -> why it is paused")
    email: str | None
    line_linked: bool
    push_subscriptions: int


async def _out(db, account: str) -> PreferencesOut:
    doc = await db.contacts.find_one({"_id": account}) or {}
    account_doc = await db.accounts.find_one({"_id": account}, {"email": 1}) or {}
    prefs = domain.Preferences.of(doc)
    return PreferencesOut(
        channels=sorted(prefs.channels), categories={k: sorted(v) for k, v in (prefs.categories or {}).items()},
        quiet_hours=QuietHours(**doc["quiet_hours"]) if doc.get("quiet_hours") else None,
        digest=sorted(prefs.digest), digest_hour=prefs.digest_hour,
        paused={c: v.get("reason", "") for c, v in (doc.get("paused") or {}).items()},
        email=doc.get("email") or account_doc.get("email"), line_linked=bool(doc.get("line_user_id")),
        push_subscriptions=await db.push_subscriptions.count_documents({"account_id": account}))


@router.get("/me/preferences", response_model=PreferencesOut, tags=["preferences"],
            summary="Your channels, categories, quiet hours, digest and paused channels (R-NOT-04)")
async def get_preferences(request: Request, p: Principal = Depends(require(*ANYONE))) -> PreferencesOut:
    return await _out(_db(request), p.subject)


@router.put("/me/preferences", response_model=PreferencesOut, tags=["preferences"],
            summary="Choose channels per category, quiet hours and the daily digest; resume a paused channel")
async def put_preferences(body: PreferencesIn, request: Request, p: Principal = Depends(require(*ANYONE))) -> PreferencesOut:
    db = _db(request)
    update: dict = {"$set": {"channels": body.channels, "categories": body.categories, "digest": body.digest,
                             "digest_hour": body.digest_hour,
                             "quiet_hours": body.quiet_hours.model_dump() if body.quiet_hours else None,
                             "email_enabled": "email" in body.channels}}
    if body.resume:
        update["$unset"] = {f"paused.{c}": "" for c in body.resume}
    await db.contacts.update_one({"_id": p.subject}, update, upsert=True)
    await audit(db, "notifications.PreferencesChanged", p.subject, body.model_dump(mode="json"), actor=p.subject)
    return await _out(db, p.subject)


async def _turn_on(db, account: str, channel: str, fields: dict | None = None) -> None:
    """Adds a channel to those that are on (the default, e-mail only, is written out the first time)."""
    on = domain.Preferences.of(await db.contacts.find_one({"_id": account}) or {}).channels | {channel}
    await db.contacts.update_one({"_id": account}, {"$set": {"channels": sorted(on), **(fields or {})}}, upsert=True)


# --- Web Push -------------------------------------------------------------------------------------------------------
@router.get("/webpush/key", tags=["channels"], summary="The VAPID public key (applicationServerKey) to subscribe with")
async def webpush_key(request: Request, p: Principal = Depends(require(*ANYONE))) -> dict:
    return {"public_key": request.app.state.vapid_public_key}


def _b64(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


class PushKeys(BaseModel):
    p256dh: str = Field(max_length=200, description="the browser's P-256 public key (base64url, 65 bytes)")
    auth: str = Field(max_length=100, description="the authentication secret (base64url, 16 bytes)")

    @field_validator("p256dh")
    @classmethod
    def _point(cls, v: str) -> str:
        try:
            raw = _b64(v)
        except (ValueError, binascii.Error):
            raise ValueError("p256dh is not base64url") from None
        if len(raw) != 65 or raw[0] != 4:
            raise ValueError("p256dh must be an uncompressed P-256 point (65 bytes)")
        return v

    @field_validator("auth")
    @classmethod
    def _secret(cls, v: str) -> str:
        try:
            raw = _b64(v)
        except (ValueError, binascii.Error):
            raise ValueError("auth is not base64url") from None
        if len(raw) != 16:
            raise ValueError("auth must be 16 bytes")
        return v


class PushSubscriptionIn(BaseModel):
    """What the browser's PushSubscription.toJSON() gives."""

    endpoint: str = Field(pattern=r"^https?://", max_length=2000)
    keys: PushKeys


@router.post("/me/push-subscriptions", status_code=201, tags=["channels"],
             summary="Register a browser's Web Push subscription (RFC 8030); Web Push is turned on")
async def subscribe(body: PushSubscriptionIn, request: Request, p: Principal = Depends(require(*ANYONE))) -> dict:
    db = _db(request)
    sid = hashlib.sha256(body.endpoint.encode()).hexdigest()[:24]
    await db.push_subscriptions.update_one({"_id": sid}, {"$set": {
        "account_id": p.subject, "endpoint": body.endpoint, "keys": body.keys.model_dump(), "at": now()}}, upsert=True)
    await _turn_on(db, p.subject, "webpush")
    await audit(db, "notifications.PushSubscribed", p.subject, {"subscription_id": sid}, actor=p.subject)
    return {"subscription_id": sid}


@router.delete("/me/push-subscriptions/{subscription_id}", status_code=204, tags=["channels"],
               summary="Remove one of your Web Push subscriptions")
async def unsubscribe_push(subscription_id: str, request: Request, p: Principal = Depends(require(*ANYONE))) -> Response:
    db = _db(request)
    res = await db.push_subscriptions.delete_one({"_id": subscription_id, "account_id": p.subject})
    if res.deleted_count != 1:
        raise Problem(404, "No such subscription", f"You have no push subscription {subscription_id}.")
    await audit(db, "notifications.PushUnsubscribed", p.subject, {"subscription_id": subscription_id}, actor=p.subject)
    return Response(status_code=204)


# --- the messaging app (LINE-shaped) ------------------------------------------------------------------------------
class LineIn(BaseModel):
    user_id: str = Field(pattern=r"^U[0-9a-f]{32}$", description="your user id in the messaging app (from our bot)")


@router.put("/me/line", tags=["channels"], summary="Link your messaging-app account; the channel is turned on")
async def link_line(body: LineIn, request: Request, p: Principal = Depends(require(*ANYONE))) -> dict:
    db = _db(request)
    await _turn_on(db, p.subject, "line", {"line_user_id": body.user_id})
    await db.contacts.update_one({"_id": p.subject}, {"$unset": {"paused.line": ""}})
    await audit(db, "notifications.LineLinked", p.subject, {}, actor=p.subject)
    return {"linked": True}


@router.delete("/me/line", status_code=204, tags=["channels"], summary="Unlink your messaging-app account")
async def unlink_line(request: Request, p: Principal = Depends(require(*ANYONE))) -> Response:
    db = _db(request)
    await db.contacts.update_one({"_id": p.subject}, {"$unset": {"line_user_id": ""}, "$pullAll": {"channels": ["line"]}})
    await audit(db, "notifications.LineUnlinked", p.subject, {}, actor=p.subject)
    return Response(status_code=204)


@router.post("/line/webhook", tags=["channels"],
             summary="The messaging app's webhook (signed with X-Line-Signature): an unfollow pauses the channel")
async def line_webhook(request: Request) -> dict:
    raw = await request.body()
    secret = request.app.state.settings.line_channel_secret
    if not secret or not domain.line_signature_ok(secret, raw, request.headers.get("x-line-signature", "")):
        raise Problem(401, "Bad signature", "X-Line-Signature does not match the body.")
    try:
        events = json.loads(raw).get("events") or []
    except (ValueError, AttributeError):
        raise Problem(400, "Not JSON", "The webhook body is not a JSON object.") from None
    db = _db(request)
    for e in events[:100]:
        user = ((e or {}).get("source") or {}).get("userId")
        if not user or e.get("type") not in ("follow", "unfollow"):
            continue
        update = ({"$set": {"paused.line": {"reason": "unfollowed the bot", "at": now()}}} if e["type"] == "unfollow"
                  else {"$unset": {"paused.line": ""}})
        res = await db.contacts.update_one({"line_user_id": user}, update)
        if res.matched_count:
            await audit(db, f"notifications.Line{e['type'].capitalize()}", user, {}, actor="line")
    return {}


# --- one-click unsubscribe (RFC 8058) -----------------------------------------------------------------------------
def _token(request: Request, token: str) -> tuple[str, str]:
    found = domain.read_unsubscribe_token(request.app.state.unsubscribe_secret, token)
    if found is None:
        raise Problem(404, "Unknown link", "This unsubscribe link is not valid.")
    return found


@router.get("/unsubscribe/{token}", response_class=HTMLResponse, tags=["preferences"],
            summary="The page an unsubscribe link opens: one button (a GET never unsubscribes, RFC 8058)")
async def unsubscribe_page(token: str, request: Request) -> HTMLResponse:
    _, category = _token(request, token)
    return HTMLResponse(f"""<!doctype html><html lang="ja"><meta charset="utf-8"><title>配信停止</title>
<form method="post"><p>「{html.escape(category)}」のお知らせのメール配信を停止します。 / Stop e-mails of this kind.</p>
<input type="hidden" name="List-Unsubscribe" value="One-Click"><button>配信停止 / Unsubscribe</button></form></html>""")


@router.post("/unsubscribe/{token}", tags=["preferences"],
             summary="One-click unsubscribe (RFC 8058): e-mails of the link's category stop; the inbox keeps them")
async def unsubscribe(token: str, request: Request) -> dict:
    account, category = _token(request, token)
    db = _db(request)
    doc = await db.contacts.find_one({"_id": account}) or {}
    prefs = domain.Preferences.of(doc)
    current = (prefs.categories or {}).get(category, prefs.channels)
    await db.contacts.update_one({"_id": account}, {"$set": {f"categories.{category}": sorted(set(current) - {"email"})}},
                                 upsert=True)
    await audit(db, "notifications.Unsubscribed", account, {"category": category, "channel": "email"},
                actor="list-unsubscribe")
    return {"unsubscribed": category}


# --- bounces (RFC 3464) -------------------------------------------------------------------------------------------
class BounceOut(BaseModel):
    address: str
    action: str
    status: str
    permanent: bool
    delivery_id: str | None
    paused_accounts: list[str]


@router.post("/bounces", response_model=list[BounceOut], tags=["deliveries"],
             summary="A delivery status notification (the raw DSN, RFC 3464) from the mail server: a hard bounce "
                     "pauses e-mail for whoever uses that address")
async def bounce(request: Request, p: Principal = Depends(require("operator"))) -> list[BounceOut]:
    raw = await request.body()
    if len(raw) > 1_000_000:
        raise Problem(413, "Too large", "A bounce report is at most 1 MB.")
    found = dsn.parse(raw)
    if not found:
        raise Problem(422, "Not a delivery status notification",
                      "Send the raw message: multipart/report; report-type=delivery-status (RFC 3464).")
    db, out = _db(request), []
    for b in found:
        delivery = await db.deliveries.find_one({"message_id": b.message_id}, {"_id": 1}) if b.message_id else None
        if delivery:
            await db.deliveries.update_one({"_id": delivery["_id"]}, {
                "$set": {"status": "bounced" if b.permanent else "delayed", "bounce": b.status},
                "$push": {"history": {"at": now(), "result": "bounced" if b.permanent else "delayed",
                                      "error": f"{b.status} {b.diagnostic}"[:500]}}})
        paused = []
        if b.permanent:
            ids = {d["_id"] async for d in db.contacts.find({"email": b.address}, {"_id": 1})}
            ids |= {d["_id"] async for d in db.accounts.find({"email": b.address}, {"_id": 1})}
            for account in sorted(ids):
                await db.contacts.update_one({"_id": account}, {"$set": {"paused.email": {
                    "reason": f"bounced: {b.status} {b.diagnostic}"[:300], "at": now(), "to": b.address}}}, upsert=True)
                await audit(db, "notifications.ChannelPaused", account, {"channel": "email", "status": b.status},
                            actor=p.subject)
                paused.append(account)
        out.append(BounceOut(address=b.address, action=b.action, status=b.status, permanent=b.permanent,
                             delivery_id=delivery["_id"] if delivery else None, paused_accounts=paused))
    return out

"""Channels and preferences (R-NOT-04) on the running notifications service, real Kafka, MongoDB and SMTP:

- Web Push to a local push service that checks the VAPID signature (RFC 8292) and decrypts the aes128gcm payload
  (RFC 8291) with the browser's keys; a subscription the push service calls gone (410) is dropped;
- a local stub of the messaging API (LINE-shaped push: path, Bearer channel token, JSON shape, retry key) and its
  signed webhook (an unfollow pauses the channel; a wrong signature is refused);
- per-category opt-in, quiet hours, daily digest, one-click unsubscribe (RFC 8058 headers and endpoint), a bounce
  (RFC 3464 DSN) pausing e-mail until the person gives the address again, delivery status per attempt.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import threading
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import http_ece
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pymongo import AsyncMongoClient

from contracts.events.dispatch import DispatchStatusChanged
from contracts.events.identity import AccountRegistered, BindingChanged
from contracts.events.notifications import Notify
from tests.integration.test_notifications_service import _async, auth, publish
from tests.support import eventually, free_port

LINE_TOKEN, LINE_SECRET = "channel-token-" + "x" * 20, "channel-secret"
LINE_USER = "U" + "0123456789abcdef" * 2


class Receiver:
    """A local push service and messaging API in one HTTP server: records what it gets, answers per path."""

    def __init__(self):
        self.got: list[dict] = []
        self.status = {"/push/gone": 410}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver.got.append({"path": self.path, "headers": dict(self.headers.items()), "body": body})
                code = receiver.status.get(self.path, 200 if self.path.startswith("/v2/") else 201)
                self.send_response(code)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def at(self, path: str) -> list[dict]:
        return [g for g in self.got if g["path"] == path]


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()


def browser_keys() -> tuple[ec.EllipticCurvePrivateKey, dict]:
    key = ec.generate_private_key(ec.SECP256R1())
    point = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    auth_secret = os.urandom(16)
    b64 = lambda b: base64.urlsafe_b64encode(b).decode().rstrip("=")  # noqa: E731
    return key, {"p256dh": b64(point), "auth": b64(auth_secret), "_auth": auth_secret}


def b64d(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def dsn_for(address: str, message_id: str) -> bytes:
    return f"""From: MAILER-DAEMON@mx.example.jp
To: no-reply@smeportal.example.jp
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

Your message could not be delivered.

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.jp

Final-Recipient: rfc822; {address}
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 User unknown

--B
Content-Type: text/rfc822-headers

Message-ID: {message_id}
To: {address}

--B--
""".encode()


def status_changed(u: str, n: int, business_id: str) -> DispatchStatusChanged:
    return DispatchStatusChanged(dispatch_id=f"d-{u}-{n}", status="approved", route="B", fiscal_year=2026,
                                 business_id=business_id, expert_id=f"exp-{u}")


async def test_R_NOT_04_web_push_and_messaging_app_reach_the_person_and_gone_ends_the_channel(infra, ns, services, smtp,
                                                                                              receiver):
    sink, port = smtp
    svc = services("notifications", SMTP_HOST="127.0.0.1", SMTP_PORT=str(port), PORTAL_URL="https://portal.example.jp",
                   LINE_API_BASE=receiver.url, LINE_CHANNEL_TOKEN=LINE_TOKEN, LINE_CHANNEL_SECRET=LINE_SECRET,
                   SMTP_BACKOFF_SECONDS="0.2")
    u = uuid.uuid4().hex[:6]
    person, biz = f"acc-{u}", f"biz-{u}"
    me = auth(person, "business")
    await publish(infra, ns, AccountRegistered(account_id=person, kind="business", real_name="x",
                                               email=f"{person}@example.jp"),
                  BindingChanged(business_id=biz, account_id=person, role="prime"), producer="identity")
    async with httpx.AsyncClient(base_url=svc.url) as http:
        vapid_key = (await http.get("/webpush/key", headers=me)).json()["public_key"]
        key, keys = browser_keys()
        r = await http.post("/me/push-subscriptions", headers=me, json={
            "endpoint": f"{receiver.url}/push/ok", "keys": {"p256dh": keys["p256dh"], "auth": keys["p256dh"][:5]}})
        assert r.status_code == 422  # not a 16-byte secret
        sub = await http.post("/me/push-subscriptions", headers=me, json={
            "endpoint": f"{receiver.url}/push/ok", "keys": {"p256dh": keys["p256dh"], "auth": keys["auth"]}})
        assert sub.status_code == 201, sub.text
        _, gone_keys = browser_keys()
        await http.post("/me/push-subscriptions", headers=me, json={
            "endpoint": f"{receiver.url}/push/gone", "keys": {"p256dh": gone_keys["p256dh"], "auth": gone_keys["auth"]}})
        assert (await http.put("/me/line", headers=me, json={"user_id": "not-a-line-id"})).status_code == 422
        assert (await http.put("/me/line", headers=me, json={"user_id": LINE_USER})).status_code == 200
        prefs = (await http.get("/me/preferences", headers=me)).json()
        assert prefs["channels"] == ["email", "line", "webpush"] and prefs["push_subscriptions"] == 2

        parties = AsyncMongoClient(infra.mongo)[ns.db("notifications")].parties
        await eventually(lambda: parties.find_one({"_id": f"business:{biz}", "account_ids": person}), timeout=30)
        await publish(infra, ns, status_changed(u, 1, biz), producer="dispatch")

        # --- Web Push: signed by the service's VAPID key for this push service, payload readable only by the browser
        pushed = (await eventually(lambda: _async(receiver.at("/push/ok")), timeout=30))[0]
        h = {k.lower(): v for k, v in pushed["headers"].items()}
        assert h["content-encoding"] == "aes128gcm" and int(h["ttl"]) > 0
        scheme, params = h["authorization"].split(" ", 1)
        fields = dict(p.strip().split("=", 1) for p in params.split(","))
        assert scheme == "vapid" and fields["k"] == vapid_key
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64d(fields["k"]))
        claims = jwt.decode(fields["t"], public, algorithms=["ES256"], audience=receiver.url)
        assert claims["sub"].startswith("mailto:") and claims["exp"] > datetime.now(UTC).timestamp()
        plain = http_ece.decrypt(pushed["body"], private_key=key, auth_secret=keys["_auth"], version="aes128gcm")
        payload = json.loads(plain)
        assert "派遣決定" in payload["title"] and payload["url"] == f"https://portal.example.jp/api/dispatch/requests/d-{u}-1"

        # --- the messaging API stub: the request has LINE's push shape
        line = (await eventually(lambda: _async(receiver.at("/v2/bot/message/push")), timeout=30))[0]
        lh = {k.lower(): v for k, v in line["headers"].items()}
        assert lh["authorization"] == f"Bearer {LINE_TOKEN}" and lh["content-type"].startswith("application/json")
        assert uuid.UUID(lh["x-line-retry-key"])
        body = json.loads(line["body"])
        assert body["to"] == LINE_USER and body["messages"][0]["type"] == "text" and "派遣決定" in body["messages"][0]["text"]
        await eventually(lambda: _async(sink.to(f"{person}@example.jp")), timeout=30)

        # --- delivery status per channel and attempt; the gone subscription was dropped
        async def all_done():
            ds = (await http.get("/deliveries", headers=me)).json()
            return ds if len(ds) == 4 and all(d["status"] in ("sent", "failed") for d in ds) else None
        ds = {(d["channel"], d["to"].rsplit("/", 1)[-1]): d for d in await eventually(all_done, timeout=30)}
        assert ds[("webpush", "ok")]["status"] == "sent" and ds[("webpush", "ok")]["history"][0]["result"] == "sent"
        assert ds[("webpush", "gone")]["status"] == "failed" and "410" in ds[("webpush", "gone")]["last_error"]
        assert ds[("line", LINE_USER)]["status"] == ds[("email", f"{person}@example.jp")]["status"] == "sent"
        assert (await http.get("/me/preferences", headers=me)).json()["push_subscriptions"] == 1

        # --- the webhook: a wrong signature is refused; a signed unfollow pauses the messaging channel
        hook = json.dumps({"destination": "Ubot", "events": [{"type": "unfollow", "source": {"type": "user",
                                                                                             "userId": LINE_USER}}]}).encode()
        assert (await http.post("/line/webhook", content=hook, headers={"x-line-signature": "AAAA"})).status_code == 401
        sig = base64.b64encode(hmac.new(LINE_SECRET.encode(), hook, hashlib.sha256).digest()).decode()
        assert (await http.post("/line/webhook", content=hook, headers={"x-line-signature": sig})).status_code == 200
        assert "line" in (await http.get("/me/preferences", headers=me)).json()["paused"]
        await publish(infra, ns, status_changed(u, 2, biz), producer="dispatch")
        await eventually(lambda: _async([g for g in receiver.at("/push/ok") if g is not pushed]), timeout=30)
        ds = (await http.get("/deliveries", params={"channel": "line"}, headers=me)).json()
        assert len(ds) == 1  # nothing more on the paused channel


async def test_R_NOT_04_opt_in_quiet_hours_digest_unsubscribe_and_bounce(infra, ns, services, smtp):
    sink, port = smtp
    svc = services("notifications", SMTP_HOST="127.0.0.1", SMTP_PORT=str(port), PORTAL_URL="https://portal.example.jp",
                   SMTP_BACKOFF_SECONDS="0.2")
    u = uuid.uuid4().hex[:6]
    db = AsyncMongoClient(infra.mongo)[ns.db("notifications")]
    people = {n: (f"{n}-{u}", f"{n}-{u}@example.jp") for n in ("optout", "quiet", "digest", "unsub", "bounce")}
    await publish(infra, ns, *[AccountRegistered(account_id=a, kind="business", real_name="x", email=e)
                               for a, e in people.values()], producer="identity")

    def notice(n: int, who: str, template: str = "programme_recommended") -> Notify:
        return Notify(notification_id=f"n-{u}-{n}-{who}", recipient_id=people[who][0], template=template,
                      params={"title": f"施策{n}", "business_id": f"biz-{u}"})

    async def inbox(who: str) -> list[dict]:
        return (await http.get("/inbox", headers=auth(people[who][0], "business"))).json()

    async with httpx.AsyncClient(base_url=svc.url) as http:
        async def known():
            return await db.accounts.count_documents({"_id": {"$in": [a for a, _ in people.values()]}}) == 5
        await eventually(known, timeout=30)
        h = {who: auth(a, "business") for who, (a, _) in people.items()}
        now_jst = datetime.now(UTC) + timedelta(hours=9)
        quiet = {"start": (now_jst - timedelta(hours=1)).strftime("%H:%M"),
                 "end": (now_jst + timedelta(hours=2)).strftime("%H:%M")}
        for who, body in (("optout", {"channels": ["email"], "categories": {"programme": []}}),
                          ("quiet", {"channels": ["email"], "quiet_hours": quiet}),
                          ("digest", {"channels": ["email"], "digest": ["programme"], "digest_hour": 8})):
            r = await http.put("/me/preferences", headers=h[who], json=body)
            assert r.status_code == 200, r.text
        r = await http.put("/me/preferences", headers=h["quiet"], json={"quiet_hours": {"start": "25:00", "end": "07:00"}})
        assert r.status_code == 422

        await publish(infra, ns, *[notice(1, who) for who in people], notice(2, "digest"),
                      notice(3, "optout", "dispatch_status"), producer="recommend")
        for who in people:
            await eventually(lambda: inbox(who), timeout=30)  # the inbox has every message, whatever the channels

        # per-category opt-in: programme notices stay in the inbox only; other categories still mail
        mails = await eventually(lambda: _async(sink.to(people["optout"][1])), timeout=30)
        assert len(mails) == 1 and "施策" not in mails[0]["Subject"]
        # quiet hours: queued until they end, not sent
        ds = (await http.get("/deliveries", headers=h["quiet"])).json()
        assert ds[0]["status"] == "queued" and datetime.fromisoformat(ds[0]["next_at"]).replace(tzinfo=UTC) > \
            datetime.now(UTC) + timedelta(minutes=100)
        assert sink.to(people["quiet"][1]) == []
        # digest: nothing on its own; when the digest is due, one e-mail with both notices
        assert (await http.get("/deliveries", headers=h["digest"])).json() == []
        await eventually(lambda: db.digests.find_one({"recipient_id": people["digest"][0], "items.1": {"$exists": True}}),
                         timeout=30)
        await db.digests.update_many({"recipient_id": people["digest"][0]}, {"$set": {"due_at": datetime.now(UTC)}})
        digest = (await eventually(lambda: _async(sink.to(people["digest"][1])), timeout=30))
        assert len(digest) == 1 and "2件" in digest[0]["Subject"]
        assert "施策1" in digest[0].get_content() and "施策2" in digest[0].get_content()

        # one-click unsubscribe (RFC 8058): the headers, then a POST without login stops that category's e-mails
        mail = (await eventually(lambda: _async(sink.to(people["unsub"][1])), timeout=30))[0]
        assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        link = mail["List-Unsubscribe"].strip("<>")
        assert link.startswith("https://portal.example.jp/api/notifications/unsubscribe/")
        path = urlsplit(link).path[len("/api/notifications"):]
        assert (await http.get(path)).status_code == 200  # a page with a button; a GET changes nothing
        assert (await http.post(path[:-3] + "AAA", data={"List-Unsubscribe": "One-Click"})).status_code == 404
        r = await http.post(path, data={"List-Unsubscribe": "One-Click"})
        assert r.status_code == 200 and r.json() == {"unsubscribed": "programme"}
        assert (await http.get("/me/preferences", headers=h["unsub"])).json()["categories"]["programme"] == []
        await publish(infra, ns, notice(4, "unsub"), notice(5, "unsub", "dispatch_status"), producer="recommend")
        await eventually(lambda: _async(len(sink.to(people["unsub"][1])) == 2), timeout=30)
        assert [m for m in sink.to(people["unsub"][1]) if "施策4" in m["Subject"]] == []
        assert len(await inbox("unsub")) == 3

        # a bounce (DSN) pauses e-mail for whoever uses the address and marks the delivery; a new address resumes
        sent = (await eventually(lambda: _async(sink.to(people["bounce"][1])), timeout=30))[0]
        report = dsn_for(people["bounce"][1], sent["Message-ID"])
        assert (await http.post("/bounces", content=report, headers=h["bounce"])).status_code == 403
        assert (await http.post("/bounces", content=b"hello", headers=auth("op", "operator"))).status_code == 422
        r = await http.post("/bounces", content=report, headers={**auth("op", "operator"),
                                                                 "content-type": "message/rfc822"})
        assert r.status_code == 200, r.text
        assert r.json()[0]["permanent"] and r.json()[0]["paused_accounts"] == [people["bounce"][0]]
        d = (await http.get("/deliveries", headers=h["bounce"])).json()[0]
        assert d["status"] == "bounced" and [x["result"] for x in d["history"]] == ["sent", "bounced"]
        assert "email" in (await http.get("/me/preferences", headers=h["bounce"])).json()["paused"]
        await publish(infra, ns, notice(6, "bounce"), producer="recommend")

        async def second_in_inbox():
            return len(await inbox("bounce")) == 2
        await eventually(second_in_inbox, timeout=30)
        assert len((await http.get("/deliveries", headers=h["bounce"])).json()) == 1  # nothing queued while paused
        r = await http.put("/me/contact", headers=h["bounce"], json={"email": f"new-{u}@example.jp"})
        assert r.status_code == 200 and (await http.get("/me/preferences", headers=h["bounce"])).json()["paused"] == {}
        await publish(infra, ns, notice(7, "bounce"), producer="recommend")
        await eventually(lambda: _async(sink.to(f"new-{u}@example.jp")), timeout=30)

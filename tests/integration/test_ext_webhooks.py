"""R-EXT-03 signed webhooks and R-EXT-04 the client's own audit export, on real Kafka + MongoDB: a business withdraws
its consent → identity POSTs a JWT signed with its published key to the partner's local receiver, which fails
twice and then accepts; the delivery log shows the three attempts. The partner exports the audit of its calls."""
from __future__ import annotations

import csv
import io
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
import jwt

from tests.integration.identity_support import OPERATOR, OWNER, PROFILE, client_token, prove_prime, start_identity
from tests.support import TEST_ISSUER, eventually, free_port


class Receiver(BaseHTTPRequestHandler):
    answers: list[int] = []
    received: list[tuple[str, bytes]] = []

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["content-length"]))
        Receiver.received.append((self.headers["content-type"], body))
        withdrawn = jwt.decode(body, options={"verify_signature": False})["event"]["type"] == "consent.withdrawn"
        self.send_response(Receiver.answers.pop(0) if withdrawn and Receiver.answers else 204)
        self.end_headers()

    def log_message(self, *args):
        pass


async def test_R_EXT_03_consent_withdrawn_signed_webhook_delivered_verified_and_retried(services):
    Receiver.answers, Receiver.received = [500, 503], []  # for the withdrawal: two failures, then 204
    port = free_port()
    server = HTTPServer(("127.0.0.1", port), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    identity = start_identity(services)
    try:
        async with httpx.AsyncClient(base_url=identity.url, timeout=15) as http:
            r = await http.post("/clients", headers=OPERATOR, json={
                "name": "会計クラウド", "confidential": True, "scopes": ["prefill:read", "audit:read"],
                "grant_types": ["client_credentials"], "webhook_url": f"http://127.0.0.1:{port}/hooks/smeportal"})
            assert r.status_code == 201, r.text
            partner = r.json()
            bid = await prove_prime(http, OWNER)
            assert (await http.post(f"/businesses/{bid}/consents", headers=OWNER,
                                    json={"client_id": partner["client_id"]})).status_code == 201
            tok = await client_token(http, partner)
            assert (await http.get(f"/prefill/{PROFILE['corporate_number']}",
                                   headers={"authorization": f"Bearer {tok}"})).status_code == 200
            assert (await http.delete(f"/businesses/{bid}/consents/{partner['client_id']}",
                                      headers=OWNER)).status_code == 204
            assert (await http.get(f"/prefill/{PROFILE['corporate_number']}",
                                   headers={"authorization": f"Bearer {tok}"})).status_code == 403

            async def withdrawn_accepted():
                log = (await http.get(f"/clients/{partner['client_id']}/webhook-deliveries", headers=OPERATOR)).json()
                done = [d for d in log if d["event"]["type"] == "consent.withdrawn" and d["status"] == "delivered"]
                return done[0] if done else None
            delivery = await eventually(withdrawn_accepted, timeout=30, interval=0.5)
            assert [a["status"] for a in delivery["attempts"]] == [500, 503, 204]

            # the receiver verifies each body with identity's published keys; all three are the same delivery
            jwks = (await http.get("/jwks.json")).json()
            bodies = [b for t, b in Receiver.received
                      if jwt.decode(b, options={"verify_signature": False})["event"]["type"] == "consent.withdrawn"]
            assert len(bodies) == 3 and all(t == "application/jwt" for t, _ in Receiver.received)
            for body in bodies:
                header = jwt.get_unverified_header(body)
                key = jwt.PyJWKSet.from_dict(jwks)[header["kid"]].key
                claims = jwt.decode(body, key, algorithms=["RS256"], audience=partner["client_id"], issuer=TEST_ISSUER)
                assert header["typ"] == "webhook+jwt" and claims["jti"] == delivery["id"]
                assert claims["event"] == {**delivery["event"], "business_id": bid, "client_id": partner["client_id"]}
            forged = jwt.encode({"event": {}}, "x" * 32, algorithm="HS256")
            try:
                jwt.decode(forged, key, algorithms=["RS256"], audience=partner["client_id"])
                raise AssertionError("a body not signed by identity verified")
            except jwt.InvalidTokenError:
                pass
            # the grant was announced too, delivered at once
            log = (await http.get(f"/clients/{partner['client_id']}/webhook-deliveries", headers=OPERATOR)).json()
            assert {d["event"]["type"] for d in log} == {"consent.granted", "consent.withdrawn"}

            # R-EXT-04: the client's export of its own calls (a served read, then one refused after the withdrawal)
            audit_tok = await client_token(http, partner, scope="audit:read")
            r = await http.get("/clients/me/audit", params={"format": "csv"}, headers={"authorization": f"Bearer {audit_tok}"})
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
            rows = list(csv.DictReader(io.StringIO(r.text)))
            assert [(row["action"], row["key"]) for row in rows][:2] == [("identity.PrefillRefused", bid), ("identity.PrefillRead", bid)]
            # without the scope, and for anyone but a client: refused
            narrow = await client_token(http, partner, scope="prefill:read")
            r = await http.get("/clients/me/audit", headers={"authorization": f"Bearer {narrow}"})
            assert r.status_code == 403
            assert (await http.get("/clients/me/audit", headers=OWNER)).status_code == 403
    finally:
        server.shutdown()

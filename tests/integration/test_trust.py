"""Trust (R-ID-07..09): the business is a proven party, tokens say whom an account acts for, third-party tokens
reach only their scopes, and revocation works everywhere within seconds — on real Kafka, MongoDB and services."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import secrets
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from pymongo import AsyncMongoClient
from pypdf import PdfReader

from contracts import Envelope
from servicekit import registry
from tests.integration.identity_support import (OPERATOR, PASSWORD, PROFILE, REDIRECT, bearer, letter_code,
                                                mail_env, password_login, portal_client, signup, start_identity)
from tests.support import SERVICES, eventually, read_topic, service_port, token



@pytest.fixture
def identity(services):
    return start_identity(services)


def as_account(account: dict, roles=("business",)) -> dict:
    return bearer(account["account_id"], list(roles))


async def _letter_text(http: httpx.AsyncClient, letter_id: str) -> str:
    pdf = await http.get(f"/letters/{letter_id}.pdf", headers=OPERATOR)
    return PdfReader(io.BytesIO(pdf.content)).pages[0].extract_text()


async def test_R_ID_07_prime_account_is_proven_by_the_code_in_the_posted_letter(identity, infra, ns):
    async with httpx.AsyncClient(base_url=identity.url, timeout=15) as http:
        rep_account = await signup(http, "rep@kumamoto.example.jp")
        rep = as_account(rep_account)
        other = as_account(await signup(http, "intruder@example.jp"))
        r = await http.post("/businesses", headers=rep, json=PROFILE)
        assert r.status_code == 201 and r.json()["status"] == "awaiting_proof" and r.json()["your_role"] is None
        bid = r.json()["business_id"]
        # one application at a time; the intruder can neither apply over it nor prove it
        assert (await http.post("/businesses", headers=other, json=PROFILE)).status_code == 409
        letter_id, code = await letter_code(http, bid)
        assert PROFILE["address"] in (await _letter_text(http, letter_id))  # addressed to the registered head office
        assert (await http.post(f"/businesses/{bid}/prime-proof", headers=other, json={"code": code})).status_code == 404
        assert (await http.patch(f"/businesses/{bid}", headers=rep, json={"employees": 1})).status_code == 409

        # three wrong codes lock the claim: even the right code is refused afterwards
        for left in (2, 1, 0):
            r = await http.post(f"/businesses/{bid}/prime-proof", headers=rep, json={"code": "00000000"})
            assert r.status_code == 422 and r.json()["tries_left"] == left, r.text
        r = await http.post(f"/businesses/{bid}/prime-proof", headers=rep, json={"code": code})
        assert r.status_code == 410 and "register the business again" in r.json()["detail"]

        # a new letter; an expired code fails
        assert (await http.post("/businesses", headers=rep, json=PROFILE)).status_code == 201
        _, code = await letter_code(http, bid)
        db = AsyncMongoClient(infra.mongo)[ns.db("identity")]
        await db.businesses.update_one({"_id": bid}, {"$set": {"prime_claim.expires_at": time.time() - 1}})
        r = await http.post(f"/businesses/{bid}/prime-proof", headers=rep, json={"code": code})
        assert r.status_code == 410 and "expired" in r.json()["title"]

        # the third letter's code, entered in time, makes the applicant the prime account
        assert (await http.post("/businesses", headers=rep, json=PROFILE)).status_code == 201
        letter_id, code = await letter_code(http, bid)
        r = await http.post(f"/businesses/{bid}/prime-proof", headers=rep, json={"code": code})
        assert r.status_code == 200 and r.json()["role"] == "prime"
        mine = (await http.get("/businesses", headers=rep)).json()
        assert [(b["business_id"], b["status"], b["your_role"]) for b in mine] == [(bid, "active", "prime")]
        assert (await http.post("/businesses", headers=other, json=PROFILE)).status_code == 409  # one prime
        # once posted, the PDF with the code is gone
        assert (await http.post(f"/letters/{letter_id}/posted", headers=OPERATOR)).status_code == 204
        assert (await http.get(f"/letters/{letter_id}.pdf", headers=OPERATOR)).status_code == 404

        # members: invited by the prime, accepted by the invitee, removed by the prime
        member = await signup(http, "clerk@kumamoto.example.jp")
        assert (await http.post(f"/businesses/{bid}/invitations", headers=other,
                                json={"email": "clerk@kumamoto.example.jp"})).status_code == 404
        r = await http.post(f"/businesses/{bid}/invitations", headers=rep, json={"email": "clerk@kumamoto.example.jp"})
        assert r.json()["invited"] == ["clerk@kumamoto.example.jp"]
        assert (await http.post(f"/businesses/{bid}/invitations/accept", headers=other)).status_code == 404
        r = await http.post(f"/businesses/{bid}/invitations/accept", headers=as_account(member))
        assert r.status_code == 200 and r.json()["member_ids"] == [member["account_id"]]
        assert (await http.get(f"/businesses/{bid}", headers=as_account(member))).json()["your_role"] == "member"
        r = await http.delete(f"/businesses/{bid}/members/{member['account_id']}", headers=rep)
        assert r.status_code == 200 and r.json()["member_ids"] == []
        assert (await http.get(f"/businesses/{bid}", headers=as_account(member))).status_code == 404

    recs = await read_topic(infra.kafka, ns.topic("identity.events"), min_count=5, timeout=15)
    envs = [Envelope.model_validate_json(r.value) for r in recs]
    bindings = [(e.payload["account_id"], e.payload["role"]) for e in envs if e.event_type == "identity.BindingChanged"]
    assert bindings == [(rep_account["account_id"], "prime"), (member["account_id"], "member"),
                        (member["account_id"], None)]
    assert [e.payload["business_id"] for e in envs if e.event_type == "identity.BusinessRegistered"] == [bid]


async def test_R_ID_07_R_ID_08_tokens_carry_bindings_institutions_need_their_organisation(identity):
    async with httpx.AsyncClient(base_url=identity.url, timeout=15) as http:
        portal = await portal_client(http)
        owner = await signup(http, "shop@example.jp")
        founder_biz = {k: v for k, v in PROFILE.items() if k != "corporate_number"}
        bid = (await (http.post("/businesses", headers=as_account(owner), json=founder_biz))).json()["business_id"]
        tokens = await password_login(http, portal["client_id"], "shop@example.jp")
        claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
        assert claims["biz"] == [{"id": bid, "role": "prime"}] and "portal" in claims["scope"].split()

        # an "institution" account nobody linked has no institution rights
        staff = await signup(http, "staff@shokokai.example.jp", kind="institution")
        t = await password_login(http, portal["client_id"], "staff@shokokai.example.jp")
        assert jwt.decode(t["access_token"], options={"verify_signature": False})["roles"] == []
        staff_token = {"authorization": f"Bearer {t['access_token']}"}
        assert (await http.get("/delegations", headers=staff_token)).status_code == 403
        org = (await http.post("/organisations", headers=OPERATOR, json={
            "name": "熊本市商工会", "kind": "institution", "institution_type": 1})).json()["org_id"]
        assert (await http.post(f"/organisations/{org}/staff", headers=OPERATOR,
                                json={"account_id": staff["account_id"]})).status_code == 204

        # R-ID-08: the business delegates; the staff's next token carries it; revoking ends it at once
        owner_token = {"authorization": f"Bearer {tokens['access_token']}"}
        bad = await http.post(f"/businesses/{bid}/delegations", headers=owner_token,
                              json={"org_id": org, "scopes": ["ratings:give"], "days": 30})
        assert bad.status_code == 422 and "stay the business's own" in bad.json()["detail"]
        dlg = (await http.post(f"/businesses/{bid}/delegations", headers=owner_token,
                               json={"org_id": org, "scopes": ["profile:read"], "days": 30})).json()
        t = await password_login(http, portal["client_id"], "staff@shokokai.example.jp")
        claims = jwt.decode(t["access_token"], options={"verify_signature": False})
        assert claims["roles"] == ["institution"]
        assert [(d["id"], d["business_id"], d["scopes"]) for d in claims["dlg"]] == [(dlg["delegation_id"], bid, ["profile:read"])]
        staff_token = {"authorization": f"Bearer {t['access_token']}"}
        assert (await http.get(f"/businesses/{bid}", headers=staff_token)).status_code == 200
        assert (await http.patch(f"/businesses/{bid}", headers=staff_token, json={"employees": 3})).status_code == 404
        assert (await http.post(f"/businesses/{bid}/consents", headers=staff_token,
                                json={"client_id": portal["client_id"]})).status_code == 403  # not delegable
        r = await http.post(f"/delegations/{dlg['delegation_id']}/revoke", headers=owner_token)
        assert r.status_code == 200 and r.json()["status"] == "revoked"
        assert (await http.get(f"/businesses/{bid}", headers=staff_token)).status_code == 404


async def test_R_ID_09_third_party_tokens_reach_only_their_scopes(identity):
    async with httpx.AsyncClient(base_url=identity.url, timeout=15) as http:
        owner = await signup(http, "owner3p@example.jp")
        founder_biz = {k: v for k, v in PROFILE.items() if k != "corporate_number"}
        bid = (await (http.post("/businesses", headers=as_account(owner), json=founder_biz))).json()["business_id"]
        r = await http.post("/clients", headers=OPERATOR, json={
            "name": "家計簿アプリ", "confidential": False, "redirect_uris": ["http://127.0.0.1:9/callback"],
            "scopes": ["openid"], "grant_types": ["authorization_code"]})
        third = r.json()
        assert third["first_party"] is False
        page = await http.get("/authorize", params={"client_id": third["client_id"], "response_type": "code",
                                                    "redirect_uri": "http://127.0.0.1:9/callback", "scope": "openid",
                                                    "code_challenge": "x" * 43, "code_challenge_method": "S256"})
        assert 'id="consent"' in page.text and "家計簿アプリ" in page.text  # what signing in grants, shown first
        t = await password_login(http, third["client_id"], "owner3p@example.jp")
        assert t["scope"] == "openid"
        h = {"authorization": f"Bearer {t['access_token']}"}
        assert (await http.get("/userinfo", headers=h)).status_code == 200  # what `openid` is for
        assert (await http.patch(f"/businesses/{bid}", headers=h, json={"employees": 99})).status_code == 403
        assert (await http.post(f"/businesses/{bid}/consents", headers=h, json={"client_id": third["client_id"]})).status_code == 403
        assert (await http.get("/accounts/me", headers=h)).status_code == 403


async def test_R_ID_09_refresh_reuse_and_code_replay_revoke_the_whole_grant_in_every_service(services, identity):
    ratings = services("ratings")
    async with httpx.AsyncClient(base_url=identity.url, timeout=15) as http:
        portal = await portal_client(http, scopes=("openid", "offline_access"))
        await signup(http, "family@example.jp")
        first = await password_login(http, portal["client_id"], "family@example.jp")
        second = (await http.post("/token", data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"],
                                                  "client_id": portal["client_id"]})).json()
        h = {"authorization": f"Bearer {second['access_token']}"}
        assert (await http.get(f"{ratings.url}/pending", headers=h)).status_code == 200
        # the rotated-out refresh token comes back: someone holds a copy, so the whole family ends
        reuse = await http.post("/token", data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"],
                                                "client_id": portal["client_id"]})
        assert reuse.json()["error"] == "invalid_grant"
        assert (await http.post("/token", data={"grant_type": "refresh_token", "refresh_token": second["refresh_token"],
                                                "client_id": portal["client_id"]})).json()["error"] == "invalid_grant"
        assert (await http.get("/accounts/me", headers=h)).status_code == 401
        await eventually(lambda: _status_is(http, f"{ratings.url}/pending", h, 401), timeout=2, interval=0.1)


async def test_R_ID_09_a_replayed_authorization_code_revokes_the_tokens_it_issued(services, identity):
    ratings = services("ratings")
    async with httpx.AsyncClient(base_url=identity.url, timeout=15) as http:
        portal = await portal_client(http)
        await signup(http, "replay@example.jp")
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        r = await http.post("/authorize", data={"email": "replay@example.jp", "password": PASSWORD, "state": "s",
                                                "client_id": portal["client_id"], "redirect_uri": REDIRECT,
                                                "code_challenge": challenge, "code_challenge_method": "S256"})
        code = parse_qs(urlsplit(r.headers["location"]).query)["code"][0]
        exchange = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                    "client_id": portal["client_id"], "code_verifier": verifier}
        first = (await http.post("/token", data=exchange)).json()
        h = {"authorization": f"Bearer {first['access_token']}"}
        assert (await http.get(f"{ratings.url}/pending", headers=h)).status_code == 200
        replay = await http.post("/token", data=exchange)  # an attacker who intercepted the code
        assert replay.json()["error"] == "invalid_grant"
        assert (await http.get("/accounts/me", headers=h)).status_code == 401
        refreshed = await http.post("/token", data={"grant_type": "refresh_token", "client_id": portal["client_id"],
                                                    "refresh_token": first["refresh_token"]})
        assert refreshed.json()["error"] == "invalid_grant"
        await eventually(lambda: _status_is(http, f"{ratings.url}/pending", h, 401), timeout=2, interval=0.1)


async def _status_is(http: httpx.AsyncClient, url: str, headers: dict, status: int) -> bool:
    return (await http.get(url, headers=headers)).status_code == status


# one authenticated GET per service (its `probe` in services/registry.toml), answered for a business account (200, or
# 403/404: not 401 while valid)
PROBES = {s.name: s.probe for s in registry.services()}


async def test_R_ID_09_revoked_token_client_and_account_are_refused_by_all_eight_services_within_2s(services, gateway):
    for name in SERVICES:
        services(name, port=service_port(name), **(mail_env() if name == "identity" else {}))
    async with httpx.AsyncClient(base_url=f"{gateway}/api/identity", timeout=15) as http:
        portal = await portal_client(http)
        spare = await portal_client(http)
        await signup(http, "revoke-me@example.jp")

        async def refused_everywhere(access: str) -> bool:
            """By the gateway and by each service asked directly: the gateway's deny list answers first, so the
            services' own deny lists are proven only without it."""
            h = {"authorization": f"Bearer {access}"}
            urls = [f"{gateway}/api/{n}{p}" for n, p in PROBES.items()]
            urls += [f"http://127.0.0.1:{service_port(n)}{p}" for n, p in PROBES.items()]
            codes = await asyncio.gather(*(http.get(url, headers=h) for url in urls))
            return all(r.status_code == 401 for r in codes)

        async def accepted_everywhere(access: str) -> None:
            h = {"authorization": f"Bearer {access}"}
            for n, p in PROBES.items():
                r = await http.get(f"{gateway}/api/{n}{p}", headers=h)
                assert r.status_code != 401, (n, r.text)

        async def within_2s(access: str) -> float:
            start = time.monotonic()
            await eventually(lambda: refused_everywhere(access), timeout=2, interval=0.05)
            return time.monotonic() - start

        # a user token revoked by its client (RFC 7009)
        t = await password_login(http, portal["client_id"], "revoke-me@example.jp")
        await accepted_everywhere(t["access_token"])
        await http.post("/revoke", data={"token": t["access_token"], "client_id": portal["client_id"]})
        await within_2s(t["access_token"])
        # a token of a client the operator revoked
        t = await password_login(http, spare["client_id"], "revoke-me@example.jp")
        await accepted_everywhere(t["access_token"])
        assert (await http.post(f"/clients/{spare['client_id']}/revoke", headers=OPERATOR)).status_code == 204
        await within_2s(t["access_token"])
        # a revoked account (forced exit)
        t = await password_login(http, portal["client_id"], "revoke-me@example.jp")
        await accepted_everywhere(t["access_token"])
        me = jwt.decode(t["access_token"], options={"verify_signature": False})["sub"]
        assert (await http.post(f"/accounts/{me}/revoke", headers=OPERATOR, json={"reason": "case 2026-17"})).status_code == 200
        await within_2s(t["access_token"])


async def test_iss_a_token_of_another_issuer_is_refused_even_with_our_key(services):
    ratings = services("ratings")
    forged = token(sub="acct-1", roles=["business"], iss="https://attacker.example")
    async with httpx.AsyncClient(timeout=15) as http:
        r = await http.get(f"{ratings.url}/pending", headers={"authorization": f"Bearer {forged}"})
        assert r.status_code == 401 and "issuer" in r.json()["detail"].lower()
        ok = await http.get(f"{ratings.url}/pending", headers={"authorization": f"Bearer {token(roles=['business'])}"})
        assert ok.status_code == 200

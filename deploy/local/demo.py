"""Loads demo data through the gateway (idempotent) and prints a development token to try the API with.

usage: .venv/bin/python deploy/local/demo.py [--token-only | --mail ADDRESS]      env: GATEWAY_PORT, VAR_DIR
  --mail ADDRESS: the latest e-mail the local mail catcher (var/log/mail.log) got for ADDRESS, decoded
"""
from __future__ import annotations

import json
import os
from datetime import date
import sys
import time
from pathlib import Path

import httpx
import jwt

ROOT = Path(__file__).resolve().parents[2]
VAR = Path(os.environ.get("VAR_DIR") or ROOT / "var")
GATEWAY = f"http://127.0.0.1:{os.environ.get('GATEWAY_PORT', '8080')}"
# the issuer the services and the gateway accept (as deploy/local/services.sh and gateway.sh default it)
ISSUER = os.environ.get("JWT_ISSUER") or os.environ.get("OIDC_ISSUER") or GATEWAY

DEMO_BUSINESSES = [
    {"corporate_number": "7000012050002", "name": "熊本精密工業株式会社", "prefecture": "熊本県", "industry": "製造業", "employees": 48},
    {"corporate_number": "4000012090001", "name": "みなと商店株式会社", "prefecture": "東京都", "industry": "小売業", "employees": 7},
    {"corporate_number": None, "name": "山田 太郎 (個人事業)", "prefecture": "北海道", "industry": "飲食業", "employees": 2},
]


def dev_token(sub: str = "demo-operator", roles=("operator",), ttl: int = 3600, orgs=(), **extra) -> str:
    """A token signed with the development key (var/keys), which the identity service also signs with locally."""
    now = int(time.time())
    # scope "portal": a first-party portal token; the services refuse tokens without it on portal routes
    claims = {"sub": sub, "roles": list(roles), "scope": "portal", "aud": "smeportal", "iss": ISSUER, "iat": now,
              "exp": now + ttl, "orgs": list(orgs), **extra}
    return jwt.encode(claims, (VAR / "keys" / "jwt-private.pem").read_text(), algorithm="RS256")


def _ok(r: httpx.Response) -> dict:
    if r.status_code not in (200, 201):
        sys.exit(f"demo data: {r.request.method} {r.request.url.path}: {r.status_code} {r.text}")
    return r.json()


def _retry(call, tries: int = 50):
    """Calls until it answers 2xx: the services learn the platform from identity's events a moment later."""
    for _ in range(tries):
        r = call()
        if r.status_code in (200, 201):
            return r.json()
        time.sleep(0.2)
    return _ok(r)


def load_programme() -> None:
    """A regional platform with its frame and shares, and an approved expert: ready for a first dispatch."""
    marker = VAR / "mongo" / "demo-programme.json"  # lives with the data, so `wipe` forgets it too
    if marker.exists():
        return
    from contracts.vocab import RIGHTS, MemberRole, fiscal_year

    fy = fiscal_year(date.today())
    http = httpx.Client(base_url=GATEWAY, timeout=15)
    bureau = {"authorization": f"Bearer {dev_token('demo-bureau', ['bureau'], bureau_id='bureau-kyushu')}"}  # R-PF-05
    orgs = {}
    for name, t, fields in (("熊本市商工会", 1, ["management", "sales_channels"]), ("熊本商工会議所", 2, ["business_succession"]),
                            ("肥後信用金庫", 8, ["finance"]), ("熊本県よろず支援拠点", None, ["it_dx", "sales_channels"])):
        orgs[name] = _ok(http.post("/api/identity/organisations", headers=bureau, json={  # finder (R-POR-07)
            "name": name, "kind": "institution", "institution_type": t, "prefecture": "熊本県",
            "specialities": fields}))["org_id"]
    rep, chamber = orgs["熊本市商工会"], orgs["熊本商工会議所"]
    pid = _ok(http.post("/api/identity/platforms", headers=bureau, json={
        "name": "熊本県地域プラットフォーム", "bureau_id": "bureau-kyushu", "fiscal_year": fy,
        "representative_id": rep, "member_ids": list(orgs.values()),
        "area": {"prefectures": ["熊本県"]}}))["platform_id"]  # published in the directory (R-POR-07)

    def claim(org, role):
        return {"org_id": org, "platform_id": pid, "member_role": role.value, "rights": sorted(r.value for r in RIGHTS[role])}

    rep_h = {"authorization": f"Bearer {dev_token('demo-rep-staff', ['institution'], orgs=[claim(rep, MemberRole.REPRESENTATIVE)])}"}
    staff_h = {"authorization": f"Bearer {dev_token('demo-chamber-staff', ['institution'], orgs=[claim(chamber, MemberRole.DISPATCH_MEMBER)])}"}
    frame = _retry(lambda: http.post("/api/budget/frames", headers=bureau, json={
        "fiscal_year": fy, "platform_id": pid, "fee": 3_000_000, "travel": 500_000, "reason": "demo allocation"}))
    _ok(http.put(f"/api/budget/frames/{frame['frame_id']}/shares/{chamber}", headers=rep_h,
                 json={"amount": 1_000_000, "reason": "demo share"}))
    expert_h = {"authorization": f"Bearer {dev_token('demo-expert', ['expert'])}"}
    expert_id = _ok(http.post("/api/experts/experts/me", headers=expert_h, json={
        "name": "山田 花子", "qualifications": ["中小企業診断士"], "fields": ["sales_channels", "management"],
        "regions": ["熊本県"], "introduction": "販路開拓と事業再生 / sales channels and turnaround"}))["expert_id"]
    _retry(lambda: http.post(f"/api/experts/experts/{expert_id}/recommendations", headers=staff_h, json={"org_id": chamber}))
    _ok(http.post("/api/experts/experts/me/consents", headers=expert_h, json={"org_id": chamber}))
    _ok(http.post("/api/experts/experts/me/application", headers=expert_h, json={
        "evidence": [{"route": "public_qualification", "qualification": "中小企業診断士"}], "no_disqualification": True}))
    agency_h = {"authorization": f"Bearer {dev_token('demo-agency', ['agency'])}"}
    _ok(http.post(f"/api/experts/experts/{expert_id}/review", headers=agency_h, json={"decision": "approve"}))
    marker.write_text(json_dumps({"platform_id": pid, "frame_id": frame["frame_id"], "expert_id": expert_id,
                                  "representative": rep, "chamber": chamber}))
    print(f"demo programme: platform {pid}, frame {frame['frame_id']}, approved expert {expert_id}")


def register_portal() -> str:
    """The portal's web front end as a first-party public OAuth client (code + PKCE, no secret), registered once;
    its id goes to $VAR_DIR/web/config.json, which the web server hands to the app as /config.json."""
    marker = VAR / "mongo" / "portal-client.json"  # lives with the data, so `wipe` forgets the client too
    if not marker.exists():
        headers = {"authorization": f"Bearer {dev_token()}"}
        client = _ok(httpx.post(f"{GATEWAY}/api/identity/clients", headers=headers, timeout=10, json=portal_client(GATEWAY)))
        marker.write_text(json_dumps({"client_id": client["client_id"]}))
    (VAR / "web").mkdir(parents=True, exist_ok=True)
    (VAR / "web" / "config.json").write_text(marker.read_text())
    return json.loads(marker.read_text())["client_id"]


DEMO_OWNER = {"email": "owner@demo.example.jp", "password": "demo portal 2026!", "real_name": "デモ 事業者", "kind": "business"}


def demo_owner() -> None:
    """A business account to sign in to the portal with at once: registered, and confirmed with the link from the
    mail the local catcher printed (as its owner would click it)."""
    marker = VAR / "mongo" / "demo-owner.json"
    if marker.exists():
        return
    r = httpx.post(f"{GATEWAY}/api/identity/accounts", json=DEMO_OWNER, timeout=10)
    if r.status_code != 201:
        return  # already there (a second run) or sign-up refused: the portal's own sign-up still works
    for _ in range(50):
        if body := last_mail(DEMO_OWNER["email"]):
            token = body.split("#token=", 1)[1].split()[0]
            httpx.post(f"{GATEWAY}/api/identity/accounts/verify-email", json={"token": token}, timeout=10)
            marker.write_text(json_dumps({"email": DEMO_OWNER["email"]}))
            return
        time.sleep(0.2)


def last_mail(address: str) -> str | None:
    """The body of the latest mail to `address` in var/log/mail.log (aiosmtpd's Debugging handler prints each one)."""
    import email
    from email import policy

    log = VAR / "log" / "mail.log"
    if not log.exists():
        return None
    found = None
    for chunk in log.read_text(errors="replace").split("---------- MESSAGE FOLLOWS ----------")[1:]:
        raw = chunk.split("------------ END MESSAGE ------------")[0]
        raw = raw.split("\n\n", 1)[1] if raw.lstrip().startswith("mail options") else raw
        msg = email.message_from_string(raw.lstrip("\n"), policy=policy.default)
        if msg["To"] == address:
            found = msg.get_body(("plain",)).get_content() if msg.is_multipart() else msg.get_content()
    return found


def portal_client(origin: str) -> dict:
    """What the portal registers as (also used by the tests): redirects back to the portal's own address."""
    return {"name": "支援ポータル (web)", "confidential": False, "first_party": True, "scopes": ["openid"],
            "grant_types": ["authorization_code", "refresh_token"], "redirect_uris": [f"{origin}/"]}


def json_dumps(d: dict) -> str:
    return json.dumps(d, ensure_ascii=False, indent=2)


def main() -> None:
    token = dev_token()
    if "--token-only" in sys.argv:
        print(token)
        return
    if "--mail" in sys.argv:
        print(last_mail(sys.argv[sys.argv.index("--mail") + 1]) or "no mail for that address in var/log/mail.log")
        return
    headers = {"authorization": f"Bearer {token}"}
    loaded = 0
    for b in DEMO_BUSINESSES:
        if b["corporate_number"] is None and loaded:
            continue  # sole proprietors have no natural key: load them only on the first run
        r = httpx.post(f"{GATEWAY}/api/identity/businesses", json=b, headers=headers, timeout=10)
        if r.status_code == 201:
            loaded += 1
        elif r.status_code != 409:
            sys.exit(f"demo data: {r.status_code} {r.text}")
    load_programme()
    register_portal()
    demo_owner()
    print(f"demo data: {loaded} new businesses (of {len(DEMO_BUSINESSES)}); operator token for 1 h:\n"
          f"  export TOKEN=$(.venv/bin/python deploy/local/demo.py --token-only)\n"
          f"  curl -H \"Authorization: Bearer $TOKEN\" {GATEWAY}/api/recommend/businesses/corp-7000012050002\n"
          f"portal (web front end): {GATEWAY}/  sign in as {DEMO_OWNER['email']} / {DEMO_OWNER['password']}")


if __name__ == "__main__":
    main()

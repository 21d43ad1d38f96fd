"""Authorization table of the identity service (R-ID-05, R-PF-04, R-PF-05, R-ID-04, R-ANC-05): one row per endpoint of
the running service's OpenAPI document. Allowed roles get through (no 401/403, no 5xx); every other role and an
anonymous caller get 401/403. A second bureau account, of another block than the world's platform ("bureau-elsewhere"),
is allowed where a bureau is, except on rows bound to the platform's block. An endpoint without a row fails the test."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import httpx
import pytest

from contracts.vocab import fiscal_year
from tests.integration.identity_support import (PASSWORD, bearer, client_token, mails, partner_client,
                                                password_login, portal_client, prove_prime, signup, start_identity,
                                                verify_email)
from tests.integration.identity_support import PROFILE
from tests.support import token

ACCOUNT_ROLES = ("business", "founder", "expert", "institution", "bureau", "agency", "operator")
ELSEWHERE = "bureau-elsewhere"  # a bureau account of another block (R-PF-05)
ROLES = ACCOUNT_ROLES + ("client", ELSEWHERE)
OWNERS = {"business", "founder", "operator"}
MANAGERS = {"operator", "bureau"}
READERS = {"operator", "bureau", "agency", "institution"}
PEOPLE = {"business", "founder"}  # who acts for a business (R-ID-07)
PUBLIC = "public"            # no token needed
CLIENT_AUTH = "client-auth"  # OAuth endpoints: the client authenticates itself (HTTP Basic), bearer tokens do not count


@dataclass
class Row:
    allowed: set[str] | str
    path: str            # with the world's ids filled in by `format`
    body: dict | None = None
    form: dict | None = None
    in_block: bool = False  # R-PF-05: a bureau only of the world's block ("b") may, not one of another block


def table(w: dict) -> dict[tuple[str, str], Row]:
    fy = fiscal_year(date.today())
    return {
        ("GET", "/healthz"): Row(PUBLIC, "/healthz"),
        ("GET", "/readyz"): Row(PUBLIC, "/readyz"),
        ("GET", "/metrics"): Row(PUBLIC, "/metrics"),  # the scraper's, on the internal network (not routed by the gateway)
        ("GET", "/.well-known/openid-configuration"): Row(PUBLIC, "/.well-known/openid-configuration"),
        ("GET", "/jwks.json"): Row(PUBLIC, "/jwks.json"),
        ("GET", "/authorize"): Row(PUBLIC, "/authorize?client_id=x&redirect_uri=y"),
        ("POST", "/authorize"): Row(PUBLIC, "/authorize", form={"email": "a@b.jp", "password": "p", "client_id": "x",
                                                                "redirect_uri": "y", "code_challenge": "c"}),
        ("GET", "/federation/start"): Row(PUBLIC, "/federation/start"),
        ("GET", "/federation/callback"): Row(PUBLIC, "/federation/callback"),
        ("POST", "/accounts"): Row(PUBLIC, "/accounts", {"email": "new@example.jp", "password": PASSWORD,
                                                        "real_name": "新規 登録", "kind": "business"}),
        # account life (R-ID-10): links by mail, TOTP
        ("POST", "/accounts/verify-email"): Row(PUBLIC, "/accounts/verify-email", {"token": "x"}),
        ("POST", "/accounts/verification-mails"): Row(PUBLIC, "/accounts/verification-mails", {"email": "a@b.jp"}),
        ("POST", "/accounts/password-reset"): Row(PUBLIC, "/accounts/password-reset", {"email": "a@b.jp"}),
        ("POST", "/accounts/password-reset/confirm"): Row(PUBLIC, "/accounts/password-reset/confirm",
                                                          {"token": "x", "password": PASSWORD}),
        ("GET", "/pages/verify-email"): Row(PUBLIC, "/pages/verify-email"),
        ("POST", "/pages/verify-email"): Row(PUBLIC, "/pages/verify-email", form={"token": "x"}),
        ("GET", "/pages/reset-password"): Row(PUBLIC, "/pages/reset-password"),
        ("POST", "/pages/reset-password"): Row(PUBLIC, "/pages/reset-password",
                                               form={"token": "x", "password": PASSWORD, "password_again": PASSWORD}),
        ("POST", "/authorize/totp"): Row(PUBLIC, "/authorize/totp", form={"ticket": "x", "code": "123456"}),
        ("GET", "/accounts/me/totp"): Row(set(ACCOUNT_ROLES), "/accounts/me/totp"),
        ("POST", "/accounts/me/totp"): Row(set(ACCOUNT_ROLES), "/accounts/me/totp"),
        ("POST", "/accounts/me/totp/confirm"): Row(set(ACCOUNT_ROLES), "/accounts/me/totp/confirm", {"code": "000000"}),
        ("POST", "/accounts/me/totp/disable"): Row(set(ACCOUNT_ROLES), "/accounts/me/totp/disable", {"code": "000000"}),
        ("POST", "/accounts/{account_id}/totp/reset"): Row({"operator"}, f"/accounts/{w['victim']}/totp/reset"),
        ("POST", "/token"): Row(CLIENT_AUTH, "/token", form={"grant_type": "client_credentials"}),
        ("POST", "/revoke"): Row(CLIENT_AUTH, "/revoke", form={"token": "x"}),
        ("POST", "/introspect"): Row(CLIENT_AUTH, "/introspect", form={"token": "x"}),
        ("POST", "/par"): Row(CLIENT_AUTH, "/par", form={"response_type": "code"}),
        ("GET", "/userinfo"): Row(set(ACCOUNT_ROLES), "/userinfo"),
        ("GET", "/accounts/me"): Row(set(ACCOUNT_ROLES), "/accounts/me"),
        ("GET", "/accounts/me/federated-identities"): Row(set(ACCOUNT_ROLES), "/accounts/me/federated-identities"),
        ("POST", "/accounts/me/federated-identities"): Row(set(ACCOUNT_ROLES), "/accounts/me/federated-identities"),
        ("POST", "/staff-accounts"): Row({"operator"}, "/staff-accounts", {"email": "staff2@example.jp", "password": PASSWORD,
                                                                          "real_name": "職員", "kind": "bureau",
                                                                          "bureau_id": "bureau-kyushu"}),
        ("POST", "/accounts/{account_id}/revoke"): Row({"operator"}, f"/accounts/{w['victim']}/revoke", {"reason": "R-DSP-13"}),
        ("POST", "/clients"): Row({"operator"}, "/clients", {"name": "x", "confidential": True, "scopes": [],
                                                             "grant_types": ["client_credentials"]}),
        ("POST", "/clients/{client_id}/revoke"): Row({"operator"}, f"/clients/{w['spare_client']}/revoke"),
        ("PUT", "/clients/{client_id}/tier"): Row({"agency", "operator"}, f"/clients/{w['partner']}/tier",
                                                  {"tier": "standard", "reason": "table tier change"}),
        ("GET", "/clients/{client_id}/webhook-deliveries"): Row({"operator"},
                                                                f"/clients/{w['spare_client']}/webhook-deliveries"),
        ("GET", "/clients/me/audit"): Row(set(), "/clients/me/audit"),  # only a client token with audit:read
        # R-OPS-02: operators' search and the cross-service audit trail
        ("GET", "/operator/accounts"): Row({"operator"}, "/operator/accounts?q=staff"),
        ("GET", "/operator/businesses"): Row({"operator"}, "/operator/businesses?q=biz"),
        ("GET", "/operator/audit"): Row({"operator"}, f"/operator/audit?ref={w['victim']}"),
        # developer onboarding (R-EXT-01): any person registers an organisation; its applications answer 404 to others
        ("POST", "/developer/orgs"): Row(set(ACCOUNT_ROLES), "/developer/orgs", {"name": "x", "contact_email": "a@b.jp"}),
        ("POST", "/developer/orgs/{org_id}/apps"): Row(set(ACCOUNT_ROLES), "/developer/orgs/dev-none/apps", {"name": "x"}),
        ("GET", "/developer/apps/{app_id}"): Row(set(ACCOUNT_ROLES), "/developer/apps/app-none"),
        ("POST", "/developer/apps/{app_id}/apply"): Row(set(ACCOUNT_ROLES), "/developer/apps/app-none/apply", {
            "jwks": {"keys": []}, "redirect_uris": ["https://x.example/cb"], "answers": {}}),
        ("POST", "/developer/apps/{app_id}/review"): Row({"agency", "operator"}, "/developer/apps/app-none/review",
                                                         {"decision": "return"}),
        # businesses, once-only profile (R-ID-03)
        ("GET", "/businesses"): Row(OWNERS, "/businesses"),
        ("POST", "/businesses"): Row(OWNERS, "/businesses", {k: v for k, v in PROFILE.items() if k != "corporate_number"}),
        ("GET", "/businesses/{business_id}"): Row(OWNERS | {"institution"}, f"/businesses/{w['bid']}"),
        ("PATCH", "/businesses/{business_id}"): Row(OWNERS | {"institution"}, f"/businesses/{w['bid']}", {"employees": 49}),
        ("GET", "/businesses/{business_id}/history"): Row(OWNERS | {"institution"}, f"/businesses/{w['bid']}/history"),
        ("POST", "/businesses/{business_id}/financials/import"): Row(OWNERS | {"institution"},
                                                                    f"/businesses/{w['bid']}/financials/import"),
        # bindings and delegations (R-ID-07, R-ID-08)
        ("POST", "/businesses/{business_id}/prime-proof"): Row(PEOPLE, f"/businesses/{w['bid']}/prime-proof", {"code": "1"}),
        ("GET", "/letters"): Row({"operator"}, "/letters"),
        ("GET", "/letters/{letter_id}.pdf"): Row({"operator"}, "/letters/ltr-none.pdf"),
        ("POST", "/letters/{letter_id}/posted"): Row({"operator"}, "/letters/ltr-none/posted"),
        ("GET", "/businesses/{business_id}/members"): Row(PEOPLE, f"/businesses/{w['bid']}/members"),
        ("POST", "/businesses/{business_id}/invitations"): Row(PEOPLE, f"/businesses/{w['bid']}/invitations",
                                                               {"email": "clerk@example.jp"}),
        ("GET", "/invitations"): Row(PEOPLE, "/invitations"),
        ("POST", "/businesses/{business_id}/invitations/accept"): Row(PEOPLE, f"/businesses/{w['bid']}/invitations/accept"),
        ("DELETE", "/businesses/{business_id}/members/{account_id}"): Row(PEOPLE, f"/businesses/{w['bid']}/members/acc-none"),
        ("POST", "/businesses/{business_id}/delegations"): Row(PEOPLE, f"/businesses/{w['bid']}/delegations",
                                                               {"org_id": w["orgs"][0], "scopes": ["profile:read"], "days": 1}),
        ("GET", "/businesses/{business_id}/delegations"): Row(PEOPLE, f"/businesses/{w['bid']}/delegations"),
        ("GET", "/delegations"): Row({"institution"}, "/delegations"),
        ("POST", "/delegations/{delegation_id}/revoke"): Row(PEOPLE | {"operator"}, "/delegations/dlg-none/revoke"),
        ("GET", "/prefill/businesses/{business_id}"): Row({"client"}, f"/prefill/businesses/{w['bid']}"),
        # consents and prefill (R-ID-04)
        ("GET", "/businesses/{business_id}/consents"): Row(OWNERS, f"/businesses/{w['bid']}/consents"),
        ("POST", "/businesses/{business_id}/consents"): Row(OWNERS, f"/businesses/{w['bid']}/consents",
                                                            {"client_id": w["partner"]}),
        ("DELETE", "/businesses/{business_id}/consents/{client_id}"): Row(OWNERS, f"/businesses/{w['bid']}/consents/cl-none"),
        ("GET", "/businesses/{business_id}/prefill-reads"): Row(OWNERS, f"/businesses/{w['bid']}/prefill-reads"),
        ("GET", "/prefill/{corporate_number}"): Row({"client"}, f"/prefill/{PROFILE['corporate_number']}"),
        # data-disclosure requests (R-ANC-05)
        ("GET", "/businesses/{business_id}/disclosure-requests"): Row(OWNERS, f"/businesses/{w['bid']}/disclosure-requests"),
        ("POST", "/disclosure-requests"): Row({"institution"}, "/disclosure-requests", {"business_id": w["bid"], "purpose": "x"}),
        ("GET", "/disclosure-requests"): Row({"institution"}, "/disclosure-requests"),
        ("POST", "/disclosure-requests/{request_id}/approve"): Row(OWNERS, f"/disclosure-requests/{w['pending']}/approve"),
        ("POST", "/disclosure-requests/{request_id}/reject"): Row(OWNERS, f"/disclosure-requests/{w['pending']}/reject"),
        ("POST", "/disclosure-requests/{request_id}/revoke"): Row(OWNERS, f"/disclosure-requests/{w['pending']}/revoke"),
        ("GET", "/disclosure-requests/{request_id}/profile"): Row({"institution"}, f"/disclosure-requests/{w['approved']}/profile"),
        # organisations and platforms (R-PF-01..04)
        ("POST", "/organisations"): Row(MANAGERS, "/organisations", {"name": "x", "kind": "body"}),
        ("GET", "/organisations/{org_id}"): Row(READERS, f"/organisations/{w['orgs'][0]}"),
        ("POST", "/organisations/{org_id}/staff"): Row(MANAGERS, f"/organisations/{w['orgs'][0]}/staff",
                                                       {"account_id": w["subjects"]["institution"]}, in_block=True),
        ("POST", "/platforms"): Row(MANAGERS, "/platforms", {"name": "PF", "bureau_id": "b", "fiscal_year": fy,
                                                             "representative_id": w["orgs"][0], "member_ids": w["orgs"]},
                                    in_block=True),
        ("GET", "/platforms/{platform_id}"): Row(READERS, f"/platforms/{w['pid']}", in_block=True),
        ("POST", "/platforms/{platform_id}/renewals"): Row(MANAGERS, f"/platforms/{w['pid']}/renewals", {"fiscal_year": fy + 1},
                                                           in_block=True),
        ("POST", "/platforms/{platform_id}/members"): Row(MANAGERS, f"/platforms/{w['pid']}/members", {"org_id": w["extra_org"]},
                                                          in_block=True),
        ("DELETE", "/platforms/{platform_id}/members/{org_id}"): Row(MANAGERS, f"/platforms/{w['pid']}/members/{w['extra_org']}",
                                                                     in_block=True),
        ("PUT", "/platforms/{platform_id}/area"): Row(MANAGERS, f"/platforms/{w['pid']}/area", {"prefectures": ["鳥取県"]},
                                                      in_block=True),
        # the public directory and finder (R-POR-07)
        ("GET", "/directory/platforms"): Row(PUBLIC, "/directory/platforms"),
        ("GET", "/directory/platforms/{platform_id}"): Row(PUBLIC, f"/directory/platforms/{w['pid']}"),
        ("GET", "/directory/institutions"): Row(PUBLIC, "/directory/institutions?prefecture=鳥取県"),
        # the developer portal's page of the APIs and the merged documents (R-EXT-04): published
        ("GET", "/developers/apis"): Row(PUBLIC, "/developers/apis"),
        ("GET", "/developers/openapi.json"): Row(PUBLIC, "/developers/openapi.json"),
        ("GET", "/developers/asyncapi.json"): Row(PUBLIC, "/developers/asyncapi.json"),
    }


async def _world(http: httpx.AsyncClient) -> dict:
    """Real accounts of every kind (so account-bound endpoints see a real caller), a business owned by the business
    account, an organisation with linked staff, a platform, a consented prefill client, disclosure requests."""
    op = bearer()
    subjects = {}
    for kind in ACCOUNT_ROLES:
        if kind in ("bureau", "agency", "operator"):
            before = len(mails(f"{kind}@example.jp", "verify-email"))
            r = await http.post("/staff-accounts", headers=op, json={"email": f"{kind}@example.jp", "password": PASSWORD,
                                                                     "real_name": "職員 一郎", "kind": kind,
                                                                     "bureau_id": "b" if kind == "bureau" else None})
            assert r.status_code == 201, r.text
            subjects[kind] = r.json()["account_id"]
            await verify_email(http, f"{kind}@example.jp", before)
        else:
            subjects[kind] = (await signup(http, f"{kind}@example.jp", kind=kind))["account_id"]
    before = len(mails("elsewhere@example.jp", "verify-email"))
    r = await http.post("/staff-accounts", headers=op, json={"email": "elsewhere@example.jp", "password": PASSWORD,
                                                             "real_name": "職員 二郎", "kind": "bureau",
                                                             "bureau_id": "elsewhere"})
    assert r.status_code == 201, r.text
    subjects[ELSEWHERE] = r.json()["account_id"]
    await verify_email(http, "elsewhere@example.jp", before)
    portal = await portal_client(http)
    headers = {}  # real tokens, issued by this identity after a password login
    for kind, email in [(k, f"{k}@example.jp") for k in ACCOUNT_ROLES] + [(ELSEWHERE, "elsewhere@example.jp")]:
        tokens = await password_login(http, portal["client_id"], email)
        headers[kind] = {"authorization": f"Bearer {tokens['access_token']}"}
    orgs = []
    for name, t in (("商工会", 1), ("商工会議所", 2), ("信金", 8), ("拠点", None)):
        r = await http.post("/organisations", headers=op, json={"name": name, "kind": "institution", "institution_type": t})
        orgs.append(r.json()["org_id"])
    extra = (await http.post("/organisations", headers=op, json={"name": "法人", "kind": "body"})).json()["org_id"]
    await http.post(f"/organisations/{orgs[1]}/staff", headers=op, json={"account_id": subjects["institution"]})
    # institution rights come with the organisation's link, in the next token (R-ID-07)
    tokens = await password_login(http, portal["client_id"], "institution@example.jp")
    headers["institution"] = {"authorization": f"Bearer {tokens['access_token']}"}
    fy = fiscal_year(date.today())
    pid = (await http.post("/platforms", headers=op, json={"name": "PF", "bureau_id": "b", "fiscal_year": fy,
                                                           "representative_id": orgs[0], "member_ids": orgs})).json()["platform_id"]
    bid = await prove_prime(http, headers["business"])
    partner = await partner_client(http, ["prefill:read"])
    assert (await http.post(f"/businesses/{bid}/consents", headers=headers["business"],
                            json={"client_id": partner["client_id"]})).status_code == 201
    headers["client"] = {"authorization": f"Bearer {await client_token(http, partner)}"}
    asks = [(await http.post("/disclosure-requests", headers=headers["institution"],
                             json={"business_id": bid, "purpose": p})).json()["request_id"] for p in ("a", "b")]
    await http.post(f"/disclosure-requests/{asks[1]}/approve", headers=headers["business"])
    victim = (await signup(http, "victim@example.jp"))["account_id"]
    spare = (await partner_client(http, [], name="spare"))["client_id"]
    return {"subjects": subjects, "headers": headers, "orgs": orgs, "extra_org": extra, "pid": pid, "bid": bid,
            "partner": partner["client_id"], "pending": asks[0], "approved": asks[1], "victim": victim,
            "spare_client": spare}


async def _call(http, method: str, row: Row, headers: dict | None) -> httpx.Response:
    return await http.request(method, row.path, headers=headers or {}, json=row.body, data=row.form)


@pytest.fixture
def identity(services):
    return start_identity(services)


async def test_R_ID_05_every_endpoint_allows_exactly_its_roles(identity):
    async with httpx.AsyncClient(base_url=identity.url, timeout=15) as http:
        world = await _world(http)
        rows = table(world)
        spec = (await http.get("/openapi.json")).json()
        routes = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
        assert routes - rows.keys() == set(), "endpoints without an authorization row"
        assert rows.keys() - routes == set(), "rows for endpoints that no longer exist"

        failures = []
        for (method, template), row in sorted(rows.items()):
            anonymous = await _call(http, method, row, None)
            if row.allowed == PUBLIC:
                if anonymous.status_code in (401, 403) or anonymous.status_code >= 500:
                    failures.append(f"{method} {template}: anonymous got {anonymous.status_code}")
                continue
            if anonymous.status_code not in (401, 403):
                failures.append(f"{method} {template}: anonymous got {anonymous.status_code}")
            for role in ROLES:
                r = await _call(http, method, row, world["headers"][role])
                as_role = "bureau" if role == ELSEWHERE and not row.in_block else role
                allowed = row.allowed != CLIENT_AUTH and as_role in row.allowed
                if allowed and (r.status_code in (401, 403) or r.status_code >= 500):
                    failures.append(f"{method} {template}: allowed role {role} got {r.status_code} {r.text[:200]}")
                if not allowed and r.status_code not in (401, 403):
                    failures.append(f"{method} {template}: role {role} should be refused, got {r.status_code}")
        assert not failures, "\n".join(failures)


async def test_R_ID_05_tokens_with_a_foreign_key_expired_or_for_another_audience_are_refused(identity, tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    foreign = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    import jwt as pyjwt

    unsigned = pyjwt.encode({"sub": "op-1", "roles": ["operator"], "aud": "smeportal", "exp": 9999999999}, None,
                            algorithm="none")
    async with httpx.AsyncClient(base_url=identity.url, timeout=15) as http:
        for bad in (token(key=foreign), token(ttl=-60), token(aud="another-service"), unsigned):
            r = await http.get("/platforms/pf-x", headers={"authorization": f"Bearer {bad}"})
            assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json", r.text


def _mutations(body: dict):
    """Bodies that are wrong in one way each: every field retyped, emptied, oversized or null; plus non-objects."""
    yield {}
    yield []
    yield "not an object"
    for key, value in body.items():
        for bad in (None, "", "x" * 5000, -1, 10**30, 1.5, [], {}, True, "２０２６", "\x00"):
            if bad != value:
                yield {**body, key: bad}


async def test_R_ID_05_bad_input_of_every_field_gets_a_4xx_problem_never_a_5xx(identity):
    """What a schema fuzzer does, by hand: each body field of each endpoint broken in turn, sent by an allowed role."""
    async with httpx.AsyncClient(base_url=identity.url, timeout=15) as http:
        world = await _world(http)
        failures = []
        for (method, template), row in sorted(table(world).items()):
            if row.body is None:
                continue
            role = "operator" if row.allowed in (PUBLIC, CLIENT_AUTH) or "operator" in row.allowed else sorted(row.allowed)[0]
            for body in _mutations(row.body):
                r = await http.request(method, row.path, headers=world["headers"][role], json=body)
                if r.status_code >= 500 or (r.status_code >= 400 and "problem+json" not in r.headers["content-type"]):
                    failures.append(f"{method} {template} {str(body)[:120]}: {r.status_code} {r.text[:200]}")
            r = await http.request(method, row.path, headers={**world["headers"][role], "content-type": "application/json"},
                                   content=b"{not json")
            if r.status_code != 422:
                failures.append(f"{method} {template} malformed JSON: {r.status_code}")
        for path in ("/businesses/%00", "/businesses/" + "x" * 3000, "/platforms/..%2f..", "/prefill/１２３"):
            r = await http.get(path, headers=world["headers"]["operator"])
            if r.status_code >= 500:
                failures.append(f"GET {path}: {r.status_code}")
        assert not failures, "\n".join(failures)

"""Who may call what, on all seven services at once (issue 13, acceptance): every route of every service's RUNNING
OpenAPI document × fifteen principals, each cell asserted allow or deny. A route without a row fails the test, and so
does a row for a route that no longer exists.

The services run as processes on real Kafka and MongoDB and learn the world from each other's events, as deployed.
The principals are real accounts of identity with the tokens identity issued to them (password login through a
first-party portal client, TOTP for staff); their subjects, bindings (`biz`), delegations (`dlg`), memberships (`orgs`)
and blocks (`bureau_id`) are the real ones:

  anonymous              no token
  prime                  the prime account of business BIZ (a corporation, proven by the letter's code)
  member                 a member account of BIZ (invited by the prime)
  other_business         the prime account of another business
  staff_delegated        institution staff of REP (the platform's representative) — BIZ delegated every delegable
                         scope (profile:read/write, dispatch:request/read) to REP
  staff_undelegated      institution staff of DM (a dispatch-capable member of the same platform) — no delegation
  unlinked_institution   an account registered as "institution" that no organisation linked: its token carries no role
  expert                 the expert E dispatched to BIZ (registered: recommended, applied, approved)
  bureau                 the bureau of the platform's block (BLOCK)
  bureau_other_block     a bureau of another block
  agency, operator       staff accounts
  third_party_openid     user tokens a third-party client got with only `openid` (no `portal` scope): one really issued
                         for the prime, and the same claims re-signed by identity's key for staff_delegated, expert,
                         bureau, agency and operator — the cell holds for every one of them
  client_with_scope      a client-credentials token of a partner holding `prefill:read`, which BIZ consented to
  client_credentials     a client-credentials token of a client with no scope

Conventions of a cell:
- allow: the answer is not 401 or 403 and not a 5xx (also 404 or 409 and 422: the caller got past authorization; a row
  says where it means more, see `hides`);
- deny: 401 or 403 — or 404 on a row marked `hides=True`, where the service answers "not found" to whoever may not see
  the resource (a dispatch, a consultation, a business's data). On such rows the resource exists, so an allowed
  principal getting 404 fails the cell too;
- PUBLIC rows: everyone, anonymous included, is allowed;
- a row may have several cases (e.g. POST /requests on route A and on route B); a body may depend on the caller (route
  A names the caller's own institution, so that staff without a delegation are refused for that reason);
- `prepare` restores, before each call of a row, what an allowed call used up (a removed member, a withdrawn consent);
- rows that act destructively on the world (fraud, which revokes accounts) name a resource that does not exist: they
  are role-gated, 404 there means the caller got past authorization.

AWAITING_R_PF_05 lists cells whose final behaviour is deny but which the services still allow: bureau least privilege
(R-PF-05: a bureau account acts for its block only) is being built in identity's platform routes and in budget. Such a
cell that still allows is reported, not failed; once R-PF-05 lands they deny and pass, and the set can be emptied.
"""
from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import httpx
import jwt
import pytest

from contracts.vocab import DELEGATION_SCOPES, RATING_AXES, fiscal_year
from tests.integration.identity_support import (PASSWORD, PROFILE, REDIRECT, bearer, client_token, partner_client,
                                                password_login, portal_client, prove_prime, signup, verify_email,
                                                mails)
from tests.integration.stack import start_all, stop_all
from tests.support import SERVICES, Namespace, eventually, private_key

# --- principals -------------------------------------------------------------------------------------------------------
ANON, PRIME, MEMBER, OTHER = "anonymous", "prime", "member", "other_business"
DLG, NODLG, UNLINKED, EXPERT = "staff_delegated", "staff_undelegated", "unlinked_institution", "expert"
BUREAU, BUREAU_X, AGENCY, OPERATOR = "bureau", "bureau_other_block", "agency", "operator"
THIRD, SCOPED, CC = "third_party_openid", "client_with_scope", "client_credentials"
PRINCIPALS = (ANON, PRIME, MEMBER, OTHER, DLG, NODLG, UNLINKED, EXPERT, BUREAU, BUREAU_X, AGENCY, OPERATOR,
              THIRD, SCOPED, CC)

BIZ_PEOPLE = frozenset({PRIME, MEMBER})                  # who acts for BIZ (R-ID-07)
BUSINESSES = BIZ_PEOPLE | {OTHER}                        # role business
INSTITUTIONS = frozenset({DLG, NODLG})                   # role institution (linked by their organisation)
BUREAUS = frozenset({BUREAU, BUREAU_X})
STAFF = frozenset({AGENCY, OPERATOR})
SIGNED_IN = BUSINESSES | INSTITUTIONS | {EXPERT} | BUREAUS | STAFF  # first-party tokens that carry a role
PUBLIC = "public"
NOBODY = frozenset()

FY = fiscal_year(datetime.now(UTC) + timedelta(hours=9))
DAY = min(date.today() + timedelta(days=14), date(FY + 1, 3, 31))  # a visit day inside the fiscal year
ISSUE = "Sales fell by 30% after our main wholesaler closed; we need a new sales channel strategy."
BLOCK, OTHER_BLOCK = "bureau-kyushu", "bureau-kanto"


@dataclass(frozen=True)
class Row:
    allowed: frozenset[str] | str          # principal names, or PUBLIC
    path: str                              # with the world's ids filled in
    body: dict | Callable[[str], dict] | None = None  # JSON; a function of the caller's principal name if it differs
    form: dict | None = None
    hides: bool = False                    # 404 = "not visible to you" = deny
    prepare: Callable[[], Awaitable] | None = None
    case: str = ""                         # what this case of a route shows, if the route has several


def allow(*groups) -> frozenset[str]:
    out: set[str] = set()
    for g in groups:
        out |= {g} if isinstance(g, str) else set(g)
    return frozenset(out)


# Cells allowed for now although their final behaviour is deny: (service, method, route, principal). Empty since bureau
# least privilege (R-PF-05) landed: a bureau of another block is denied on identity's platform and budget's frame routes.
AWAITING_R_PF_05: set[tuple[str, str, str, str]] = set()


# --- the world ------------------------------------------------------------------------------------------------------
@dataclass
class World:
    url: dict[str, str]
    headers: dict[str, list[tuple[str, dict]]] = field(default_factory=dict)  # principal -> [(whose token, headers)]
    ids: dict[str, str] = field(default_factory=dict)              # principal -> account id
    org_of: dict[str, str] = field(default_factory=dict)           # principal -> its organisation
    x: dict[str, str] = field(default_factory=dict)                # everything else the rows name
    boot: dict = field(default_factory=lambda: bearer("op-boot", ["operator"], ttl=7200))  # sets the world up


def identity_rows(w: World) -> dict:
    x = w.x
    bid, pid = x["bid"], x["pid"]

    async def member2_bound():  # the member the prime removes, back before every call
        http = httpx.AsyncClient(base_url=w.url["identity"], timeout=15)
        async with http:
            prime = bearer(w.ids[PRIME], ["business"])
            await http.post(f"/businesses/{bid}/invitations", headers=prime, json={"email": x["member2_email"]})
            await http.post(f"/businesses/{bid}/invitations/accept", headers=bearer(x["member2"], ["business"]))

    async def consent_granted():
        async with httpx.AsyncClient(base_url=w.url["identity"], timeout=15) as http:
            await http.post(f"/businesses/{bid}/consents", headers=bearer(w.ids[PRIME], ["business"]),
                            json={"client_id": x["partner2"]})

    async def extra_member():
        async with httpx.AsyncClient(base_url=w.url["identity"], timeout=15) as http:
            await http.post(f"/platforms/{pid}/members", headers=w.boot, json={"org_id": x["extra_org"]})

    # every account with a role reads and secures its own account (R-ID-10); an account without one (an unlinked
    # "institution" account) is refused these today — only /userinfo answers it
    own = SIGNED_IN
    return {
        ("GET", "/healthz"): Row(PUBLIC, "/healthz"),
        ("GET", "/metrics"): Row(PUBLIC, "/metrics"),  # the scraper's, on the internal network; the gateway does not route it
        ("GET", "/readyz"): Row(PUBLIC, "/readyz"),
        ("GET", "/.well-known/openid-configuration"): Row(PUBLIC, "/.well-known/openid-configuration"),
        ("GET", "/jwks.json"): Row(PUBLIC, "/jwks.json"),
        ("GET", "/authorize"): Row(PUBLIC, "/authorize?client_id=x&redirect_uri=y"),
        ("POST", "/authorize"): Row(PUBLIC, "/authorize", form={"email": "a@b.jp", "password": "p", "client_id": "x",
                                                                "redirect_uri": "y", "code_challenge": "c"}),
        ("POST", "/authorize/totp"): Row(PUBLIC, "/authorize/totp", form={"ticket": "x", "code": "123456"}),
        ("GET", "/federation/start"): Row(PUBLIC, "/federation/start"),
        ("GET", "/federation/callback"): Row(PUBLIC, "/federation/callback"),
        ("POST", "/accounts"): Row(PUBLIC, "/accounts", {"email": "new@matrix.example.jp", "password": PASSWORD,
                                                        "real_name": "新規 登録", "kind": "business"}),
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
        # OAuth endpoints: the client authenticates itself (HTTP Basic / client_id); no bearer token opens them
        ("POST", "/token"): Row(NOBODY, "/token", form={"grant_type": "client_credentials"}),
        ("POST", "/revoke"): Row(NOBODY, "/revoke", form={"token": "x"}),
        ("POST", "/introspect"): Row(NOBODY, "/introspect", form={"token": "x"}),
        ("POST", "/par"): Row(NOBODY, "/par", form={"response_type": "code"}),  # client authentication of its own
        # OIDC userinfo answers any signed-in account's token, a third party's `openid` one included (that is what
        # `openid` is for), but no client token
        ("GET", "/userinfo"): Row(allow(SIGNED_IN, UNLINKED, THIRD), "/userinfo"),
        # own account (R-ID-01, R-ID-10)
        ("GET", "/accounts/me"): Row(own, "/accounts/me"),
        ("GET", "/accounts/me/totp"): Row(own, "/accounts/me/totp"),
        ("POST", "/accounts/me/totp"): Row(own, "/accounts/me/totp"),
        ("POST", "/accounts/me/totp/confirm"): Row(own, "/accounts/me/totp/confirm", {"code": "000000"}),
        ("POST", "/accounts/me/totp/disable"): Row(own, "/accounts/me/totp/disable", {"code": "000000"}),
        ("GET", "/accounts/me/federated-identities"): Row(own, "/accounts/me/federated-identities"),
        ("POST", "/accounts/me/federated-identities"): Row(own, "/accounts/me/federated-identities"),
        # operators' acts on accounts and clients (a victim account and a spare client)
        ("POST", "/staff-accounts"): Row(allow(OPERATOR), "/staff-accounts", {
            "email": "staff2@matrix.example.jp", "password": PASSWORD, "real_name": "職員", "kind": "bureau",
            "bureau_id": BLOCK}),
        ("POST", "/accounts/{account_id}/revoke"): Row(allow(OPERATOR), f"/accounts/{x['victim']}/revoke",
                                                      {"reason": "R-DSP-13 case"}),
        ("POST", "/accounts/{account_id}/totp/reset"): Row(allow(OPERATOR), f"/accounts/{x['victim']}/totp/reset"),
        ("POST", "/clients"): Row(allow(OPERATOR), "/clients", {"name": "x", "confidential": True, "scopes": [],
                                                                "grant_types": ["client_credentials"]}),
        ("POST", "/clients/{client_id}/revoke"): Row(allow(OPERATOR), f"/clients/{x['spare_client']}/revoke"),
        # R-EXT-04: the agency (or an operator) changes a partner's tier, with a reason
        ("PUT", "/clients/{client_id}/tier"): Row(allow(AGENCY, OPERATOR), f"/clients/{x['partner2']}/tier",
                                                  {"tier": "standard", "reason": "matrix tier change"}),
        ("GET", "/clients/{client_id}/webhook-deliveries"): Row(allow(OPERATOR),
                                                                f"/clients/{x['spare_client']}/webhook-deliveries"),
        # a client's own audit export needs its token's `audit:read`, which no persona here holds (R-EXT-04)
        ("GET", "/clients/me/audit"): Row(NOBODY, "/clients/me/audit"),
        # developer onboarding (R-EXT-01): any signed-in person registers an organisation; applications are their
        # owner's (and the agency's) only, "not found" to everyone else (tests/integration/test_ext_onboarding.py)
        ("POST", "/developer/orgs"): Row(allow(SIGNED_IN, "unlinked_institution"), "/developer/orgs",
                                         {"name": "x", "contact_email": "a@b.jp"}),  # any person with a portal token
        ("POST", "/developer/orgs/{org_id}/apps"): Row(NOBODY, "/developer/orgs/dev-none/apps", {"name": "x"}, hides=True),
        ("GET", "/developer/apps/{app_id}"): Row(NOBODY, "/developer/apps/app-none", hides=True),
        ("POST", "/developer/apps/{app_id}/apply"): Row(NOBODY, "/developer/apps/app-none/apply", {
            "jwks": {"keys": []}, "redirect_uris": ["https://x.example/cb"], "answers": {}}, hides=True),
        ("POST", "/developer/apps/{app_id}/review"): Row(NOBODY, "/developer/apps/app-none/review",
                                                         {"decision": "return"}, hides=True),
        # businesses and the once-only profile (R-ID-03, R-ID-07, R-ID-08)
        ("GET", "/businesses"): Row(allow(BUSINESSES, OPERATOR), "/businesses"),
        ("POST", "/businesses"): Row(allow(BUSINESSES, OPERATOR), "/businesses", {
            k: v for k, v in PROFILE.items() if k != "corporate_number"}),
        ("GET", "/businesses/{business_id}"): Row(allow(BIZ_PEOPLE, DLG, OPERATOR), f"/businesses/{bid}", hides=True),
        ("PATCH", "/businesses/{business_id}"): Row(allow(BIZ_PEOPLE, DLG, OPERATOR), f"/businesses/{bid}",
                                                    {"employees": 49}, hides=True),
        ("GET", "/businesses/{business_id}/history"): Row(allow(BIZ_PEOPLE, DLG, OPERATOR), f"/businesses/{bid}/history",
                                                          hides=True),
        # R-REC-06 CSV import: as the profile change (no body here: 415 once past authorization, nothing applied)
        ("POST", "/businesses/{business_id}/financials/import"): Row(allow(BIZ_PEOPLE, DLG, OPERATOR),
                                                                    f"/businesses/{bid}/financials/import", hides=True),
        ("POST", "/businesses/{business_id}/prime-proof"): Row(BUSINESSES, f"/businesses/{bid}/prime-proof",
                                                               {"code": "1"}),
        ("GET", "/letters"): Row(allow(OPERATOR), "/letters"),
        ("GET", "/letters/{letter_id}.pdf"): Row(allow(OPERATOR), "/letters/ltr-none.pdf"),
        ("POST", "/letters/{letter_id}/posted"): Row(allow(OPERATOR), "/letters/ltr-none/posted"),
        ("GET", "/businesses/{business_id}/members"): Row(BIZ_PEOPLE, f"/businesses/{bid}/members", hides=True),
        ("POST", "/businesses/{business_id}/invitations"): Row(allow(PRIME), f"/businesses/{bid}/invitations",
                                                               {"email": "clerk@matrix.example.jp"}, hides=True),
        ("GET", "/invitations"): Row(BUSINESSES, "/invitations"),
        # nobody here is invited: 404 "no invitation" for a business account, refusal for everyone else
        ("POST", "/businesses/{business_id}/invitations/accept"): Row(BUSINESSES,
                                                                      f"/businesses/{bid}/invitations/accept"),
        ("DELETE", "/businesses/{business_id}/members/{account_id}"): Row(
            allow(PRIME), f"/businesses/{bid}/members/{x['member2']}", hides=True, prepare=member2_bound),
        ("POST", "/businesses/{business_id}/delegations"): Row(
            allow(PRIME), f"/businesses/{bid}/delegations", {"org_id": x["shinkin"], "scopes": ["profile:read"],
                                                            "days": 1}, hides=True),
        ("GET", "/businesses/{business_id}/delegations"): Row(BIZ_PEOPLE, f"/businesses/{bid}/delegations", hides=True),
        ("GET", "/delegations"): Row(INSTITUTIONS, "/delegations"),
        ("POST", "/delegations/{delegation_id}/revoke"): Row(allow(PRIME, OPERATOR),
                                                            f"/delegations/{x['spare_dlg']}/revoke", hides=True),
        # consents and prefill (R-ID-04): the business itself (never a delegate) and the consented client
        ("GET", "/businesses/{business_id}/consents"): Row(allow(BIZ_PEOPLE, OPERATOR), f"/businesses/{bid}/consents",
                                                           hides=True),
        ("POST", "/businesses/{business_id}/consents"): Row(allow(BIZ_PEOPLE, OPERATOR), f"/businesses/{bid}/consents",
                                                            {"client_id": x["partner"]}, hides=True),
        ("DELETE", "/businesses/{business_id}/consents/{client_id}"): Row(
            allow(BIZ_PEOPLE, OPERATOR), f"/businesses/{bid}/consents/{x['partner2']}", hides=True,
            prepare=consent_granted),
        ("GET", "/businesses/{business_id}/prefill-reads"): Row(allow(BIZ_PEOPLE, OPERATOR),
                                                                f"/businesses/{bid}/prefill-reads", hides=True),
        ("GET", "/prefill/{corporate_number}"): Row(allow(SCOPED), f"/prefill/{PROFILE['corporate_number']}"),
        ("GET", "/prefill/businesses/{business_id}"): Row(allow(SCOPED), f"/prefill/businesses/{bid}"),
        # disclosure requests (R-ANC-05)
        ("GET", "/businesses/{business_id}/disclosure-requests"): Row(
            allow(BIZ_PEOPLE, OPERATOR), f"/businesses/{bid}/disclosure-requests", hides=True),
        ("POST", "/disclosure-requests"): Row(INSTITUTIONS, "/disclosure-requests", {"business_id": bid, "purpose": "x"}),
        ("GET", "/disclosure-requests"): Row(INSTITUTIONS, "/disclosure-requests"),
        ("POST", "/disclosure-requests/{request_id}/approve"): Row(
            allow(BIZ_PEOPLE, OPERATOR), f"/disclosure-requests/{x['dr_pending']}/approve", hides=True),
        ("POST", "/disclosure-requests/{request_id}/reject"): Row(
            allow(BIZ_PEOPLE, OPERATOR), f"/disclosure-requests/{x['dr_pending']}/reject", hides=True),
        ("POST", "/disclosure-requests/{request_id}/revoke"): Row(
            allow(BIZ_PEOPLE, OPERATOR), f"/disclosure-requests/{x['dr_pending']}/revoke", hides=True),
        ("GET", "/disclosure-requests/{request_id}/profile"): Row(
            allow(DLG), f"/disclosure-requests/{x['dr_approved']}/profile", hides=True),
        # organisations and platforms (R-PF-01..05)
        ("POST", "/organisations"): Row(allow(BUREAUS, OPERATOR), "/organisations", {"name": "x", "kind": "body"}),
        # R-OPS-02: operators find accounts and businesses and read anything's audit trail across services
        ("GET", "/operator/audit"): Row(allow(OPERATOR), f"/operator/audit?ref={bid}"),
        ("GET", "/operator/accounts"): Row(allow(OPERATOR), "/operator/accounts?q=matrix"),
        ("GET", "/operator/businesses"): Row(allow(OPERATOR), "/operator/businesses?q=matrix"),
        ("GET", "/organisations/{org_id}"): Row(allow(BUREAUS, AGENCY, OPERATOR, INSTITUTIONS),
                                                f"/organisations/{x['rep']}"),
        # R-PF-05: linking staff hands over the organisation's platform rights: only the bureau of its block
        ("POST", "/organisations/{org_id}/staff"): Row(allow(BUREAU, OPERATOR), f"/organisations/{x['shinkin']}/staff",
                                                       {"account_id": x["spare_staff"]}),
        ("POST", "/platforms"): Row(allow(BUREAU, OPERATOR), "/platforms", {
            "name": "PF2", "bureau_id": BLOCK, "fiscal_year": FY, "representative_id": x["rep"],
            "member_ids": [x["rep"], x["dm"], x["shinkin"], x["yorozu"]]}),
        ("GET", "/platforms/{platform_id}"): Row(allow(BUREAU, AGENCY, OPERATOR, INSTITUTIONS), f"/platforms/{pid}"),
        ("POST", "/platforms/{platform_id}/renewals"): Row(allow(BUREAU, OPERATOR), f"/platforms/{pid}/renewals",
                                                           {"fiscal_year": FY + 1}),
        ("POST", "/platforms/{platform_id}/members"): Row(allow(BUREAU, OPERATOR), f"/platforms/{pid}/members",
                                                          {"org_id": x["extra_org"]}),
        ("DELETE", "/platforms/{platform_id}/members/{org_id}"): Row(
            allow(BUREAU, OPERATOR), f"/platforms/{pid}/members/{x['extra_org']}", prepare=extra_member),
        ("PUT", "/platforms/{platform_id}/area"): Row(allow(BUREAU, OPERATOR), f"/platforms/{pid}/area",
                                                      {"prefectures": ["熊本県"], "municipalities": ["熊本県熊本市"]}),
        # the public directory and finder (R-POR-07): published, no token needed
        ("GET", "/directory/platforms"): Row(PUBLIC, "/directory/platforms?prefecture=熊本県"),
        ("GET", "/directory/platforms/{platform_id}"): Row(PUBLIC, f"/directory/platforms/{pid}"),
        ("GET", "/directory/institutions"): Row(PUBLIC, "/directory/institutions?certified=true"),
        # the developer portal's page of the APIs and the merged documents (R-EXT-04): published
        ("GET", "/developers/apis"): Row(PUBLIC, "/developers/apis"),
        ("GET", "/developers/openapi.json"): Row(PUBLIC, "/developers/openapi.json"),
        ("GET", "/developers/asyncapi.json"): Row(PUBLIC, "/developers/asyncapi.json"),
    }


def experts_rows(w: World) -> dict:
    x = w.x
    e, e2 = x["expert_id"], x["expert2_id"]
    searchers = allow(INSTITUTIONS, BUREAUS, STAFF)  # the directory is restricted to institutions and staff (R-ANC-02)
    page = {"name": "山田 花子", "qualifications": ["中小企業診断士"], "fields": ["sales_channels"], "regions": ["熊本県"]}
    return {
        ("GET", "/healthz"): Row(PUBLIC, "/healthz"),
        ("GET", "/metrics"): Row(PUBLIC, "/metrics"),  # the scraper's, on the internal network; the gateway does not route it
        ("GET", "/readyz"): Row(PUBLIC, "/readyz"),
        ("POST", "/experts/me"): Row(allow(EXPERT), "/experts/me", page),
        ("GET", "/experts/me"): Row(allow(EXPERT), "/experts/me"),
        ("GET", "/experts/me/history"): Row(allow(EXPERT), "/experts/me/history"),
        ("PUT", "/experts/me/profile"): Row(allow(EXPERT), "/experts/me/profile",
                                            {k: v for k, v in page.items() if k != "name"}),
        ("PUT", "/experts/me/availability"): Row(allow(EXPERT), "/experts/me/availability", {"windows": []}),
        ("PUT", "/experts/me/capacity"): Row(allow(EXPERT), "/experts/me/capacity", {"paused": False}),
        ("POST", "/experts/me/consents"): Row(allow(EXPERT), "/experts/me/consents", {"org_id": x["rep"]}),
        ("POST", "/experts/me/application"): Row(allow(EXPERT), "/experts/me/application", {
            "evidence": [{"route": "public_qualification", "qualification": "中小企業診断士"}],
            "no_disqualification": True}),
        ("POST", "/experts/me/renewal"): Row(allow(EXPERT), "/experts/me/renewal"),
        # R-PF-04: an institution acts for its own organisation, with the right to recommend
        ("POST", "/experts/{expert_id}/recommendations"): Row(allow(DLG), f"/experts/{e2}/recommendations",
                                                             {"org_id": x["rep"]}),
        ("GET", "/institutions/{org_id}/recommendees"): Row(allow(DLG), f"/institutions/{x['rep']}/recommendees"),
        ("GET", "/reviews/applications"): Row(STAFF, "/reviews/applications"),
        ("GET", "/reviews/renewals"): Row(STAFF, "/reviews/renewals"),
        ("GET", "/experts/{expert_id}/dossier"): Row(STAFF, f"/experts/{e}/dossier"),
        # the agency's acts, on a second expert so that E stays registered
        ("POST", "/experts/{expert_id}/review"): Row(allow(AGENCY), f"/experts/{e2}/review", {"decision": "return",
                                                                                             "reasons": ["x"]}),
        ("POST", "/experts/{expert_id}/renewal-review"): Row(allow(AGENCY), f"/experts/{e2}/renewal-review",
                                                             {"decision": "renew"}),
        ("POST", "/experts/{expert_id}/suspend"): Row(allow(AGENCY), f"/experts/{e2}/suspend", {"reason": "x"}),
        ("POST", "/experts/{expert_id}/reinstate"): Row(allow(AGENCY), f"/experts/{e2}/reinstate"),
        ("POST", "/experts/{expert_id}/exit"): Row(allow(AGENCY), f"/experts/{e2}/exit", {"reason": "x"}),
        ("POST", "/registrations/expire-lapsed"): Row(STAFF, "/registrations/expire-lapsed"),
        ("GET", "/settings/directory"): Row(STAFF, "/settings/directory"),
        ("PUT", "/settings/directory"): Row(allow(OPERATOR), "/settings/directory", {"visibility": "institutions"}),
        ("GET", "/experts"): Row(searchers, "/experts?q=販路"),
        ("GET", "/experts/suggestions"): Row(searchers, "/experts/suggestions?field=sales_channels&region=熊本県"),
        ("GET", "/experts/{expert_id}"): Row(searchers, f"/experts/{e}"),
    }


def dispatch_rows(w: World) -> dict:
    x = w.x
    bid, d1, d2, d3 = x["bid"], x["d1"], x["d2"], x["d3"]

    def route_a(principal: str) -> dict:  # the caller's own institution: what is missing is the delegation
        return {**_request_body(bid, x["expert_id"]), "institution_id": w.org_of.get(principal, x["rep"])}

    parties = allow(BIZ_PEOPLE, DLG, EXPERT, STAFF)  # of a route-A dispatch of BIZ requested by REP with expert E
    return {
        ("GET", "/healthz"): Row(PUBLIC, "/healthz"),
        ("GET", "/metrics"): Row(PUBLIC, "/metrics"),  # the scraper's, on the internal network; the gateway does not route it
        ("GET", "/readyz"): Row(PUBLIC, "/readyz"),
        # R-OPS-01: each role its own list (a business its own, an institution its own organisation's)
        ("GET", "/worklists/business"): (
            Row(BUSINESSES, "/worklists/business", case="the caller's own business"),
            Row(BIZ_PEOPLE, f"/worklists/business?business_id={bid}", case="BIZ named: only its people")),
        ("GET", "/worklists/institution"): Row(INSTITUTIONS, "/worklists/institution"),
        ("GET", "/worklists/expert"): Row(allow(EXPERT), "/worklists/expert?queue=reports"),
        ("GET", "/worklists/agency"): Row(STAFF, "/worklists/agency?queue=reports"),
        ("POST", "/requests"): (
            Row(allow(DLG), "/requests", route_a, case="route A for BIZ: only staff holding BIZ's delegation"),
            Row(BIZ_PEOPLE, "/requests", {**_request_body(bid, x["expert_id"])},
                case="route B in BIZ's name: only BIZ's own accounts, never another business"),
        ),
        ("GET", "/requests/{dispatch_id}"): Row(parties, f"/requests/{d1}", hides=True),
        ("POST", "/requests/{dispatch_id}/cosign"): Row(allow(EXPERT), f"/requests/{x['route_b']}/cosign", hides=True),
        ("POST", "/requests/{dispatch_id}/schedule"): Row(allow(DLG, STAFF), f"/requests/{d2}/schedule", {},
                                                          hides=True),
        ("POST", "/requests/{dispatch_id}/visits"): Row(allow(EXPERT), f"/requests/{d2}/visits", {
            "location": {"lat": 32.8, "lon": 130.7, "place": "office"}}, hides=True),
        ("POST", "/requests/{dispatch_id}/visits/{visit_id}/check-out"): Row(
            allow(EXPERT), f"/requests/{d2}/visits/{x['v2']}/check-out", {"location": {"lat": 32.8, "lon": 130.7}},
            hides=True),
        ("POST", "/requests/{dispatch_id}/visits/declarations"): Row(
            allow(EXPERT), f"/requests/{d2}/visits/declarations", _declaration(x["v2"]), hides=True),
        # the business signs off its own visits: never its delegate, never another business (R-ID-08, R-ANC-01)
        ("POST", "/requests/{dispatch_id}/visits/{visit_id}/sign-off"): Row(
            BIZ_PEOPLE, f"/requests/{d2}/visits/{x['v2']}/sign-off", {}, hides=True),
        ("POST", "/requests/{dispatch_id}/report"): Row(allow(EXPERT), f"/requests/{d2}/report", {
            "summary": "Mapped the channels; proposed a pilot."}, hides=True),
        ("POST", "/requests/{dispatch_id}/confirm"): Row(STAFF, f"/requests/{d2}/confirm", {"travel": 1000}, hides=True),
        ("POST", "/requests/{dispatch_id}/cancel"): Row(allow(BIZ_PEOPLE, DLG, STAFF), f"/requests/{d3}/cancel",
                                                        {"reason": "solved otherwise"}, hides=True),
        # R-DSP-08/14: only the agency (and operators) retry a dispatch the budget left unanswered (409 otherwise)
        ("POST", "/requests/{dispatch_id}/budget-retry"): Row(STAFF, f"/requests/{d2}/budget-retry", hides=True),
        ("POST", "/requests/{dispatch_id}/shortfall"): Row(STAFF, f"/requests/{d2}/shortfall",
                                                           {"decision": "written_off", "note": "frame exhausted"},
                                                           hides=True),
        # R-DSP-15: the agency's integrity queue; only the agency reviews (404 for a flag that does not exist)
        ("GET", "/integrity/flags"): Row(STAFF, "/integrity/flags"),
        ("POST", "/integrity/flags/{flag_id}/review"): Row(allow(AGENCY), "/integrity/flags/flag-none/review",
                                                           {"decision": "dismissed", "note": "no concern"}),
        # R-REC-08: the business answers its own surveys (409 while none is scheduled); the KPI for the agency,
        # operators and bureaus (a bureau sees its own block's)
        ("POST", "/requests/{dispatch_id}/outcomes/{months}"): Row(BIZ_PEOPLE, f"/requests/{d2}/outcomes/3",
                                                                   {"results_achieved": True}, hides=True),
        ("GET", "/outcomes/kpi"): Row(allow(STAFF, BUREAUS), "/outcomes/kpi"),
        # R-REC-07 EBPM reports: nationally, a bureau's own block, an institution its own requests (linked staff)
        ("GET", "/reports/ebpm/uptake"): Row(allow(STAFF, BUREAUS, INSTITUTIONS), "/reports/ebpm/uptake"),
        ("GET", "/reports/ebpm/outcomes"): Row(allow(STAFF, BUREAUS, INSTITUTIONS), "/reports/ebpm/outcomes?format=csv"),
        # R-EX-06: the dispatched expert acknowledges; only the agency reassigns (422 for an unknown expert)
        ("POST", "/requests/{dispatch_id}/acknowledge"): Row(allow(EXPERT), f"/requests/{d2}/acknowledge", hides=True),
        ("POST", "/requests/{dispatch_id}/reassign"): Row(allow(AGENCY), f"/requests/{d2}/reassign",
                                                          {"expert_id": "ex-none", "reason": "no answer"}, hides=True),
        ("GET", "/requests/{dispatch_id}/findings"): Row(STAFF, f"/requests/{d2}/findings", hides=True),
        # R-DSP-13: only the agency settles a refund claim (409 on a dispatch without one)
        ("POST", "/requests/{dispatch_id}/refund"): Row(allow(AGENCY), f"/requests/{d2}/refund",
                                                        {"decision": "written_off", "note": "not recoverable"},
                                                        hides=True),
        # R-DSP-05: the requesting institution's staff follow the business up (409 before the report)
        ("POST", "/requests/{dispatch_id}/follow-ups"): Row(allow(DLG), f"/requests/{d2}/follow-ups",
                                                            {"note": "sales channel pilot running"}, hides=True),
        ("POST", "/requests/{dispatch_id}/refuse"): Row(allow(AGENCY), f"/requests/{d3}/refuse",
                                                        {"reason": "unsuitable request"}, hides=True),
        # fraud revokes the accounts involved (R-DSP-13): role-gated on a dispatch that does not exist
        ("POST", "/requests/{dispatch_id}/fraud"): Row(allow(AGENCY), "/requests/dsp-none/fraud",
                                                       {"reason": "collusion proven"}),
        # R-DSP-03 per business: BIZ, its delegate for dispatch:read, the agency; not another business (issue 13)
        ("GET", "/businesses/{business_id}/free-dispatches"): Row(allow(BIZ_PEOPLE, DLG, STAFF),
                                                                  f"/businesses/{bid}/free-dispatches", hides=True),
        ("GET", "/programmes/{fiscal_year}"): Row(SIGNED_IN, f"/programmes/{FY}"),
        # web consultations (R-DSP-02b): opened by the business itself, in its own name only
        ("POST", "/consultations"): Row(BIZ_PEOPLE, "/consultations", {
            "business_id": bid, "expert_id": x["expert_id"], "subject": "販路開拓", "message": "相談したい"},
            case="in BIZ's name: another business's account is refused"),
        ("GET", "/consultations/{consultation_id}"): Row(allow(BIZ_PEOPLE, EXPERT, STAFF),
                                                         f"/consultations/{x['consultation']}", hides=True),
        ("POST", "/consultations/{consultation_id}/messages"): Row(
            allow(BIZ_PEOPLE, EXPERT), f"/consultations/{x['consultation']}/messages", {"text": "追記"}, hides=True),
        ("POST", "/consultations/{consultation_id}/held"): Row(allow(EXPERT), f"/consultations/{x['consultation']}/held",
                                                               hides=True),
        # R-POR-06 support history: institutions' staff log for their own institution; the business, institutions (their
        # own entries, the others' only while shared) and the agency for oversight read; the business alone shares
        # and withdraws, in its own name only (another business is refused for BIZ)
        ("POST", "/support-history/entries"): Row(INSTITUTIONS, "/support-history/entries", {
            "business_id": bid, "consulted_on": (date.today() - timedelta(days=1)).isoformat(), "topic": "資金繰り",
            "summary": "運転資金の相談"}),
        ("GET", "/support-history"): Row(allow(BIZ_PEOPLE, INSTITUTIONS, STAFF), f"/support-history?business_id={bid}"),
        ("POST", "/support-history/grants"): Row(BIZ_PEOPLE, "/support-history/grants",
                                                 {"org_id": x["shinkin"], "business_id": bid}),
        ("POST", "/support-history/grants/{org_id}/withdraw"): Row(
            BIZ_PEOPLE, f"/support-history/grants/{x['shinkin']}/withdraw", {"business_id": bid}),
        ("GET", "/support-history/grants"): Row(allow(BIZ_PEOPLE, STAFF), f"/support-history/grants?business_id={bid}"),
        ("GET", "/support-history/shared"): Row(INSTITUTIONS, "/support-history/shared"),
        ("GET", "/support-history/reads"): Row(allow(BIZ_PEOPLE, STAFF), f"/support-history/reads?business_id={bid}"),
    }


def budget_rows(w: World) -> dict:
    x = w.x
    fid, dm = x["frame"], x["dm"]
    return {
        ("GET", "/healthz"): Row(PUBLIC, "/healthz"),
        ("GET", "/metrics"): Row(PUBLIC, "/metrics"),  # the scraper's, on the internal network; the gateway does not route it
        ("GET", "/readyz"): Row(PUBLIC, "/readyz"),
        ("POST", "/frames"): Row(allow(BUREAU), "/frames", {"fiscal_year": FY, "platform_id": x["pid"],
                                                           "fee": 1_000_000, "travel": 100_000}),
        # R-PF-04: staff of the representative see all; a member with the budget right sees the frame (its share)
        ("GET", "/frames/{frame_id}"): Row(allow(BUREAU, STAFF, INSTITUTIONS), f"/frames/{fid}"),
        ("GET", "/frames/{frame_id}/ledger"): Row(allow(BUREAU, STAFF, DLG), f"/frames/{fid}/ledger"),
        ("GET", "/frames/{frame_id}/check"): Row(allow(BUREAU, STAFF, DLG), f"/frames/{fid}/check"),
        ("POST", "/frames/{frame_id}/close"): Row(allow(BUREAU, AGENCY), f"/frames/{x['frame_next']}/close", {}),
        ("PUT", "/frames/{frame_id}/shares/{member_id}"): Row(allow(DLG), f"/frames/{fid}/shares/{dm}",
                                                              {"amount": 10_000}),
        ("POST", "/frames/{frame_id}/shares/{member_id}/return"): Row(allow(DLG), f"/frames/{fid}/shares/{dm}/return",
                                                                      {}),
        # every bureau gets a report (of what it may see); representatives theirs
        ("GET", "/reports"): Row(allow(BUREAUS, STAFF, DLG), "/reports"),
        ("GET", "/reports/ebpm/execution"): Row(allow(BUREAUS, STAFF, DLG), "/reports/ebpm/execution"),
    }


def ratings_rows(w: World) -> dict:
    x = w.x
    e = x["expert_id"]
    scores = {a: 4 for a in RATING_AXES}
    return {
        ("GET", "/healthz"): Row(PUBLIC, "/healthz"),
        ("GET", "/metrics"): Row(PUBLIC, "/metrics"),  # the scraper's, on the internal network; the gateway does not route it
        ("GET", "/readyz"): Row(PUBLIC, "/readyz"),
        # the business rates (prime or member), and the requesting institution's staff as institution (R-RAT-01);
        # a delegate never rates for the business (R-ID-08): DLG's own rating is the institution's
        ("POST", "/ratings"): Row(allow(BIZ_PEOPLE, DLG), "/ratings", {"dispatch_id": x["d1"], "scores": scores}),
        ("GET", "/pending"): Row(SIGNED_IN, "/pending"),
        ("GET", "/experts/{expert_id}/radar"): Row(SIGNED_IN, f"/experts/{e}/radar"),
        ("GET", "/experts/{expert_id}/radar.svg"): Row(SIGNED_IN, f"/experts/{e}/radar.svg"),
        ("GET", "/experts/{expert_id}/comments"): Row(SIGNED_IN, f"/experts/{e}/comments"),
        ("GET", "/moderation"): Row(STAFF, "/moderation"),
        ("POST", "/comments/{owed_id}/moderation"): Row(STAFF, f"/comments/{x['owed_comment']}/moderation",
                                                        {"decision": "approved"}),
        ("POST", "/evaluations"): Row(allow(DLG), "/evaluations", {"dispatch_id": x["d1"], "items": {
            "issue_handling": 4, "strategy_building": 4, "knowledge": 5, "execution_capability": 3}}),
        # R-RAT-04: private to the agency and operators until the fiscal year ends
        ("GET", "/experts/{expert_id}/evaluations"): Row(STAFF, f"/experts/{e}/evaluations?fiscal_year={FY}"),
        ("POST", "/classification/{fiscal_year}"): Row(STAFF, f"/classification/{FY - 1}"),
        ("GET", "/experts/{expert_id}/classification"): Row(SIGNED_IN, f"/experts/{e}/classification"),
    }


def notifications_rows(w: World) -> dict:
    x = w.x
    return {
        ("GET", "/healthz"): Row(PUBLIC, "/healthz"),
        ("GET", "/metrics"): Row(PUBLIC, "/metrics"),  # the scraper's, on the internal network; the gateway does not route it
        ("GET", "/readyz"): Row(PUBLIC, "/readyz"),
        ("GET", "/inbox"): Row(SIGNED_IN, "/inbox"),
        ("POST", "/inbox/{item_id}/read"): Row(allow(PRIME), f"/inbox/{x['inbox_item']}/read", hides=True),
        ("GET", "/prompts"): Row(SIGNED_IN, "/prompts"),
        ("GET", "/me/contact"): Row(SIGNED_IN, "/me/contact"),
        ("PUT", "/me/contact"): Row(SIGNED_IN, "/me/contact", {"email": "me@matrix.example.jp", "language": "ja"}),
        ("GET", "/deliveries"): Row(allow(PRIME, OPERATOR), f"/deliveries?recipient_id={w.ids[PRIME]}"),
        # R-NOT-04: each person's own channels and preferences
        ("GET", "/me/preferences"): Row(SIGNED_IN, "/me/preferences"),
        ("PUT", "/me/preferences"): Row(SIGNED_IN, "/me/preferences", {"channels": ["email"]}),
        ("GET", "/webpush/key"): Row(SIGNED_IN, "/webpush/key"),
        ("POST", "/me/push-subscriptions"): Row(SIGNED_IN, "/me/push-subscriptions", {
            "endpoint": "https://push.example.jp/matrix", "keys": {
                "p256dh": "BJU1tl9G1YKm9hqmgp5AQkIhY0paOmhUN-B18GAmEcYPHrRztDyvTDWa1peEoz70FXrsp12XYHDKtHpU0pqBtYU",
                "auth": "AAAAAAAAAAAAAAAAAAAAAA"}}),
        ("DELETE", "/me/push-subscriptions/{subscription_id}"): Row(SIGNED_IN, "/me/push-subscriptions/none"),
        ("PUT", "/me/line"): Row(SIGNED_IN, "/me/line", {"user_id": "U" + "0" * 32}),
        ("DELETE", "/me/line"): Row(SIGNED_IN, "/me/line"),
        # signed by the messaging app (X-Line-Signature), never by a token: no caller here has the signature
        ("POST", "/line/webhook"): Row(NOBODY, "/line/webhook", {"events": []}),
        # RFC 8058: the link is the credential (an HMAC); an unknown one is 404 for everyone
        ("GET", "/unsubscribe/{token}"): Row(PUBLIC, "/unsubscribe/unknown"),
        ("POST", "/unsubscribe/{token}"): Row(PUBLIC, "/unsubscribe/unknown", form={"List-Unsubscribe": "One-Click"}),
        ("POST", "/bounces"): Row(allow(OPERATOR), "/bounces", {"not": "a DSN"}),
        ("POST", "/me/saved-searches"): Row(SIGNED_IN, "/me/saved-searches", {"kind": "programme", "name": "matrix"}),
        ("GET", "/me/saved-searches"): Row(SIGNED_IN, "/me/saved-searches"),
        ("DELETE", "/me/saved-searches/{search_id}"): Row(SIGNED_IN, "/me/saved-searches/none"),
    }


def recommend_rows(w: World) -> dict:
    x = w.x
    bid, app, upl = x["bid"], x["application"], x["upload"]
    readers = allow(BIZ_PEOPLE, DLG, OPERATOR)  # BIZ, its delegate for profile:read, operators
    return {
        ("GET", "/healthz"): Row(PUBLIC, "/healthz"),
        ("GET", "/metrics"): Row(PUBLIC, "/metrics"),  # the scraper's, on the internal network; the gateway does not route it
        ("GET", "/readyz"): Row(PUBLIC, "/readyz"),
        ("GET", "/programmes"): Row(SIGNED_IN, "/programmes"),
        ("GET", "/programmes/{programme_id}"): Row(SIGNED_IN, "/programmes/none"),
        ("POST", "/programmes"): Row(allow(OPERATOR), "/programmes", {
            "programme_id": f"matrix-{uuid.uuid4().hex[:8]}", "name": "テスト補助金", "fiscal_year": FY}),
        ("GET", "/businesses/{business_id}"): Row(readers, f"/businesses/{bid}"),
        ("GET", "/businesses/{business_id}/recommendations"): Row(readers, f"/businesses/{bid}/recommendations"),
        ("GET", "/businesses/{business_id}/diagnosis"): Row(readers, f"/businesses/{bid}/diagnosis"),
        ("GET", "/businesses/{business_id}/benchmark"): Row(readers, f"/businesses/{bid}/benchmark"),
        ("GET", "/businesses/{business_id}/benchmark.pdf"): Row(readers, f"/businesses/{bid}/benchmark.pdf"),
        ("POST", "/businesses/{business_id}/interactions"): Row(allow(BIZ_PEOPLE, OPERATOR),
                                                                f"/businesses/{bid}/interactions",
                                                                {"programme_id": x["programme"], "kind": "favourite"}),
        ("GET", "/analytics/programme-uptake"): Row(STAFF, "/analytics/programme-uptake"),
        # case studies (R-POR-08): the catalogue for every signed-in user, a business's matches as its programmes'
        ("GET", "/cases"): Row(SIGNED_IN, "/cases?q=事業承継"),
        ("GET", "/cases/{case_id}"): Row(SIGNED_IN, "/cases/case-01-shokei-seimitsu"),
        ("GET", "/businesses/{business_id}/case-recommendations"): Row(readers, f"/businesses/{bid}/case-recommendations"),
        ("GET", "/businesses/{business_id}/posting-recommendations"): Row(readers,
                                                                        f"/businesses/{bid}/posting-recommendations"),
        # application intake (R-POR-05): a business applies for itself (OTHER opens its own application); BIZ's
        # application is BIZ's people's, read by the agency (and operators), who review; anyone else gets 404
        ("POST", "/programmes/{programme_id}/applications"): Row(BUSINESSES, f"/programmes/{x['intake_programme']}/applications"),
        ("GET", "/applications/{application_id}"): Row(allow(BIZ_PEOPLE, STAFF), f"/applications/{app}", hides=True),
        ("PATCH", "/applications/{application_id}"): Row(BIZ_PEOPLE, f"/applications/{app}",
                                                         {"version": 1, "values": {}}, hides=True),
        ("POST", "/applications/{application_id}/submit"): Row(BIZ_PEOPLE, f"/applications/{app}/submit", hides=True),
        ("GET", "/applications"): Row(STAFF, "/applications?status=submitted"),
        ("POST", "/applications/{application_id}/review"): Row(STAFF, f"/applications/{app}/review",
                                                                {"decision": "accept"}, hides=True),
        ("POST", "/applications/{application_id}/uploads"): Row(BIZ_PEOPLE, f"/applications/{app}/uploads", {
            "document": "business_plan", "name": "plan.pdf", "size": 10, "sha256": "0" * 64,
            "content_type": "application/pdf"}, hides=True),
        ("GET", "/uploads/{upload_id}"): Row(BIZ_PEOPLE, f"/uploads/{upl}", hides=True),
        ("PUT", "/uploads/{upload_id}/chunks/{n}"): Row(BIZ_PEOPLE, f"/uploads/{upl}/chunks/0", hides=True),
        ("POST", "/uploads/{upload_id}/complete"): Row(BIZ_PEOPLE, f"/uploads/{upl}/complete", hides=True),
    }


def community_rows(w: World) -> dict:
    x = w.x
    tid, pid, mtid, mpid = x["thread"], x["post"], x["mod_thread"], x["mod_post"]
    pg, mid = x["posting"], x["match"]
    members = allow(BUSINESSES, EXPERT)  # who asks, answers and posts (founders too; none among these principals)
    contact = {"name": "行列 太郎", "email": "matrix@example.jp"}
    return {
        ("GET", "/healthz"): Row(PUBLIC, "/healthz"),
        ("GET", "/metrics"): Row(PUBLIC, "/metrics"),  # the scraper's, on the internal network; the gateway does not route it
        ("GET", "/readyz"): Row(PUBLIC, "/readyz"),
        # R-POR-02: businesses, senior owners and experts ask and answer; everyone signed in reads and reports
        ("POST", "/threads"): Row(members, "/threads", {"category": "sales", "title": "行列の質問", "body": "販路の相談です。"}),
        ("GET", "/threads"): Row(SIGNED_IN, "/threads?category=sales"),
        ("GET", "/threads/{thread_id}"): Row(SIGNED_IN, f"/threads/{tid}"),
        ("GET", "/threads/{thread_id}/posts"): Row(SIGNED_IN, f"/threads/{tid}/posts"),
        ("POST", "/threads/{thread_id}/posts"): Row(members, f"/threads/{tid}/posts", {"body": "回答です。"}),
        # only the asker (everyone acting for BIZ, whose prime asked) marks an answer
        ("POST", "/threads/{thread_id}/posts/{post_id}/mark"): Row(BIZ_PEOPLE, f"/threads/{tid}/posts/{pid}/mark",
                                                                   {"mark": "helpful"}),
        ("POST", "/threads/{thread_id}/reports"): Row(SIGNED_IN, f"/threads/{tid}/reports",
                                                      {"post_id": pid, "reason": "matrix report"}),
        # moderation is the agency's (and operators'); a repeated hold answers 409, past authorization
        ("POST", "/threads/{thread_id}/moderation"): Row(STAFF, f"/threads/{mtid}/moderation",
                                                         {"action": "hold", "reason": "matrix moderation"}),
        ("POST", "/threads/{thread_id}/posts/{post_id}/moderation"): Row(
            STAFF, f"/threads/{mtid}/posts/{mpid}/moderation", {"action": "hold", "reason": "matrix moderation"}),
        ("GET", "/moderation/reports"): Row(STAFF, "/moderation/reports"),
        ("POST", "/moderation/reports/{report_id}/dismiss"): Row(STAFF, f"/moderation/reports/{x['report']}/dismiss",
                                                                 {"reason": "matrix dismissal"}),
        # a senior owner is a business account that opted in
        ("GET", "/mentors/me"): Row(BUSINESSES, "/mentors/me"),
        ("PUT", "/mentors/me"): Row(BUSINESSES, "/mentors/me", {"mentor": False}),
        # R-POR-03: businesses post needs and offers, experts offer help beyond dispatch; everyone signed in searches
        ("POST", "/postings"): Row(members, "/postings", {
            "direction": "offer", "kind": "expert_help", "title": "行列の掲載", "body": "b", "region": "熊本県",
            "industry": "製造業", "contact": contact}),
        ("GET", "/postings"): Row(SIGNED_IN, "/postings?kind=successor&region=熊本県"),
        ("GET", "/postings/{posting_id}"): Row(SIGNED_IN, f"/postings/{pg}"),
        ("POST", "/postings/{posting_id}/close"): Row(BIZ_PEOPLE, f"/postings/{x['posting_to_close']}/close"),
        # BIZ may not be interested in its own posting (409, past authorization); OTHER's second call is 409 too
        ("POST", "/postings/{posting_id}/interests"): Row(members, f"/postings/{pg}/interests",
                                                          {"message": "関心があります", "contact": contact}),
        ("GET", "/postings/{posting_id}/interests"): Row(BIZ_PEOPLE, f"/postings/{pg}/interests"),
        ("GET", "/me/postings"): Row(members, "/me/postings"),
        ("GET", "/me/matches"): Row(members, "/me/matches"),
        # a match exists for its two sides only: BIZ's posting, OTHER's interest
        ("GET", "/matches/{match_id}"): Row(allow(BIZ_PEOPLE, OTHER), f"/matches/{mid}", hides=True),
        ("POST", "/matches/{match_id}/consent"): Row(allow(BIZ_PEOPLE, OTHER), f"/matches/{mid}/consent", hides=True),
        ("POST", "/matches/{match_id}/withdraw"): Row(allow(BIZ_PEOPLE, OTHER), f"/matches/{mid}/withdraw", hides=True),
        # R-POR-04: member institutions of the platform post joint orders (REP and DM both hold the joint-activities
        # right); businesses apply (a repeated application is 409, as is one after the award); only the posting
        # institution (REP's staff) sees the applications and awards (a second award is 409)
        ("POST", "/joint-orders"): Row(INSTITUTIONS, "/joint-orders", x["joint"]),
        ("GET", "/joint-orders"): Row(SIGNED_IN, "/joint-orders?prefecture=熊本県"),
        ("GET", "/joint-orders/{order_id}"): Row(SIGNED_IN, f"/joint-orders/{x['order']}"),
        ("POST", "/joint-orders/{order_id}/applications"): Row(BUSINESSES, f"/joint-orders/{x['order']}/applications",
                                                               {"lot_id": "lot-1"}),
        ("GET", "/joint-orders/{order_id}/applications"): Row(allow(DLG), f"/joint-orders/{x['order']}/applications"),
        ("POST", "/joint-orders/{order_id}/award"): Row(allow(DLG), f"/joint-orders/{x['order']}/award", {"awards": {}}),
        ("GET", "/me/joint-applications"): Row(BUSINESSES, "/me/joint-applications"),
    }


TABLES = {"identity": identity_rows, "experts": experts_rows, "dispatch": dispatch_rows, "budget": budget_rows,
          "ratings": ratings_rows, "notifications": notifications_rows, "recommend": recommend_rows,
          "community": community_rows}


def _request_body(business_id: str, expert_id: str) -> dict:
    return {"business_id": business_id, "expert_id": expert_id, "issue": ISSUE, "issue_kind": "sales_channels",
            "beyond_self_help": True, "needs_specialist": True, "travel_estimate": 2_000,
            "planned_visits": [{"day": DAY.isoformat(), "hours": 3}]}


def _declaration(visit_id: str) -> dict:
    start = datetime(DAY.year, DAY.month, DAY.day, 1, 0, tzinfo=UTC)
    return {"visit_id": visit_id, "start": start.isoformat(), "end": (start + timedelta(minutes=179)).isoformat(),
            "reason": "check-out recorded late", "signed": True, "signature": "山田 花子"}


# --- building the world ---------------------------------------------------------------------------------------------
async def _ok(r: httpx.Response, *codes: int) -> dict:
    assert r.status_code in (codes or (200, 201)), f"{r.request.method} {r.request.url}: {r.status_code} {r.text}"
    return r.json() if r.content else {}


def _third_party(access_token: str, client_id: str) -> dict:
    """The token identity issues to a third-party client granted only `openid` for the same account (R-ID-09): the
    account's claims, scope `openid`, that client — signed with identity's key."""
    from identity_service.keys import KeySet

    claims = {**jwt.decode(access_token, options={"verify_signature": False}), "scope": "openid",
              "client_id": client_id, "jti": uuid.uuid4().hex}
    kid = KeySet(private_key(), []).active_kid
    return {"authorization": f"Bearer {jwt.encode(claims, private_key(), algorithm='RS256', headers={'kid': kid})}"}


async def build_world(url: dict[str, str]) -> World:
    w = World(url=url)
    x, boot, tag = w.x, w.boot, uuid.uuid4().hex[:6]
    email = {p: f"{p.replace('_', '-')}-{tag}@matrix.example.jp" for p in PRINCIPALS}
    async with httpx.AsyncClient(base_url=url["identity"], timeout=30) as idh, httpx.AsyncClient(timeout=30) as http:
        # accounts: self-registered (verified by the mailed link) and staff created by an operator
        for p, kind in ((PRIME, "business"), (MEMBER, "business"), (OTHER, "business"), (DLG, "institution"),
                        (NODLG, "institution"), (UNLINKED, "institution"), (EXPERT, "expert")):
            w.ids[p] = (await signup(idh, email[p], kind=kind))["account_id"]
        for p, kind, block in ((BUREAU, "bureau", BLOCK), (BUREAU_X, "bureau", OTHER_BLOCK), (AGENCY, "agency", None),
                               (OPERATOR, "operator", None)):
            before = len(mails(email[p], "verify-email"))
            w.ids[p] = (await _ok(await idh.post("/staff-accounts", headers=boot, json={
                "email": email[p], "password": PASSWORD, "real_name": "職員 一郎", "kind": kind,
                "bureau_id": block})))["account_id"]
            await verify_email(idh, email[p], before)
        x["member2_email"] = f"member2-{tag}@matrix.example.jp"
        x["member2"] = (await signup(idh, x["member2_email"]))["account_id"]
        x["victim"] = (await signup(idh, f"victim-{tag}@matrix.example.jp"))["account_id"]
        x["spare_staff"] = (await signup(idh, f"spare-staff-{tag}@matrix.example.jp", kind="institution"))["account_id"]

        # organisations, staff links, the platform of BLOCK (R-PF-01/02)
        for key, name, t in (("rep", "熊本市商工会", 1), ("dm", "熊本商工会議所", 2), ("shinkin", "肥後信用金庫", 8),
                             ("yorozu", "よろず支援拠点", None)):
            x[key] = (await _ok(await idh.post("/organisations", headers=boot, json={
                "name": name, "kind": "institution", "institution_type": t})))["org_id"]
        x["extra_org"] = (await _ok(await idh.post("/organisations", headers=boot, json={
            "name": "熊本大学", "kind": "body"})))["org_id"]
        for p, org in ((DLG, x["rep"]), (NODLG, x["dm"])):
            await _ok(await idh.post(f"/organisations/{org}/staff", headers=boot, json={"account_id": w.ids[p]}), 204)
            w.org_of[p] = org
        x["pid"] = (await _ok(await idh.post("/platforms", headers=boot, json={
            "name": "熊本県地域プラットフォーム", "bureau_id": BLOCK, "fiscal_year": FY, "representative_id": x["rep"],
            "member_ids": [x["rep"], x["dm"], x["shinkin"], x["yorozu"]],
            "area": {"prefectures": ["熊本県"]}})))["platform_id"]

        # BIZ: a corporation proven by the letter's code, a member, delegations; another business
        as_ = {p: bearer(w.ids[p], ["business"]) for p in BUSINESSES}
        x["bid"] = bid = await prove_prime(idh, as_[PRIME])
        for who, mail in ((as_[MEMBER], email[MEMBER]), (bearer(x["member2"], ["business"]), x["member2_email"])):
            await _ok(await idh.post(f"/businesses/{bid}/invitations", headers=as_[PRIME], json={"email": mail}))
            await _ok(await idh.post(f"/businesses/{bid}/invitations/accept", headers=who))
        founder = {k: v for k, v in PROFILE.items() if k != "corporate_number"}
        x["other_bid"] = (await _ok(await idh.post("/businesses", headers=as_[OTHER], json=founder)))["business_id"]
        await _ok(await idh.post(f"/businesses/{bid}/delegations", headers=as_[PRIME], json={
            "org_id": x["rep"], "scopes": list(DELEGATION_SCOPES), "days": 30}))
        x["spare_dlg"] = (await _ok(await idh.post(f"/businesses/{bid}/delegations", headers=as_[PRIME], json={
            "org_id": x["shinkin"], "scopes": ["profile:read"], "days": 1})))["delegation_id"]

        # clients: the portal (first party), a third party granted `openid` only, consented prefill partners
        portal = await portal_client(idh, headers=boot)
        third = await _ok(await idh.post("/clients", headers=boot, json={
            "name": "家計簿アプリ", "confidential": False, "redirect_uris": [REDIRECT], "scopes": ["openid"],
            "grant_types": ["authorization_code"]}))
        partner = await partner_client(idh, ["prefill:read"])
        x["partner"] = partner["client_id"]
        x["partner2"] = (await partner_client(idh, ["prefill:read"], name="spare partner"))["client_id"]
        bare = await partner_client(idh, [], name="no scope")
        x["spare_client"] = (await partner_client(idh, [], name="to revoke"))["client_id"]
        for client in (x["partner"], x["partner2"]):
            await _ok(await idh.post(f"/businesses/{bid}/consents", headers=as_[PRIME], json={"client_id": client}), 201)

        # disclosure requests of REP (R-ANC-05): one pending, one approved
        staff_dlg = bearer(w.ids[DLG], ["institution"])
        x["dr_pending"], x["dr_approved"] = [(await _ok(await idh.post("/disclosure-requests", headers=staff_dlg, json={
            "business_id": bid, "purpose": p})))["request_id"] for p in ("a", "b")]
        await _ok(await idh.post(f"/disclosure-requests/{x['dr_approved']}/approve", headers=as_[PRIME]))

        # tokens as identity issues them, now that bindings, links and delegations exist
        for p in (PRIME, MEMBER, OTHER, DLG, NODLG, UNLINKED, EXPERT, BUREAU, BUREAU_X, AGENCY, OPERATOR):
            t = await password_login(idh, portal["client_id"], email[p])
            w.headers[p] = [(p, {"authorization": f"Bearer {t['access_token']}"})]
        w.headers[ANON] = [(ANON, {})]
        issued = await password_login(idh, third["client_id"], email[PRIME])
        assert issued["scope"] == "openid"
        w.headers[THIRD] = [(f"{PRIME}'s, issued", {"authorization": f"Bearer {issued['access_token']}"})] + [
            (f"{p}'s", _third_party(w.headers[p][0][1]["authorization"][7:], third["client_id"]))
            for p in (DLG, EXPERT, BUREAU, AGENCY, OPERATOR)]
        w.headers[SCOPED] = [(SCOPED, {"authorization": f"Bearer {await client_token(idh, partner)}"})]
        w.headers[CC] = [(CC, {"authorization": f"Bearer {await client_token(idh, bare)}"})]
        h = {p: v[0][1] for p, v in w.headers.items()}

        # experts: E registered (recommended by REP, consented, applied, approved); E2 a page only
        ex = url["experts"]
        x["expert_id"] = e = (await _ok(await http.post(f"{ex}/experts/me", headers=h[EXPERT], json={
            "name": "山田 花子", "qualifications": ["中小企業診断士"], "fields": ["sales_channels", "management"],
            "regions": ["熊本県"], "introduction": "販路開拓と事業再生"})))["expert_id"]

        async def recommended():  # once experts has learnt the platform from identity
            r = await http.post(f"{ex}/experts/{e}/recommendations", headers=h[DLG], json={"org_id": x["rep"]})
            return r.status_code == 200
        await eventually(recommended, timeout=60)
        await _ok(await http.post(f"{ex}/experts/me/consents", headers=h[EXPERT], json={"org_id": x["rep"]}))
        await _ok(await http.post(f"{ex}/experts/me/application", headers=h[EXPERT], json={
            "evidence": [{"route": "public_qualification", "qualification": "中小企業診断士"}],
            "no_disqualification": True}))
        r = await _ok(await http.post(f"{ex}/experts/{e}/review", headers=h[AGENCY], json={"decision": "approve"}))
        assert r["status"] == "registered", r
        x["expert2_id"] = (await _ok(await http.post(f"{ex}/experts/me", headers=bearer(f"acct-e2-{tag}", ["expert"]),
                                                     json={"name": "二人目 専門家"})))["expert_id"]

        # budget: this year's frame (and next year's, to be closed by a row)
        bu = url["budget"]

        async def allocated(year: int):
            r = await http.post(f"{bu}/frames", headers=h[BUREAU], json={
                "fiscal_year": year, "platform_id": x["pid"], "fee": 1_000_000, "travel": 100_000})
            return r.json()["frame_id"] if r.status_code in (200, 201) else None  # until budget learnt the platform
        x["frame"] = await eventually(lambda: allocated(FY), timeout=60)
        x["frame_next"] = await allocated(FY + 1)

        # dispatch: three route-A requests of REP for BIZ with E, approved with budget reserved
        ds = url["dispatch"]

        async def request_a():
            r = await http.post(f"{ds}/requests", headers=h[DLG], json={**_request_body(bid, e),
                                                                         "institution_id": x["rep"]})
            if r.status_code == 422 and "prime account" in r.text:
                return None  # dispatch has not learnt BIZ's binding yet
            body = await _ok(r, 201)
            if body.get("reason_code") in ("expert_not_registered", "expert_unknown", "institution_unknown",
                                           "not_a_member"):
                return None  # nor the expert or the platform
            assert body["status"] == "accepted", body
            return body["dispatch_id"]
        x["d1"], x["d2"], x["d3"] = [await eventually(request_a, timeout=60) for _ in range(3)]

        async def status(did: str, *wanted: str):
            d = await _ok(await http.get(f"{ds}/requests/{did}", headers=h[AGENCY]))
            return d if d["status"] in wanted else None
        for did in (x["d1"], x["d2"], x["d3"]):
            await eventually(lambda: status(did, "approved"), timeout=60)
        loc = {"location": {"lat": 32.80, "lon": 130.71, "place": "client office"}}
        for did in (x["d1"], x["d2"]):
            await _ok(await http.post(f"{ds}/requests/{did}/schedule", headers=h[DLG], json={}))
            vid = (await _ok(await http.post(f"{ds}/requests/{did}/visits", headers=h[EXPERT],
                                             json={**loc, "accompanied_by": [w.ids[DLG]]})))["visit_id"]  # R-DSP-05
            await _ok(await http.post(f"{ds}/requests/{did}/visits/{vid}/check-out", headers=h[EXPERT], json=loc))
            x["v1" if did == x["d1"] else "v2"] = vid
        # D1 completed: declared time, signed off, reported, confirmed
        await _ok(await http.post(f"{ds}/requests/{x['d1']}/visits/declarations", headers=h[EXPERT],
                                  json=_declaration(x["v1"])))
        await _ok(await http.post(f"{ds}/requests/{x['d1']}/visits/{x['v1']}/sign-off", headers=h[PRIME], json={}))
        await _ok(await http.post(f"{ds}/requests/{x['d1']}/report", headers=h[EXPERT],
                                  json={"summary": "Mapped the channels; proposed a D2C pilot."}))
        await _ok(await http.post(f"{ds}/requests/{x['d1']}/confirm", headers=h[AGENCY], json={"travel": 1_500}))
        # a web consultation of BIZ with E, and a direct (route B) request waiting for E's co-signature
        x["consultation"] = (await _ok(await http.post(f"{ds}/consultations", headers=h[PRIME], json={
            "expert_id": e, "subject": "販路開拓の相談", "message": "卸先が廃業しました"})))["consultation_id"]
        x["route_b"] = (await _ok(await http.post(f"{ds}/requests", headers=h[PRIME], json=_request_body(bid, e)),
                                  201))["dispatch_id"]

        # ratings owed for D1 (BIZ, and REP's staff as institution); the institution's comment awaits moderation
        ra = url["ratings"]

        async def owed(p: str):
            return [o for o in await _ok(await http.get(f"{ra}/pending", headers=h[p])) if o["dispatch_id"] == x["d1"]]
        await eventually(lambda: owed(PRIME), timeout=60)
        await eventually(lambda: owed(DLG), timeout=60)
        x["owed_comment"] = (await _ok(await http.post(f"{ra}/ratings", headers=h[DLG], json={
            "dispatch_id": x["d1"], "scores": {a: 5 for a in RATING_AXES}, "comment": "丁寧な対応でした"}), 201))["owed_id"]

        # notifications: the prime's "please rate" message
        no = url["notifications"]

        async def inbox():
            return await _ok(await http.get(f"{no}/inbox", headers=h[PRIME]))
        x["inbox_item"] = (await eventually(inbox, timeout=60))[0]["id"]

        # recommend: BIZ's profile learnt from identity; a programme of the catalogue
        rc = url["recommend"]

        async def profile_known():
            return (await http.get(f"{rc}/businesses/{bid}", headers=h[OPERATOR])).status_code == 200
        await eventually(profile_known, timeout=60)
        x["programme"] = (await _ok(await http.get(f"{rc}/programmes", headers=h[OPERATOR])))["items"][0]["programme_id"]
        # R-POR-05: BIZ's draft application to a programme with a form, and an upload of its business plan
        x["intake_programme"] = "fy2020-jigyo-shokei"
        x["application"] = (await _ok(await http.post(f"{rc}/programmes/{x['intake_programme']}/applications",
                                                      headers=h[PRIME], json={})))["application_id"]
        x["upload"] = (await _ok(await http.post(f"{rc}/applications/{x['application']}/uploads", headers=h[PRIME], json={
            "document": "business_plan", "name": "plan.pdf", "size": 10, "sha256": "0" * 64,
            "content_type": "application/pdf"})))["upload_id"]

        # community: BIZ's question with E's answer; a thread to moderate; a report; BIZ's postings, OTHER's interest
        cm = url["community"]
        thread = {"category": "sales", "title": "販路の相談", "body": "県外の販路を探しています。"}
        x["thread"] = (await _ok(await http.post(f"{cm}/threads", headers=h[PRIME], json=thread)))["thread_id"]
        x["post"] = (await _ok(await http.post(f"{cm}/threads/{x['thread']}/posts", headers=h[EXPERT],
                                               json={"body": "展示会をおすすめします。"})))["post_id"]
        x["mod_thread"] = (await _ok(await http.post(f"{cm}/threads", headers=h[OTHER], json=thread)))["thread_id"]
        x["mod_post"] = (await _ok(await http.post(f"{cm}/threads/{x['mod_thread']}/posts", headers=h[EXPERT],
                                                   json={"body": "宣伝です。"})))["post_id"]
        x["report"] = (await _ok(await http.post(f"{cm}/threads/{x['mod_thread']}/reports", headers=h[DLG],
                                                 json={"reason": "advertising"})))["report_id"]
        posting = {"direction": "offer", "kind": "successor", "title": "事業を譲ります", "body": "後継者募集",
                   "region": "熊本県", "industry": "製造業", "contact": {"name": "主 太郎", "email": "prime@example.jp"}}
        x["posting"] = (await _ok(await http.post(f"{cm}/postings", headers=h[PRIME], json=posting)))["posting_id"]
        x["posting_to_close"] = (await _ok(await http.post(f"{cm}/postings", headers=h[PRIME], json=posting)))["posting_id"]
        x["match"] = (await _ok(await http.post(f"{cm}/postings/{x['posting']}/interests", headers=h[OTHER], json={
            "message": "関心があります", "contact": {"name": "他 花子", "email": "other@example.jp"}})))["match_id"]
        # a joint order of REP (DLG's organisation) in the platform's area, once community knows the area (R-POR-04)
        joint = {"platform_id": x["pid"], "title": "共同受注", "description": "d", "lots": [{"title": "ロット"}],
                 "deadline": (date.today() + timedelta(days=30)).isoformat()}

        async def order_posted():
            r = await http.post(f"{cm}/joint-orders", headers=h[DLG], json=joint)
            return r.json()["order_id"] if r.status_code == 201 else None
        x["joint"] = joint
        x["order"] = await eventually(order_posted, timeout=60)
    return w


@pytest.fixture(scope="module")
def stack(infra, tmp_path_factory):
    ns = Namespace()
    procs = start_all(infra, ns, tmp_path_factory.mktemp("matrix"), gateway_ports=False,
                      identity_env={"ACCESS_TOKEN_TTL": "3600"})
    yield procs
    stop_all(procs, infra, ns)


@pytest.fixture(scope="module")
async def world(stack) -> World:
    started = time.monotonic()
    w = await build_world({name: p.url for name, p in stack.items()})
    print(f"\nworld built in {time.monotonic() - started:.1f}s")
    return w


def _rows(w: World, service: str) -> dict[tuple[str, str], tuple[Row, ...]]:
    return {k: v if isinstance(v, tuple) else (v,) for k, v in TABLES[service](w).items()}


async def test_every_route_of_every_running_service_has_a_row(world):
    async with httpx.AsyncClient(timeout=15) as http:
        missing, stale = [], []
        for service in SERVICES:
            spec = (await http.get(f"{world.url[service]}/openapi.json")).json()
            routes = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
            rows = set(_rows(world, service))
            missing += [f"{service} {m} {p}" for m, p in sorted(routes - rows)]
            stale += [f"{service} {m} {p}" for m, p in sorted(rows - routes)]
    assert not missing, "routes without an authorization row:\n" + "\n".join(missing)
    assert not stale, "rows for routes that no longer exist:\n" + "\n".join(stale)
    assert {(s, m, p) for s, m, p, _ in AWAITING_R_PF_05} <= {
        (s, m, p) for s in SERVICES for m, p in _rows(world, s)}, "AWAITING_R_PF_05 names a route without a row"


def _verdict(row: Row, status: int) -> str:
    if status >= 500:
        return "error"
    if status in (401, 403) or (row.hides and status == 404):
        return "deny"
    return "allow"


async def test_authorization_matrix_every_route_every_principal(world):
    failures, awaiting, cells = [], [], Counter()
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=30) as http:
        for service in SERVICES:
            for (method, route), cases in sorted(_rows(world, service).items()):
                for row in cases:
                    for principal in PRINCIPALS:
                        expected = "allow" if row.allowed == PUBLIC or principal in row.allowed else "deny"
                        for whose, headers in world.headers[principal]:
                            if row.prepare:
                                await row.prepare()
                            body = row.body(principal) if callable(row.body) else row.body
                            r = await http.request(method, world.url[service] + row.path, headers=headers, json=body,
                                                   data=row.form)
                            got = _verdict(row, r.status_code)
                            cells[service] += 1
                            if got == expected:
                                continue
                            who = principal if whose == principal else f"{principal} ({whose} token)"
                            where = f"{service} {method} {route}{f' [{row.case}]' if row.case else ''} as {who}"
                            if (service, method, route, principal) in AWAITING_R_PF_05 and got == "allow":
                                awaiting.append(f"{where}: allowed ({r.status_code}), deny once R-PF-05 lands")
                                continue
                            failures.append(f"{where}: expected {expected}, got {r.status_code} {r.text[:160]}")
    print(f"\nauthorization matrix: {sum(cells.values())} calls in {time.monotonic() - started:.1f}s "
          f"({', '.join(f'{s} {n}' for s, n in cells.items())})")
    if awaiting:
        print(f"AWAITING_R_PF_05 ({len(awaiting)} cells still allowed):\n  " + "\n  ".join(awaiting))
    assert not failures, f"{len(failures)} cells wrong:\n" + "\n".join(failures)

"""Developer onboarding for external private services (R-EXT-01).

A signed-in person registers a developer organisation and creates applications. Each application gets sandbox
credentials at once: a client (secret allowed only here, tier `sandbox`) and a sandbox tenant of synthetic
businesses that consented to it, readable through the ordinary prefill API (`/prefill/businesses/{id}`); a sandbox
client can never be granted a real business's consent. The organisation applies for production with its public
JWKS and its answers to the security checklist (docs/partner-security-checklist.md); the agency reviews: approve
(a production client: private_key_jwt, PAR, DPoP, tier `standard`), return (with notes), or suspend (every client
of the application revoked: ClientRevoked, so the gateway and every service refuse its tokens within seconds).
Every change is audited.
"""
from __future__ import annotations

import time
import uuid
from typing import Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from contracts.events.identity import ClientRevoked
from identity_service.accounts import ClientIn, ClientOut, create_client
from identity_service.audit import record
from identity_service.consents import _consent_id as consent_id
from servicekit.auth import Principal, require
from servicekit.problems import Problem

router = APIRouter(tags=["developers"])
CHECKLIST = [f"EXT-SEC-0{i}" for i in range(1, 9)]  # docs/partner-security-checklist.md
SANDBOX_BUSINESSES = [  # the synthetic tenant every application gets
    {"name": "サンドボックス精密株式会社", "prefecture": "熊本県", "industry": "製造業", "employees": 48, "capital": 10_000_000},
    {"name": "サンドボックス商事株式会社", "prefecture": "東京都", "industry": "卸売業", "employees": 12, "capital": 3_000_000},
    {"name": "サンドボックス農園", "prefecture": "北海道", "industry": "農業", "employees": 5, "capital": 0},
]
# application status -> the review decisions allowed on it (pure; the handlers only apply it)
REVIEWS = {"in_review": {"approve", "return", "suspend"}, "approved": {"suspend"}, "returned": {"suspend"},
           "sandbox": {"suspend"}}


def review_problem(status: str, decision: str, checked: list[str]) -> str | None:
    """Why this decision cannot be taken now (None: it can)."""
    if decision not in REVIEWS.get(status, set()):
        return f"an application that is {status} cannot be given '{decision}'"
    if decision == "approve" and (missing := [i for i in CHECKLIST if i not in checked]):
        return f"approval needs every checklist item checked; missing: {', '.join(missing)}"
    return None


class OrgIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    contact_email: str = Field(min_length=3, max_length=200, pattern=r"^[^@\s]+@[^@\s]+$")


class AppIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    scopes: list[Literal["prefill:read", "prefill:financials", "audit:read"]] = Field(default=["prefill:read"])
    redirect_uris: list[str] = Field(default_factory=list, max_length=10)
    webhook_url: str | None = Field(default=None, max_length=500, pattern=r"^https?://")


class AppOut(BaseModel):
    app_id: str
    org_id: str
    name: str
    status: str
    sandbox_client: ClientOut | None = Field(default=None, description="at creation only: the secret is shown once")
    sandbox_businesses: list[str] = []
    production_client_id: str | None = None
    notes: str | None = None


class ApplyIn(BaseModel):
    jwks: dict = Field(description="the public keys production client authentication (private_key_jwt) will use")
    redirect_uris: list[str] = Field(min_length=1, max_length=10)
    answers: dict[str, str] = Field(description="checklist item id -> how the application meets it")


class ReviewIn(BaseModel):
    decision: Literal["approve", "return", "suspend"]
    checked: list[str] = Field(default_factory=list, description="checklist item ids the reviewer verified")
    notes: str = Field(default="", max_length=2000)


def _svc(request: Request):
    return request.app.state.service


async def _own_app(request: Request, app_id: str, who: Principal) -> dict:
    app = await _svc(request).db.developer_apps.find_one({"_id": app_id})
    if app is None or (app["owner"] != who.subject and not who.roles & {"agency", "operator"}):
        raise Problem(404, "Not found", f"No application {app_id}.")
    return app


def _out(app: dict, sandbox_client: ClientOut | None = None) -> AppOut:
    return AppOut(app_id=app["_id"], org_id=app["org_id"], name=app["name"], status=app["status"],
                  sandbox_client=sandbox_client, sandbox_businesses=app.get("sandbox_businesses", []),
                  production_client_id=app.get("production_client_id"), notes=app.get("notes"))


@router.post("/developer/orgs", status_code=201, summary="Register a developer organisation (any signed-in person)")
async def register_org(body: OrgIn, request: Request, who: Principal = Depends(require())) -> dict:
    svc, org_id = _svc(request), f"dev-{uuid.uuid4().hex[:12]}"
    await svc.db.developer_orgs.insert_one({"_id": org_id, "owner": who.subject, **body.model_dump(),
                                            "created_at": time.time()})
    await record(svc.db, actor=who.subject, action="identity.DeveloperOrgRegistered", key=org_id, payload=body.model_dump())
    return {"org_id": org_id, **body.model_dump()}


@router.post("/developer/orgs/{org_id}/apps", status_code=201, response_model=AppOut,
             summary="Create an application: sandbox credentials and a synthetic tenant at once (R-EXT-01)")
async def create_app(org_id: str, body: AppIn, request: Request, who: Principal = Depends(require())) -> AppOut:
    svc = _svc(request)
    if await svc.db.developer_orgs.find_one({"_id": org_id, "owner": who.subject}) is None:
        raise Problem(404, "Not found", f"No developer organisation {org_id} of yours.")
    app_id = f"app-{uuid.uuid4().hex[:12]}"
    client = await create_client(svc, ClientIn(
        name=f"{body.name} (sandbox)", confidential=True, redirect_uris=body.redirect_uris, scopes=body.scopes,
        grant_types=["client_credentials"] + (["authorization_code"] if body.redirect_uris else []),
        tier="sandbox", webhook_url=body.webhook_url), who.subject, environment="sandbox", app_id=app_id)
    businesses = []
    for i, profile in enumerate(SANDBOX_BUSINESSES):
        bid = f"sbx-{app_id[4:]}-{i + 1}"
        await svc.db.businesses.insert_one({"_id": bid, "status": "active", "sandbox": app_id, "corporate_number": None,
                                            "postal_code": "000-0000", "address": "サンドボックス", "representative": "試験 太郎",
                                            "financials": [{"fiscal_year": 2025, "sales": 100_000_000 * (i + 1),
                                                            "operating_profit": 5_000_000}], **profile})
        await svc.db.consents.insert_one({"_id": consent_id(bid, client.client_id), "business_id": bid,
                                          "client_id": client.client_id, "status": "granted", "sandbox": True,
                                          "granted_by": "sandbox"})
        businesses.append(bid)
    app = {"_id": app_id, "org_id": org_id, "owner": who.subject, "name": body.name, "status": "sandbox",
           "sandbox_client_id": client.client_id, "sandbox_businesses": businesses, "scopes": list(body.scopes),
           "webhook_url": body.webhook_url, "created_at": time.time()}
    await svc.db.developer_apps.insert_one(app)
    await record(svc.db, actor=who.subject, action="identity.DeveloperAppCreated", key=app_id,
                 payload={"sandbox_client_id": client.client_id})
    return _out(app, client)


@router.get("/developer/apps/{app_id}", response_model=AppOut, summary="An application and its review status")
async def get_app(app_id: str, request: Request, who: Principal = Depends(require())) -> AppOut:
    return _out(await _own_app(request, app_id, who))


@router.post("/developer/apps/{app_id}/apply", response_model=AppOut,
             summary="Apply for production: public JWKS, redirect URIs and the checklist answers")
async def apply(app_id: str, body: ApplyIn, request: Request, who: Principal = Depends(require())) -> AppOut:
    svc, app = _svc(request), await _own_app(request, app_id, who)
    if app["status"] not in ("sandbox", "returned"):
        raise Problem(409, "Not now", f"An application that is {app['status']} cannot apply.")
    if missing := [i for i in CHECKLIST if not body.answers.get(i)]:
        raise Problem(422, "Checklist incomplete", f"Answer every checklist item; missing: {', '.join(missing)}.")
    await svc.db.developer_apps.update_one({"_id": app_id}, {"$set": {
        "status": "in_review", "application": body.model_dump(), "applied_at": time.time()}})
    await record(svc.db, actor=who.subject, action="identity.DeveloperAppApplied", key=app_id, payload={})
    return _out(await svc.db.developer_apps.find_one({"_id": app_id}))


@router.post("/developer/apps/{app_id}/review", response_model=AppOut,
             summary="The agency's review: approve (production client), return with notes, or suspend at once")
async def review(app_id: str, body: ReviewIn, request: Request,
                 who: Principal = Depends(require("agency", "operator"))) -> AppOut:
    svc = _svc(request)
    app = await svc.db.developer_apps.find_one({"_id": app_id})
    if app is None:
        raise Problem(404, "Not found", f"No application {app_id}.")
    if problem := review_problem(app["status"], body.decision, body.checked):
        raise Problem(409, "Not allowed", problem[0].upper() + problem[1:] + ".")
    change: dict = {"notes": body.notes or None, "reviewed_by": who.subject, "reviewed_at": time.time()}
    if body.decision == "approve":
        a = app["application"]
        client = await create_client(svc, ClientIn(
            name=app["name"], confidential=True, redirect_uris=a["redirect_uris"], scopes=app["scopes"],
            grant_types=["authorization_code", "client_credentials"], token_endpoint_auth_method="private_key_jwt",
            jwks=a["jwks"], dpop_bound_access_tokens=True, require_pushed_authorization_requests=True,
            tier="standard", webhook_url=app.get("webhook_url")), who.subject, environment="production", app_id=app_id)
        change |= {"status": "approved", "production_client_id": client.client_id}
    elif body.decision == "return":
        change |= {"status": "returned"}
    else:
        change |= {"status": "suspended"}
        for client_id in filter(None, (app.get("sandbox_client_id"), app.get("production_client_id"))):
            event = svc.event(ClientRevoked(client_id=client_id, reason=f"application suspended: {body.notes}"[:500]),
                              actor=who.subject)
            await svc.write(svc.db.clients, {"_id": client_id, "status": {"$ne": "revoked"}},
                            {"$set": {"status": "revoked", "revoked_by": who.subject}}, events=[event])
            await svc.db.refresh_tokens.delete_many({"client_id": client_id})
    await svc.db.developer_apps.update_one({"_id": app_id}, {"$set": change})
    await record(svc.db, actor=who.subject, action=f"identity.DeveloperAppReview.{body.decision}", key=app_id,
                 payload={"checked": body.checked, "notes": body.notes})
    return _out(await svc.db.developer_apps.find_one({"_id": app_id}))

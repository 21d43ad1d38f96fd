"""Consent-based prefill (R-ID-04): a business lets chosen external clients read its profile; every read is logged."""
from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from pymongo.errors import DuplicateKeyError

from contracts.events.identity import ConsentGranted, ConsentWithdrawn
from identity_service import domain
from identity_service.audit import record
from identity_service.http import OWNERS, owned_business
from servicekit.auth import Principal, require
from servicekit.problems import Problem

router = APIRouter()
READ, REFUSED = "identity.PrefillRead", "identity.PrefillRefused"


class ConsentIn(BaseModel):
    client_id: str = Field(min_length=1, max_length=100)


class ConsentOut(BaseModel):
    business_id: str
    client_id: str
    client_name: str
    granted_at: datetime
    fields: list[str] = Field(description="what this client can read under its scopes")


def _consent_id(business_id: str, client_id: str) -> str:
    return f"{business_id}|{client_id}"


@router.post("/businesses/{business_id}/consents", status_code=201, response_model=ConsentOut, tags=["consents"],
             summary="Allow an external service to prefill from your profile (連携承諾, R-ID-04)")
async def grant(business_id: str, body: ConsentIn, request: Request, who: Principal = Depends(require(*OWNERS))) -> ConsentOut:
    svc = request.app.state.service
    await owned_business(request, business_id, who, scope=None)
    client = await svc.db.clients.find_one({"_id": body.client_id, "status": "active"})
    if client and client.get("environment") == "sandbox":  # R-EXT-01: a sandbox sees only its synthetic tenant
        client = None
    fields = domain.prefill_fields(set(client["scopes"])) if client else []
    if not fields:
        raise Problem(422, "Not a prefill client", f"{body.client_id} is not an active client allowed to prefill.")
    now = datetime.now(UTC)
    event = svc.event(ConsentGranted(business_id=business_id, client_id=body.client_id), actor=who.subject)
    try:
        await svc.write(svc.db.consents, {"_id": _consent_id(business_id, body.client_id), "status": {"$ne": "granted"}},
                    {"$set": {"business_id": business_id, "client_id": body.client_id, "status": "granted",
                              "granted_at": now, "granted_by": who.subject}}, events=[event], upsert=True)
    except DuplicateKeyError:  # already granted: nothing changes, no second event
        now = (await svc.db.consents.find_one({"_id": _consent_id(business_id, body.client_id)}))["granted_at"]
    return ConsentOut(business_id=business_id, client_id=body.client_id, client_name=client["name"], granted_at=now,
                      fields=fields)


@router.delete("/businesses/{business_id}/consents/{client_id}", status_code=204, tags=["consents"],
               summary="Withdraw a consent: the service gets nothing from now on (R-ID-04)")
async def withdraw(business_id: str, client_id: str, request: Request, who: Principal = Depends(require(*OWNERS))) -> None:
    svc = request.app.state.service
    await owned_business(request, business_id, who, scope=None)
    event = svc.event(ConsentWithdrawn(business_id=business_id, client_id=client_id), actor=who.subject)
    res = await svc.write(svc.db.consents, {"_id": _consent_id(business_id, client_id), "status": "granted"},
                      {"$set": {"status": "withdrawn", "withdrawn_at": datetime.now(UTC)}}, events=[event])
    if res.matched_count != 1:
        raise Problem(404, "No consent", f"{client_id} has no consent to withdraw.")


@router.get("/businesses/{business_id}/consents", response_model=list[ConsentOut], tags=["consents"],
            summary="The external services you currently allow to prefill")
async def consents(business_id: str, request: Request, who: Principal = Depends(require(*OWNERS))) -> list[ConsentOut]:
    db = request.app.state.service.db
    await owned_business(request, business_id, who, scope=None)
    out = []
    async for c in db.consents.find({"business_id": business_id, "status": "granted"}).sort("_id").limit(200):
        client = await db.clients.find_one({"_id": c["client_id"]}) or {"name": "(deleted)", "scopes": []}
        out.append(ConsentOut(business_id=business_id, client_id=c["client_id"], client_name=client["name"],
                              granted_at=c["granted_at"], fields=domain.prefill_fields(set(client["scopes"]))))
    return out


@router.get("/prefill/{corporate_number}", tags=["prefill"],
            summary="Prefill data of a corporation that consented to you: exactly the fields your scopes allow (clients; or a person of the business through a client)")
async def prefill(corporate_number: str, request: Request,
                  who: Principal = Depends(require(scope="prefill:read"))) -> dict:
    if problem := domain.corporate_number_problem(corporate_number):
        raise Problem(422, "Invalid corporate number", problem)
    return await _prefill(request, who, domain.business_id_for(corporate_number, ""))


@router.get("/prefill/businesses/{business_id}", tags=["prefill"],
            summary="Prefill data of any business (sole proprietors and founders too) by its business id (clients)")
async def prefill_by_id(business_id: str, request: Request,
                        who: Principal = Depends(require(scope="prefill:read"))) -> dict:
    return await _prefill(request, who, business_id[:100])


async def _prefill(request: Request, who: Principal, business_id: str) -> dict:
    db = request.app.state.service.db
    consent = await db.consents.find_one({"_id": _consent_id(business_id, who.client_id or ""), "status": "granted"})
    business = await db.businesses.find_one({"_id": business_id, "status": {"$ne": "awaiting_proof"}},
                                            {"history": 0, "_outbox": 0, "prime_claim": 0})
    fields = domain.prefill_fields(who.scopes)
    # a client's own token needs the business's consent; a token a person granted the client (authorization code,
    # R-EXT-02) needs that person to act for the business too (R-ID-07)
    if "client" not in who.roles and not who.acts_for(business_id):
        consent = None
    if business is None or consent is None:
        if business is not None:  # the business sees refused attempts too
            await record(db, actor=who.client_id, action=REFUSED, key=business_id, payload={"fields": []})
        # the same answer whether or not the business exists: a client learns nothing without consent
        raise Problem(403, "No consent", "This business has not consented to share its data with your service.")
    await record(db, actor=who.client_id, action=READ, key=business_id, payload={"fields": fields})
    return {"business_id": business_id, **domain.prefill_view(business, who.scopes)}


class ReadOut(BaseModel):
    at: datetime
    client_id: str
    client_name: str
    outcome: str = Field(description="served or refused")
    fields: list[str]


@router.get("/businesses/{business_id}/prefill-reads", response_model=list[ReadOut], tags=["consents"],
            summary="Who read which of your data, and when (R-ID-04), newest first")
async def reads(business_id: str, request: Request, who: Principal = Depends(require(*OWNERS))) -> list[ReadOut]:
    db = request.app.state.service.db
    await owned_business(request, business_id, who, scope=None)
    names: dict[str, str] = {}
    out = []
    async for a in db.audit.find({"key": business_id, "action": {"$in": [READ, REFUSED]}}).sort([("at", -1), ("_id", -1)]).limit(500):
        if a["actor"] not in names:
            names[a["actor"]] = ((await db.clients.find_one({"_id": a["actor"]}, {"name": 1})) or {}).get("name", "?")
        out.append(ReadOut(at=a["at"], client_id=a["actor"], client_name=names[a["actor"]],
                           outcome="served" if a["action"] == READ else "refused", fields=a["payload"]["fields"]))
    return out

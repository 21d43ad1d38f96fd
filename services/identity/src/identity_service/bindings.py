"""Who acts for a business (R-ID-07, R-ID-08): the prime account proven by a posted letter's code, the members it
invites, and the delegations it grants to support institutions. Bindings reach the other services in access
tokens (`biz`, `dlg`) and as events (BindingChanged, DelegationGranted/Revoked)."""
from __future__ import annotations

import secrets as pysecrets
import time
import uuid
from datetime import UTC, datetime

from bson import Binary
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from contracts.events.identity import BindingChanged, BusinessRegistered, DelegationGranted, DelegationRevoked
from contracts.vocab import DELEGATION_SCOPES
from identity_service import domain, secrets
from identity_service.audit import record
from identity_service.letters import proof_letter_pdf
from servicekit import paging
from servicekit.auth import Principal, require
from servicekit.problems import Problem

router = APIRouter()
PEOPLE = ("business", "founder")
REGISTERED_FIELDS = ("corporate_number", "name", "prefecture", "industry", "employees")


def bound_filter(account_id: str) -> dict:
    return {"$or": [{"prime_id": account_id}, {"member_ids": account_id}]}


def role_in(doc: dict, account_id: str) -> str | None:
    if doc.get("prime_id") == account_id:
        return "prime"
    return "member" if account_id in (doc.get("member_ids") or ()) else None


# --- the prime claim and its letter -------------------------------------------------------------------
async def start_prime_claim(svc, doc: dict, account_id: str) -> dict:
    """Sets a prime claim on the business and queues the letter with its code for the mailroom; returns the update
    to write together with the business (the code itself is kept only as a digest and in the letter)."""
    now = time.time()
    code = domain.proof_code(pysecrets.randbelow(10**domain.PROOF_CODE_DIGITS))
    claim = {"account_id": account_id, "digest": secrets.digest(code), "expires_at": now + domain.PROOF_TTL_SECONDS,
             "tries_left": domain.PROOF_TRIES, "letter_id": f"ltr-{uuid.uuid4().hex[:16]}", "at": now}
    pdf = proof_letter_pdf(business_name=doc["name"], corporate_number=doc["corporate_number"],
                           postal_code=doc.get("postal_code") or "", address=doc.get("address") or "",
                           representative=doc.get("representative") or "", code=code, expires_at=claim["expires_at"])
    await svc.db.letters.insert_one({"_id": claim["letter_id"], "business_id": doc["_id"], "account_id": account_id,
                                     "kind": "prime_proof", "status": "to_post", "created_at": now,
                                     "key": paging.sort_key(datetime.fromtimestamp(now, UTC), claim["letter_id"]),
                                     "postal_code": doc.get("postal_code"), "address": doc.get("address"),
                                     "pdf": Binary(pdf)})
    return claim


class ProofIn(BaseModel):
    code: str = Field(min_length=1, max_length=32, description="the code printed in the letter")


_REFUSALS = {
    "no_claim": (409, "Nothing to prove", "This business has no pending prime-account application."),
    "not_yours": (403, "Not your application", "Another account applied to be this business's prime account."),
    "expired": (410, "The code has expired", "The letter's code is no longer valid; register the business again "
                "to be sent a new letter."),
    "locked_before": (410, "The code is void", "Three wrong codes were entered; register the business again to be "
                      "sent a new letter."),
}


@router.post("/businesses/{business_id}/prime-proof", tags=["bindings"],
             summary="Prove you are the business's prime account with the code from the letter (R-ID-07)")
async def prove(business_id: str, body: ProofIn, request: Request, who: Principal = Depends(require(*PEOPLE))) -> dict:
    svc = request.app.state.service
    doc = await svc.db.businesses.find_one({"_id": business_id}, {"history": 0, "_outbox": 0})
    claim = (doc or {}).get("prime_claim")
    matches = bool(claim) and secrets.digest(body.code.strip()) == claim["digest"]
    outcome = domain.proof_outcome(claim, who.subject, matches, time.time())
    if doc is None or outcome == "not_yours":
        raise Problem(404, "Not found", f"No business {business_id} awaiting your proof.")
    if outcome in _REFUSALS:
        status, title, detail = _REFUSALS[outcome]
        raise Problem(status, title, detail)
    guard = {"_id": business_id, "prime_claim.digest": claim["digest"], "prime_claim.tries_left": claim["tries_left"]}
    if outcome in ("wrong", "locked"):
        await svc.write(svc.db.businesses, guard, {"$inc": {"prime_claim.tries_left": -1}})
        left = claim["tries_left"] - 1
        raise Problem(422, "Wrong code", f"The code does not match the letter. {left} tries left." if left else
                      "The code does not match the letter. No tries are left: register the business again to be "
                      "sent a new letter.", tries_left=left)
    events = [svc.event(BindingChanged(business_id=business_id, account_id=who.subject, role="prime"), actor=who.subject)]
    if doc.get("status") == "awaiting_proof":
        events.insert(0, svc.event(BusinessRegistered(business_id=business_id,
                                                      **{k: doc[k] for k in REGISTERED_FIELDS}), actor=who.subject))
    res = await svc.write(svc.db.businesses, guard, {"$set": {"prime_id": who.subject, "status": "active",
                                                             "proven_at": datetime.now(UTC)},
                                                    "$unset": {"prime_claim": ""}}, events=events)
    if res.matched_count != 1:
        raise Problem(409, "Try again", "The application changed meanwhile; please enter the code again.")
    return {"business_id": business_id, "role": "prime",
            "note": "Sign in again (or refresh your token) to act for the business."}


class LetterOut(BaseModel):
    letter_id: str
    business_id: str
    kind: str
    status: str
    postal_code: str | None
    address: str | None
    created_at: float


@router.get("/letters", response_model=list[LetterOut], tags=["bindings"],
            summary="Letters waiting to be printed and posted, oldest first; the header X-Next-Cursor pages on "
                    "(the platform's mailroom; operators only)")
async def letters(request: Request, response: Response, status: str = "to_post",
                  limit: int = Query(100, ge=1, le=paging.MAX_PAGE), cursor: str | None = Query(None, max_length=300),
                  _: Principal = Depends(require("operator"))) -> list[LetterOut]:
    docs, nxt = await paging.page(request.app.state.service.db.letters, {"status": status[:20]}, limit=limit,
                                  cursor=cursor, newest_first=False, projection={"pdf": 0})
    if nxt:
        response.headers["X-Next-Cursor"] = nxt
    return [LetterOut(letter_id=d["_id"], **{k: d.get(k) for k in LetterOut.model_fields if k != "letter_id"})
            for d in docs]


@router.get("/letters/{letter_id}.pdf", tags=["bindings"], response_class=Response,
            responses={200: {"content": {"application/pdf": {}}}},
            summary="The letter as a PDF, to print (operators only)")
async def letter_pdf(letter_id: str, request: Request, who: Principal = Depends(require("operator"))) -> Response:
    doc = await request.app.state.service.db.letters.find_one({"_id": letter_id})
    if doc is None or not doc.get("pdf"):
        raise Problem(404, "Not found", f"No letter {letter_id} waiting to be printed.")
    await _audit(request.app.state.service, who, "identity.LetterPrinted", doc["business_id"], {"letter_id": letter_id})
    return Response(bytes(doc["pdf"]), media_type="application/pdf",
                    headers={"Cache-Control": "no-store", "Content-Disposition": f'attachment; filename="{letter_id}.pdf"'})


@router.post("/letters/{letter_id}/posted", status_code=204, tags=["bindings"],
             summary="Mark a letter posted: its PDF (and the code in it) is deleted (operators only)")
async def letter_posted(letter_id: str, request: Request, who: Principal = Depends(require("operator"))) -> None:
    db = request.app.state.service.db
    res = await db.letters.update_one({"_id": letter_id, "status": "to_post"},
                                      {"$set": {"status": "posted", "posted_at": time.time()}, "$unset": {"pdf": ""}})
    if res.matched_count != 1:
        raise Problem(404, "Not found", f"No letter {letter_id} waiting to be posted.")
    await _audit(request.app.state.service, who, "identity.LetterPosted", letter_id, {"letter_id": letter_id})


async def _audit(svc, who: Principal, action: str, key: str, payload: dict) -> None:
    await record(svc.db, actor=who.subject, action=action, key=key, payload=payload)


# --- members ---------------------------------------------------------------------------------------------
async def _bound(request: Request, business_id: str, who: Principal, *, prime: bool = False) -> dict:
    doc = await request.app.state.service.db.businesses.find_one({"_id": business_id}, {"history": 0, "_outbox": 0})
    role = role_in(doc or {}, who.subject)
    if doc is None or role is None:
        raise Problem(404, "Not found", f"No business {business_id} you act for.")
    if prime and role != "prime":
        raise Problem(403, "Forbidden", "Only the business's prime account may do this.")
    return doc


class InviteIn(BaseModel):
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)


class MembersOut(BaseModel):
    business_id: str
    prime_id: str | None
    member_ids: list[str]
    invited: list[str]


def _members(doc: dict) -> MembersOut:
    return MembersOut(business_id=doc["_id"], prime_id=doc.get("prime_id"), member_ids=doc.get("member_ids") or [],
                      invited=doc.get("invited_emails") or [])


@router.get("/businesses/{business_id}/members", response_model=MembersOut, tags=["bindings"],
            summary="Who acts for the business: its prime account, members and open invitations")
async def members(business_id: str, request: Request, who: Principal = Depends(require(*PEOPLE))) -> MembersOut:
    return _members(await _bound(request, business_id, who))


@router.post("/businesses/{business_id}/invitations", response_model=MembersOut, tags=["bindings"],
             summary="Invite an account (by its e-mail) to act for the business as a member (prime only)")
async def invite(business_id: str, body: InviteIn, request: Request, who: Principal = Depends(require(*PEOPLE))) -> MembersOut:
    svc = request.app.state.service
    await _bound(request, business_id, who, prime=True)
    await svc.db.businesses.update_one({"_id": business_id}, {"$addToSet": {"invited_emails": body.email.lower()}})
    await _audit(svc, who, "identity.MemberInvited", business_id, {"email": body.email.lower()})
    return _members(await _bound(request, business_id, who))


@router.get("/invitations", tags=["bindings"], summary="Businesses that invited you to act for them")
async def my_invitations(request: Request, who: Principal = Depends(require(*PEOPLE))) -> list[dict]:
    db = request.app.state.service.db
    account = await db.accounts.find_one({"_id": who.subject}, {"email": 1})
    if account is None:
        return []
    cur = db.businesses.find({"invited_emails": account["email"]}, {"name": 1}).limit(100)
    return [{"business_id": d["_id"], "name": d.get("name")} async for d in cur]


@router.post("/businesses/{business_id}/invitations/accept", response_model=MembersOut, tags=["bindings"],
             summary="Accept an invitation: your account becomes a member of the business")
async def accept(business_id: str, request: Request, who: Principal = Depends(require(*PEOPLE))) -> MembersOut:
    svc = request.app.state.service
    account = await svc.db.accounts.find_one({"_id": who.subject}, {"email": 1})
    email = (account or {}).get("email", "")
    event = svc.event(BindingChanged(business_id=business_id, account_id=who.subject, role="member"), actor=who.subject)
    res = await svc.write(svc.db.businesses, {"_id": business_id, "invited_emails": email, "prime_id": {"$ne": who.subject}},
                          {"$pullAll": {"invited_emails": [email]}, "$addToSet": {"member_ids": who.subject}}, events=[event])
    if res.matched_count != 1:
        raise Problem(404, "No invitation", f"Business {business_id} has not invited {email or 'you'}.")
    return _members(await _bound(request, business_id, who))


@router.delete("/businesses/{business_id}/members/{account_id}", response_model=MembersOut, tags=["bindings"],
               summary="End a member's binding (the prime removes anyone; a member may leave)")
async def remove_member(business_id: str, account_id: str, request: Request,
                        who: Principal = Depends(require(*PEOPLE))) -> MembersOut:
    svc = request.app.state.service
    doc = await _bound(request, business_id, who, prime=account_id != who.subject)
    if account_id not in (doc.get("member_ids") or ()):
        raise Problem(404, "Not a member", f"{account_id} is not a member of {business_id}.")
    event = svc.event(BindingChanged(business_id=business_id, account_id=account_id, role=None), actor=who.subject)
    await svc.write(svc.db.businesses, {"_id": business_id}, {"$pullAll": {"member_ids": [account_id]}}, events=[event])
    return _members(await svc.db.businesses.find_one({"_id": business_id}))


# --- delegations (代行, R-ID-08) -----------------------------------------------------------------------------
class DelegationIn(BaseModel):
    org_id: str = Field(min_length=1, max_length=100, description="the support institution")
    scopes: list[str] = Field(min_length=1, max_length=len(DELEGATION_SCOPES), description=f"of {', '.join(DELEGATION_SCOPES)}")
    days: int = Field(default=90, ge=1, le=domain.MAX_DELEGATION_DAYS)


class DelegationOut(BaseModel):
    delegation_id: str
    business_id: str
    org_id: str
    scopes: list[str]
    expires_at: int
    status: str
    granted_by: str


def _dlg_out(d: dict) -> DelegationOut:
    status = d["status"] if d["status"] != "active" or d["expires_at"] > time.time() else "expired"
    return DelegationOut(delegation_id=d["_id"], status=status, **{k: d[k] for k in
                         ("business_id", "org_id", "scopes", "expires_at", "granted_by")})


@router.post("/businesses/{business_id}/delegations", status_code=201, response_model=DelegationOut, tags=["delegations"],
             summary="Let a support institution's staff act for the business, scoped and time-limited (R-ID-08; prime only)")
async def grant_delegation(business_id: str, body: DelegationIn, request: Request,
                           who: Principal = Depends(require(*PEOPLE))) -> DelegationOut:
    svc = request.app.state.service
    await _bound(request, business_id, who, prime=True)
    if problem := domain.delegation_problem(body.scopes, body.days):
        raise Problem(422, "The delegation is not valid", problem)
    org = await svc.db.orgs.find_one({"_id": body.org_id}, {"kind": 1})
    if org is None or org.get("kind") != "institution":
        raise Problem(422, "Not a support institution", f"{body.org_id} is not a registered support institution.")
    doc = {"_id": f"dlg-{uuid.uuid4().hex[:16]}", "business_id": business_id, "org_id": body.org_id,
           "scopes": sorted(set(body.scopes)), "expires_at": int(time.time()) + body.days * 86400, "status": "active",
           "granted_by": who.subject, "granted_at": datetime.now(UTC)}
    event = svc.event(DelegationGranted(delegation_id=doc["_id"], business_id=business_id, org_id=body.org_id,
                                        scopes=doc["scopes"], expires_at=doc["expires_at"]), actor=who.subject)
    await svc.insert(svc.db.delegations, doc, events=[event])
    return _dlg_out(doc)


@router.get("/businesses/{business_id}/delegations", response_model=list[DelegationOut], tags=["delegations"],
            summary="Who may act for the business, and what they may do")
async def business_delegations(business_id: str, request: Request,
                               who: Principal = Depends(require(*PEOPLE))) -> list[DelegationOut]:
    await _bound(request, business_id, who)
    cur = request.app.state.service.db.delegations.find({"business_id": business_id}).sort("granted_at", -1).limit(200)
    return [_dlg_out(d) async for d in cur]


@router.get("/delegations", response_model=list[DelegationOut], tags=["delegations"],
            summary="The delegations your institution holds (institution staff)")
async def org_delegations(request: Request, who: Principal = Depends(require("institution"))) -> list[DelegationOut]:
    org_ids = sorted({o.get("org_id") for o in who.orgs} | {d["org_id"] for d in who.delegations})
    account = await request.app.state.service.db.accounts.find_one({"_id": who.subject}, {"org_id": 1})
    if account and account.get("org_id"):
        org_ids.append(account["org_id"])
    cur = request.app.state.service.db.delegations.find({"org_id": {"$in": org_ids}, "status": "active"}).limit(500)
    return [_dlg_out(d) async for d in cur]


@router.post("/delegations/{delegation_id}/revoke", response_model=DelegationOut, tags=["delegations"],
             summary="End a delegation now: the institution's staff can no longer act for the business (R-ID-09)")
async def revoke_delegation(delegation_id: str, request: Request,
                            who: Principal = Depends(require(*PEOPLE, "operator"))) -> DelegationOut:
    svc = request.app.state.service
    d = await svc.db.delegations.find_one({"_id": delegation_id})
    if d is None:
        raise Problem(404, "Not found", f"No delegation {delegation_id}.")
    if "operator" not in who.roles:
        await _bound(request, d["business_id"], who, prime=True)
    event = svc.event(DelegationRevoked(delegation_id=delegation_id, business_id=d["business_id"], org_id=d["org_id"]),
                      actor=who.subject)
    await svc.write(svc.db.delegations, {"_id": delegation_id, "status": "active"},
                    {"$set": {"status": "revoked", "revoked_by": who.subject, "revoked_at": datetime.now(UTC)}},
                    events=[event])
    return _dlg_out(await svc.db.delegations.find_one({"_id": delegation_id}))


# --- token claims ----------------------------------------------------------------------------------------
async def token_claims(db, account: dict) -> dict:
    """What an access token of `account` says about whom it acts for: `biz`, `dlg`, `bureau_id`."""
    docs = [d async for d in db.businesses.find(bound_filter(account["_id"]), {"prime_id": 1, "member_ids": 1}).limit(100)]
    claims: dict = {"biz": domain.business_claim(docs, account["_id"])}
    org_id = account.get("org_id")
    if org_id and account.get("kind") == "institution":
        cur = db.delegations.find({"org_id": org_id, "status": "active", "expires_at": {"$gt": int(time.time())}})
        claims["dlg"] = [{"id": d["_id"], "business_id": d["business_id"], "org_id": org_id, "scopes": d["scopes"],
                          "exp": d["expires_at"]} async for d in cur.limit(domain.MAX_TOKEN_DELEGATIONS)]
    if account.get("bureau_id"):
        claims["bureau_id"] = account["bureau_id"]
    return claims


async def struck(db, claims: dict) -> set[str]:
    """Identity's own answer to what of a token is revoked (it is the authority: no read model, no lag)."""
    out: set[str] = set()
    sub = claims["sub"]
    if await db.accounts.find_one({"_id": sub, "status": "revoked"}, {"_id": 1}):
        out.add("account")
    if claims.get("client_id") and await db.clients.find_one({"_id": claims["client_id"], "status": "revoked"}, {"_id": 1}):
        out.add("client")
    if claims.get("jti") and await db.revoked_tokens.find_one({"_id": claims["jti"]}, {"_id": 1}):
        out.add("token")
    biz = [b.get("id") for b in claims.get("biz") or () if isinstance(b, dict)]
    if biz:
        still = {d["_id"] async for d in db.businesses.find({"_id": {"$in": biz}, **bound_filter(sub)}, {"_id": 1})}
        out |= {f"biz:{b}" for b in biz if b not in still}
    dlg = [d.get("id") for d in claims.get("dlg") or () if isinstance(d, dict)]
    if dlg:
        out |= {f"dlg:{d['_id']}" async for d in db.delegations.find({"_id": {"$in": dlg}, "status": {"$ne": "active"}},
                                                                    {"_id": 1})}
    return out

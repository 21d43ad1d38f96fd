"""Accounts (R-ID-01: real name, one account for every service), forced exit (R-ID-06) and OAuth clients (R-ID-05)."""
from __future__ import annotations

import logging
import time
import uuid
from typing import Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from pymongo.errors import DuplicateKeyError

from contracts.events.identity import AccountRegistered, AccountRevoked, ClientRegistered, ClientRevoked
from identity_service import account_life, domain, secrets
from servicekit.auth import Principal, require
from servicekit.problems import Problem

router = APIRouter()
log = logging.getLogger("identity.accounts")
SelfServiceKind = Literal["business", "founder", "expert", "institution"]
StaffKind = Literal["bureau", "agency", "operator"]


class AccountIn(BaseModel):
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)
    password: account_life.StrongPassword
    real_name: str = Field(min_length=1, max_length=100, description="実名 (real name, R-ID-01)")
    kind: SelfServiceKind


class StaffAccountIn(AccountIn):
    kind: StaffKind | SelfServiceKind
    bureau_id: str | None = Field(default=None, min_length=1, max_length=100,
                                  description="the block (regional bureau) a bureau account acts for; required for bureau (R-PF-05)")


class AccountOut(BaseModel):
    account_id: str
    email: str
    real_name: str
    kind: str
    roles: list[str]
    status: str
    email_verified: bool
    org_id: str | None = Field(default=None, description="the organisation an institution-staff account acts for")
    bureau_id: str | None = Field(default=None, description="the block a bureau account acts for (R-PF-05)")


def _out(doc: dict) -> AccountOut:
    return AccountOut(account_id=doc["_id"], **{k: doc.get(k) for k in AccountOut.model_fields if k != "account_id"})


async def _create(svc, body: AccountIn, actor: str) -> AccountOut:
    account_id = f"acc-{uuid.uuid4().hex}"
    doc = {"_id": account_id, "email": body.email.lower(), "password_hash": secrets.hash_password(body.password),
           "real_name": body.real_name, "kind": body.kind, "roles": [body.kind], "status": "active",
           "email_verified": False, "failed": 0, "locked_until": None, "created_at": time.time()}
    if getattr(body, "bureau_id", None):
        doc["bureau_id"] = body.bureau_id
    event = svc.event(AccountRegistered(account_id=account_id, kind=body.kind, real_name=body.real_name,
                                        email=doc["email"], bureau_id=doc.get("bureau_id")), actor=actor)
    try:
        await svc.insert(svc.db.accounts, doc, events=[event])
    except DuplicateKeyError:
        raise Problem(409, "Already registered", "An account with this e-mail address exists.") from None
    await account_life.send_verification(svc, doc, throttle=False)  # R-ID-10: a link by mail, never in a log
    return _out(doc)


@router.post("/accounts", status_code=201, response_model=AccountOut, tags=["accounts"],
             summary="Register an account under your real name (businesses, founders, experts, institution staff)")
async def register(body: AccountIn, request: Request) -> AccountOut:
    return await _create(request.app.state.service, body, actor="self")


@router.post("/staff-accounts", status_code=201, response_model=AccountOut, tags=["accounts"],
             summary="Create an account of any kind, including bureau, agency and operator staff (operators only)")
async def register_staff(body: StaffAccountIn, request: Request,
                         who: Principal = Depends(require("operator"))) -> AccountOut:
    if body.kind == "bureau" and not body.bureau_id:
        raise Problem(422, "Which block?", "A bureau account acts for one block only (R-PF-05): give its bureau_id.")
    return await _create(request.app.state.service, body, actor=who.subject)


@router.get("/accounts/me", response_model=AccountOut, tags=["accounts"], summary="Your own account")
async def me(request: Request, who: Principal = Depends(require(*domain.ACTOR_KINDS))) -> AccountOut:
    doc = await request.app.state.service.db.accounts.find_one({"_id": who.subject})
    if doc is None:
        raise Problem(404, "Not found", "This token's subject is not an account (a client token?).")
    return _out(doc)


class RevokeIn(BaseModel):
    reason: str = Field(min_length=1, max_length=1000, description="e.g. the fraud case number (R-DSP-13)")


@router.post("/accounts/{account_id}/revoke", response_model=AccountOut, tags=["accounts"],
             summary="Forced exit (ID失効処分, R-ID-06): the account's tokens stop working and every service is told")
async def revoke_account(account_id: str, body: RevokeIn, request: Request,
                         who: Principal = Depends(require("operator"))) -> AccountOut:
    svc = request.app.state.service
    await revoke(svc, account_id, body.reason, actor=who.subject)
    doc = await svc.db.accounts.find_one({"_id": account_id})
    if doc is None:
        raise Problem(404, "Not found", f"No account {account_id}.")
    return _out(doc)


async def revoke(svc, account_id: str, reason: str, *, actor: str | None, cause=None) -> bool:
    """R-ID-06: revokes the account once (a repeat changes nothing and emits nothing); True if it was revoked now."""
    event = svc.event(AccountRevoked(account_id=account_id, reason=reason), actor=actor, cause=cause)
    res = await svc.write(svc.db.accounts, {"_id": account_id, "status": {"$ne": "revoked"}},
                      {"$set": {"status": "revoked", "revoked_reason": reason}}, events=[event])
    if res.matched_count:
        await svc.db.refresh_tokens.delete_many({"account_id": account_id})
    return bool(res.matched_count)


# --- OAuth clients (external private services, R-ID-05) -------------------------------------------
class ClientIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    confidential: bool = Field(description="true: has a secret (server-side service); false: a browser/mobile portal front end")
    redirect_uris: list[str] = Field(default_factory=list, max_length=10)
    scopes: list[Literal["openid", "profile", "email", "offline_access", "prefill:read", "prefill:financials",
                        "audit:read"]] = Field(default_factory=list)
    grant_types: list[Literal["authorization_code", "refresh_token", "client_credentials"]]
    first_party: bool = Field(default=False, description="the platform's own portal front end: its user tokens carry "
                              "the user's full rights (scope `portal`); a third party's carry only the granted scopes")
    # R-EXT-02 (identity_service.fapi)
    token_endpoint_auth_method: Literal["client_secret_basic", "private_key_jwt", "none"] | None = Field(
        default=None, description="private_key_jwt: the client signs a client_assertion with a key of `jwks` and "
        "gets no secret; default: client_secret_basic for confidential clients, none for public ones")
    jwks: dict | None = Field(default=None, description="the client's public keys (a JWKS document), for private_key_jwt")
    dpop_bound_access_tokens: bool = Field(default=False, description="tokens only with a DPoP proof, bound to its key")
    require_pushed_authorization_requests: bool = Field(default=False, description="logins only through /par")
    tier: Literal["sandbox", "standard", "premium"] | None = Field(
        default=None, description="a partner's rate tier (R-EXT-04): its tokens carry it and the gateway applies the "
        "tier's requests per second and per 24 h; none: the gateway's general per-client ceiling")
    webhook_url: str | None = Field(default=None, max_length=500, pattern=r"^https?://",
                                    description="where signed webhooks go when a consent to this client changes")


class ClientOut(BaseModel):
    client_id: str
    client_secret: str | None = Field(default=None, description="shown once, at registration")
    name: str
    confidential: bool
    redirect_uris: list[str]
    scopes: list[str]
    grant_types: list[str]
    first_party: bool = False
    token_endpoint_auth_method: str | None = None
    dpop_bound_access_tokens: bool = False
    require_pushed_authorization_requests: bool = False
    tier: str | None = None
    webhook_url: str | None = None
    status: str


@router.post("/clients", status_code=201, response_model=ClientOut, tags=["clients"],
             summary="Register an OAuth client (operators only)")
async def register_client(body: ClientIn, request: Request, who: Principal = Depends(require("operator"))) -> ClientOut:
    return await create_client(request.app.state.service, body, who.subject)


async def create_client(svc, body: ClientIn, actor: str, **fields) -> ClientOut:
    """A new client (its secret, if any, in the answer only); `fields`: more to keep on it (e.g. its application)."""
    if "client_credentials" in body.grant_types and not body.confidential:
        raise Problem(422, "Not allowed", "client_credentials needs a confidential client (one with a secret).")
    if "authorization_code" in body.grant_types and not body.redirect_uris:
        raise Problem(422, "Missing redirect_uris", "authorization_code needs at least one redirect URI.")
    key_jwt = body.token_endpoint_auth_method == "private_key_jwt"
    if key_jwt and not (body.confidential and _usable_jwks(body.jwks)):
        raise Problem(422, "Missing keys", "private_key_jwt needs a confidential client and a JWKS with at least one "
                      "public RSA or EC key (no private parts).")
    client_id = f"cl-{uuid.uuid4().hex[:16]}"
    secret = secrets.new_token() if body.confidential and not key_jwt else None
    doc = {"_id": client_id, **body.model_dump(), **fields, "status": "active",
           "secret_hash": secrets.digest(secret) if secret else None}
    event = svc.event(ClientRegistered(client_id=client_id, name=body.name, scopes=list(body.scopes),
                                       confidential=body.confidential), actor=actor)
    await svc.insert(svc.db.clients, doc, events=[event])
    return ClientOut(client_id=client_id, client_secret=secret, status="active",
                     **body.model_dump(exclude={"jwks"}))


def _usable_jwks(jwks: dict | None) -> bool:
    import jwt

    try:
        keys = jwt.PyJWKSet.from_dict(jwks or {}).keys
    except (jwt.PyJWKSetError, jwt.PyJWKError, ValueError, TypeError, KeyError):
        return False
    return bool(keys) and not any("d" in k for k in (jwks or {}).get("keys", ()))


class TierIn(BaseModel):
    tier: Literal["sandbox", "standard", "premium"] | None = Field(
        description="the partner's new rate tier (R-EXT-04); none: the gateway's general per-client ceiling")
    reason: str = Field(min_length=5, max_length=500, description="why, kept in the audit trail")


@router.put("/clients/{client_id}/tier", response_model=ClientOut, tags=["clients"],
            summary="Change a partner client's rate tier (the agency or operators; R-EXT-04). Tokens issued from now on "
                    "carry it; tokens already issued keep theirs until they expire")
async def change_tier(client_id: str, body: TierIn, request: Request,
                      who: Principal = Depends(require("agency", "operator"))) -> ClientOut:
    from identity_service.audit import record

    svc = request.app.state.service
    doc = await svc.db.clients.find_one({"_id": client_id}, {"secret_hash": 0, "_outbox": 0})
    if doc is None:
        raise Problem(404, "Not found", f"No client {client_id}.")
    if doc.get("status") != "active":
        raise Problem(409, "Not active", f"Client {client_id} is {doc.get('status')}; only an active client's tier changes.")
    if doc.get("environment") == "sandbox" and body.tier != "sandbox":
        raise Problem(409, "Sandbox client", "A sandbox client stays in the sandbox tier; production access follows the "
                      "agency's review of the application (R-EXT-01).")
    if doc.get("tier") != body.tier:
        res = await svc.db.clients.update_one({"_id": client_id, "tier": doc.get("tier")}, {"$set": {"tier": body.tier}})
        if res.modified_count != 1:
            raise Problem(409, "Changed meanwhile", "The client's tier just changed; read it again.")
        await record(svc.db, actor=who.subject, action="identity.ClientTierChanged", key=client_id,
                     payload={"from": doc.get("tier"), "to": body.tier, "reason": body.reason})
    doc["tier"] = body.tier
    return ClientOut(client_id=client_id, **{k: v for k, v in doc.items() if k in ClientOut.model_fields
                                             and k not in ("client_id", "client_secret")})


@router.post("/clients/{client_id}/revoke", status_code=204, tags=["clients"],
             summary="Revoke a client at once: its tokens stop working (operators only)")
async def revoke_client(client_id: str, request: Request, who: Principal = Depends(require("operator"))) -> None:
    svc = request.app.state.service
    if await svc.db.clients.find_one({"_id": client_id}, {"_id": 1}) is None:
        raise Problem(404, "Not found", f"No client {client_id}.")
    event = svc.event(ClientRevoked(client_id=client_id, reason="revoked by an operator"), actor=who.subject)
    await svc.write(svc.db.clients, {"_id": client_id, "status": {"$ne": "revoked"}},
                    {"$set": {"status": "revoked", "revoked_by": who.subject}}, events=[event])
    await svc.db.refresh_tokens.delete_many({"client_id": client_id})

"""Organisations (support institutions ①–⑫, bodies, individuals), their staff, and regional platforms (R-PF-01..04).

Least privilege by place (R-PF-05): a bureau account acts only on the platforms of its own block (the token's
`bureau_id`): it registers platforms only for that block and reads, renews and changes the members of those
only. Organisations belong to no block, so a bureau registers them (onboarding a new institution is its work);
it links staff to an organisation only if the organisation is a member of no other block's platform, since the
link hands the staff that organisation's R-PF-04 rights, budget rights included. A bureau token without a block
is refused everywhere. Operators act nationally; the agency reads nationally.
"""
from __future__ import annotations

import time
import uuid
from datetime import date
from typing import Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field, model_validator

from contracts.events.identity import (MembershipChanged, OrganisationRegistered, PlatformAreaChanged, PlatformMember,
                                       PlatformRegistered, StaffLinked)
from contracts.events.notifications import Notify
from contracts.vocab import fiscal_year
from identity_service import directory, domain
from identity_service.audit import record
from servicekit.auth import Principal, require
from servicekit.problems import Problem

router = APIRouter()
MANAGERS = ("operator", "bureau")  # who registers organisations and platforms
READERS = ("operator", "bureau", "agency", "institution")


def in_place(who: Principal, *blocks: str | None) -> None:
    """R-PF-05: refuses a bureau acting outside its block (or without one); see contracts.vocab.place_problem."""
    if problem := domain.place_problem(who.roles, who.bureau_id, blocks):
        raise Problem(403, "Not your block" if who.bureau_id else "No block", problem)


# --- organisations ----------------------------------------------------------------------------------
class OrganisationIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    kind: Literal["institution", "body", "individual"]
    institution_type: int | None = Field(default=None, ge=1, le=12,
                                         description="①–⑫ for a dispatch-capable institution, else omitted")
    prefecture: str | None = Field(default=None, max_length=20, description="e.g. 鳥取県 (one of the 47 prefectures)")
    certified: bool | None = Field(default=None, description="a certified support institution (認定支援機関); ⑦–⑪ are "
                                                             "by definition (R-POR-07). Institutions only")
    specialities: list[str] = Field(default_factory=list, max_length=20,
                                    description="fields it supports, published in the finder (R-POR-07): words of "
                                                "contracts.vocab.EXPERT_FIELDS")

    @model_validator(mode="after")
    def _type_only_for_institutions(self):
        if self.institution_type is not None and self.kind != "institution":
            raise ValueError("only an institution can have an institution_type (①–⑫)")
        return self


class OrganisationOut(OrganisationIn):
    org_id: str
    dispatch_capable: bool


def _org_out(doc: dict) -> OrganisationOut:
    return OrganisationOut(org_id=doc["_id"], dispatch_capable=domain.dispatch_capable(_org(doc)),
                           **{k: doc[k] for k in OrganisationIn.model_fields if k in doc})


def _org_problems(body: OrganisationIn) -> list[str]:
    """R-POR-07: what the finder publishes must be right: region, certification, specialities."""
    problems = [p for p in (domain.prefecture_problem(body.prefecture),
                            domain.certification_problem(body.kind, body.institution_type, body.certified)) if p]
    return problems + domain.speciality_problems(body.specialities)


def _org(doc: dict) -> domain.Org:
    return domain.Org(doc["_id"], doc["kind"], doc.get("institution_type"), doc.get("name", ""))


@router.post("/organisations", status_code=201, response_model=OrganisationOut, tags=["organisations"],
             summary="Register a support institution (typed ①–⑫ if dispatch-capable), body or individual")
async def register_organisation(body: OrganisationIn, request: Request,
                                who: Principal = Depends(require(*MANAGERS))) -> OrganisationOut:
    in_place(who)  # organisations belong to no block, but a bureau without one acts on nothing (R-PF-05)
    if problems := _org_problems(body):
        raise Problem(422, "The organisation cannot be registered", "; ".join(problems), problems=problems)
    svc = request.app.state.service
    org_id = f"org-{uuid.uuid4().hex[:16]}"
    facts = body.model_dump()
    if body.kind == "institution":  # R-POR-07: ⑦–⑪ are certified by definition
        facts["certified"] = domain.certified(body.institution_type, body.certified)
    doc = {"_id": org_id, **facts, "created_at": time.time()}
    await svc.insert(svc.db.orgs, doc, events=[svc.event(OrganisationRegistered(org_id=org_id, **facts),
                                                         actor=who.subject)])
    await directory.index_org(svc.db, doc)  # R-POR-07: published in the finder
    return _org_out(doc)


@router.get("/organisations/{org_id}", response_model=OrganisationOut, tags=["organisations"],
            summary="An organisation")
async def get_organisation(org_id: str, request: Request, who: Principal = Depends(require(*READERS))) -> OrganisationOut:
    in_place(who)
    doc = await request.app.state.service.db.orgs.find_one({"_id": org_id})
    if doc is None:
        raise Problem(404, "Not found", f"No organisation {org_id}.")
    return _org_out(doc)


class StaffIn(BaseModel):
    account_id: str = Field(min_length=1, max_length=100)


@router.post("/organisations/{org_id}/staff", status_code=204, tags=["organisations"],
             summary="Link an institution-staff account to the organisation it acts for")
async def link_staff(org_id: str, body: StaffIn, request: Request, who: Principal = Depends(require(*MANAGERS))) -> None:
    db = request.app.state.service.db
    in_place(who)
    if await db.orgs.find_one({"_id": org_id}, {"_id": 1}) is None:
        raise Problem(404, "Not found", f"No organisation {org_id}.")
    # The link hands the staff the organisation's rights in every platform it is a member of, and takes away those
    # of the organisation the account acted for until now: both must lie within the bureau's block (R-PF-04, R-PF-05).
    account = await db.accounts.find_one({"_id": body.account_id}, {"org_id": 1}) or {}
    for touched in {org_id, account.get("org_id")} - {None}:
        in_place(who, *[p.get("bureau_id") async for p in db.platforms.find({"member_ids": touched}, {"bureau_id": 1})])
    svc = request.app.state.service
    event = svc.event(StaffLinked(account_id=body.account_id, org_id=org_id, previous_org_id=account.get("org_id")),
                      actor=who.subject)
    res = await svc.write(db.accounts, {"_id": body.account_id, "kind": "institution", "status": "active"},
                          {"$set": {"org_id": org_id}}, events=[event])
    if res.matched_count != 1:
        raise Problem(422, "Not an institution account",
                      f"{body.account_id} is not an active account of kind 'institution'.")
    await record(db, actor=who.subject, action="identity.StaffLinked", key=body.account_id, payload={"org_id": org_id})


# --- regional platforms ------------------------------------------------------------------------------
class MemberOut(BaseModel):
    org_id: str
    member_role: str
    rights: list[str]


class AreaIn(BaseModel):
    prefectures: list[str] = Field(max_length=47, description="the prefectures the platform supports, e.g. 鳥取県")
    municipalities: list[str] = Field(default_factory=list, max_length=2000,
                                      description="narrower, if so: municipalities within them, each written with its "
                                                  "prefecture (鳥取県米子市)")


def _area_problems(area: AreaIn) -> list[str]:
    return domain.area_problems(area.prefectures, area.municipalities)


class PlatformIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    bureau_id: str | None = Field(default=None, min_length=1, max_length=100,
                                  description="the regional bureau (block) the platform belongs to; a bureau account "
                                              "registers only for its own block, which is the default (R-PF-05); "
                                              "operators must give it")
    fiscal_year: int = Field(ge=2000, le=2100)
    representative_id: str = Field(min_length=1, max_length=100)
    member_ids: list[str] = Field(min_length=1, max_length=500, description="every member, the representative included")
    area: AreaIn | None = Field(default=None, description="the support area, published in the directory (R-POR-07); "
                                                          "may be set later (PUT …/area)")


class PlatformOut(BaseModel):
    platform_id: str
    name: str
    bureau_id: str
    representative_id: str
    fiscal_years: list[int]
    last_review_year: int | None
    members: list[MemberOut]
    area: AreaIn | None = None


def _platform_out(doc: dict) -> PlatformOut:
    return PlatformOut(platform_id=doc["_id"], members=[MemberOut(**m, rights=domain.rights_of(m["member_role"]))
                                                        for m in doc["members"]],
                       **{k: doc.get(k) for k in ("name", "bureau_id", "representative_id", "fiscal_years",
                                                  "last_review_year", "area")})


async def _orgs(db, ids: list[str]) -> list[domain.Org]:
    found = {d["_id"]: _org(d) async for d in db.orgs.find({"_id": {"$in": list(ids)}})}
    if missing := [i for i in ids if i not in found]:
        raise Problem(422, "Unknown organisations", f"These organisations are not registered: {', '.join(missing)}.")
    return [found[i] for i in ids]


def _registered(doc: dict, fy: int, actor: str, svc) -> dict:
    area = doc.get("area") or {}
    return svc.event(PlatformRegistered(
        platform_id=doc["_id"], name=doc["name"], fiscal_year=fy, bureau_id=doc["bureau_id"],
        representative_id=doc["representative_id"], members=[PlatformMember(**m) for m in doc["members"]],
        area_prefectures=area.get("prefectures") or [], area_municipalities=area.get("municipalities") or []),
        actor=actor)


@router.post("/platforms", status_code=201, response_model=PlatformOut, tags=["platforms"],
             summary="Register a regional platform for a fiscal year (R-PF-01, R-PF-02)")
async def register_platform(body: PlatformIn, request: Request, who: Principal = Depends(require(*MANAGERS))) -> PlatformOut:
    block = body.bureau_id or who.bureau_id
    in_place(who, block)
    if block is None:
        raise Problem(422, "Which block?", "Give bureau_id: the regional bureau (block) the platform belongs to.")
    svc = request.app.state.service
    members = await _orgs(svc.db, body.member_ids)
    problems = domain.platform_problems(members, body.representative_id) + (_area_problems(body.area) if body.area else [])
    if problems:
        raise Problem(422, "The platform cannot be registered", "; ".join(problems), problems=problems)
    doc = {"_id": f"pf-{uuid.uuid4().hex[:16]}", "name": body.name, "bureau_id": block,
           "representative_id": body.representative_id, "fiscal_years": [body.fiscal_year], "last_review_year": None,
           "members": [{"org_id": m.org_id, "member_role": domain.member_role_for(m, body.representative_id).value}
                       for m in members], "member_ids": [m.org_id for m in members], "created_at": time.time(),
           "area": body.area.model_dump() if body.area else None}
    await svc.insert(svc.db.platforms, doc, events=[_registered(doc, body.fiscal_year, who.subject, svc)])
    await directory.index_platform(svc.db, doc["_id"])  # R-POR-07: published in the directory
    return _platform_out(doc)


async def _platform(db, platform_id: str, who: Principal) -> dict:
    """The platform, if the caller may act on it by place (R-PF-05)."""
    in_place(who)
    doc = await db.platforms.find_one({"_id": platform_id})
    if doc is None:
        raise Problem(404, "Not found", f"No platform {platform_id}.")
    in_place(who, doc.get("bureau_id"))
    return doc


@router.get("/platforms/{platform_id}", response_model=PlatformOut, tags=["platforms"],
            summary="A platform, its registered fiscal years and its members with their R-PF-04 rights")
async def get_platform(platform_id: str, request: Request, who: Principal = Depends(require(*READERS))) -> PlatformOut:
    return _platform_out(await _platform(request.app.state.service.db, platform_id, who))


class RenewalIn(BaseModel):
    fiscal_year: int = Field(ge=2000, le=2100)
    review_approved: bool | None = Field(default=None, description="the review's decision, when one is due (R-PF-03)")


@router.post("/platforms/{platform_id}/renewals", response_model=PlatformOut, tags=["platforms"],
             summary="Renew the registration for another fiscal year (R-PF-03; a review after ~3 years)")
async def renew_platform(platform_id: str, body: RenewalIn, request: Request,
                         who: Principal = Depends(require(*MANAGERS))) -> PlatformOut:
    svc = request.app.state.service
    doc = await _platform(svc.db, platform_id, who)
    if problem := domain.renewal_problem(doc["fiscal_years"], doc.get("last_review_year"), body.fiscal_year,
                                         body.review_approved):
        raise Problem(409, "The registration cannot be renewed", problem)
    members = await _orgs(svc.db, [m["org_id"] for m in doc["members"]])
    if problems := domain.platform_problems(members, doc["representative_id"]):
        raise Problem(409, "The registration cannot be renewed", "; ".join(problems), problems=problems)
    update = {"$push": {"fiscal_years": body.fiscal_year}}
    if domain.review_due(doc["fiscal_years"], doc.get("last_review_year"), body.fiscal_year):
        update["$set"] = {"last_review_year": body.fiscal_year}
    res = await svc.write(svc.db.platforms, {"_id": platform_id, "fiscal_years": {"$ne": body.fiscal_year}}, update,
                    events=[_registered(doc, body.fiscal_year, who.subject, svc)])
    if res.matched_count != 1:
        raise Problem(409, "Already renewed", f"The platform is already registered for FY{body.fiscal_year}.")
    await directory.index_platform(svc.db, platform_id)
    return _platform_out(await _platform(svc.db, platform_id, who))


@router.put("/platforms/{platform_id}/area", response_model=PlatformOut, tags=["platforms"],
            summary="Set the platform's support area, published in the directory (R-POR-07)")
async def set_area(platform_id: str, body: AreaIn, request: Request,
                   who: Principal = Depends(require(*MANAGERS))) -> PlatformOut:
    svc = request.app.state.service
    await _platform(svc.db, platform_id, who)
    if problems := _area_problems(body):
        raise Problem(422, "The support area cannot be set", "; ".join(problems), problems=problems)
    event = svc.event(PlatformAreaChanged(platform_id=platform_id, **body.model_dump()), actor=who.subject)
    await svc.write(svc.db.platforms, {"_id": platform_id}, {"$set": {"area": body.model_dump()}}, events=[event])
    await record(svc.db, actor=who.subject, action="identity.PlatformAreaChanged", key=platform_id,
                 payload=body.model_dump())
    await directory.index_platform(svc.db, platform_id)
    return _platform_out(await _platform(svc.db, platform_id, who))


class MemberIn(BaseModel):
    org_id: str = Field(min_length=1, max_length=100)


@router.post("/platforms/{platform_id}/members", response_model=PlatformOut, tags=["platforms"],
             summary="Add a member later (R-PF-03: a dispatch-capable newcomer is notified to the bureau)")
async def add_member(platform_id: str, body: MemberIn, request: Request,
                     who: Principal = Depends(require(*MANAGERS))) -> PlatformOut:
    svc = request.app.state.service
    doc = await _platform(svc.db, platform_id, who)
    (org,) = await _orgs(svc.db, [body.org_id])
    role = domain.member_role_for(org, doc["representative_id"]).value
    events = [svc.event(MembershipChanged(platform_id=platform_id, org_id=org.org_id, member_role=role), actor=who.subject)]
    if domain.dispatch_capable(org):
        events.append(svc.event(Notify(
            notification_id=f"pf-member-{platform_id}-{org.org_id}", recipient_id=doc["bureau_id"],
            recipient_kind="bureau", template="platform_dispatch_member_added",
            params={"platform_id": platform_id, "platform_name": doc["name"], "org_id": org.org_id,
                    "org_name": org.name, "institution_type": str(org.institution_type)}), actor=who.subject))
    # `member_ids` (flat) guards the push: FerretDB 1 mis-evaluates $ne on a field inside an array of documents
    res = await svc.write(svc.db.platforms, {"_id": platform_id, "member_ids": {"$ne": org.org_id}},
                    {"$push": {"members": {"org_id": org.org_id, "member_role": role}, "member_ids": org.org_id}},
                    events=events)
    if res.matched_count != 1:
        raise Problem(409, "Already a member", f"{org.org_id} is already a member of {platform_id}.")
    await directory.index_platform(svc.db, platform_id)
    return _platform_out(await _platform(svc.db, platform_id, who))


@router.delete("/platforms/{platform_id}/members/{org_id}", response_model=PlatformOut, tags=["platforms"],
               summary="A member leaves (only if the platform still meets R-PF-01/02 without it)")
async def remove_member(platform_id: str, org_id: str, request: Request,
                        who: Principal = Depends(require(*MANAGERS))) -> PlatformOut:
    svc = request.app.state.service
    doc = await _platform(svc.db, platform_id, who)
    entry = next((m for m in doc["members"] if m["org_id"] == org_id), None)
    if entry is None:
        raise Problem(404, "Not a member", f"{org_id} is not a member of {platform_id}.")
    members = await _orgs(svc.db, [m["org_id"] for m in doc["members"]])
    if problem := domain.removal_problem(members, doc["representative_id"], org_id):
        raise Problem(409, "The member cannot leave", problem)
    event = svc.event(MembershipChanged(platform_id=platform_id, org_id=org_id, member_role=None), actor=who.subject)
    await svc.write(svc.db.platforms, {"_id": platform_id}, {"$pullAll": {"members": [entry], "member_ids": [org_id]}}, events=[event])
    await directory.index_platform(svc.db, platform_id)
    return _platform_out(await _platform(svc.db, platform_id, who))


async def memberships(db, account: dict, today: date | None = None) -> list[dict]:
    """The `orgs` claim of an account's tokens (R-PF-04): its organisation's memberships this fiscal year."""
    org_id = account.get("org_id")
    if not org_id:
        return []
    platforms = [{"platform_id": p["_id"], "fiscal_years": p["fiscal_years"], "members": p["members"]}
                 async for p in db.platforms.find({"member_ids": org_id})]
    return domain.memberships_claim(org_id, platforms, fiscal_year(today or date.today()))

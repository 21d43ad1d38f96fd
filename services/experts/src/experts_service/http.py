"""HTTP handlers of the experts service: the expert's own page, recommendations, agency reviews, search."""
from __future__ import annotations

import asyncio
import uuid
from datetime import date, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from contracts.vocab import EXPERT_FIELDS, RATING_AXES, Right
from experts_service import domain, matching
from experts_service.search import VISIBLE, match_view
from experts_service.store import Store, now_iso, state_of
from servicekit import paging
from servicekit.auth import Principal, authenticate, require
from servicekit.problems import Problem

router = APIRouter()
SEARCHERS = ("institution", "agency", "bureau", "operator")  # who may search when the directory is not public
STAFF = ("agency", "operator")


def store(request: Request) -> Store:
    return request.app.state.store


# --- models -------------------------------------------------------------------------------------

class Profile(BaseModel):
    qualifications: list[str] = Field(default_factory=list, max_length=30, examples=[["中小企業診断士"]])
    fields: list[str] = Field(default_factory=list, max_length=14, description="from contracts.vocab.EXPERT_FIELDS")
    regions: list[str] = Field(default_factory=list, max_length=47, examples=[["熊本県"]])
    introduction: str = Field(default="", max_length=4000)
    remote_ok: bool = Field(default=False, description="I also work online, outside my regions (R-EX-07)")
    photo_ref: str | None = Field(default=None, max_length=500, description="reference of an uploaded photo")
    employer_org_id: str | None = Field(default=None, description="institution employing you (not public)")
    personnel_cost_subsidised: bool = False
    related_business_ids: list[str] = Field(default_factory=list, description="businesses you belong to or advise (not public)")


class CreatePage(Profile):
    name: str = Field(min_length=1, max_length=100, description="your real name (R-EX-01)")


class EditProfile(Profile):
    expected_version: int | None = Field(default=None, ge=1, le=10**9, description="the version you edited; refused if it changed")


class Window(BaseModel):
    start: date
    end: date
    note: str = Field(default="", max_length=500)


class Availability(BaseModel):
    windows: list[Window] = Field(default_factory=list, max_length=50)
    note: str = Field(default="", max_length=1000, examples=["長期出張のため8月末まで派遣不可"])
    weekdays: list[Annotated[int, Field(ge=0, le=6)]] = Field(default_factory=list, max_length=7, description=(
        "the days of the week you take visits on, 0 = Monday (R-EX-06 calendar); none: any day"), examples=[[0, 2, 4]])


class OrgRef(BaseModel):
    org_id: str


class Evidence(BaseModel):
    route: Literal["public_qualification", "manager_or_engineer", "sme_support", "teaching_research"]
    qualification: str | None = Field(default=None, description="for public_qualification, e.g. 中小企業診断士")
    years: float | None = Field(default=None, ge=0, le=100)
    detail: str = Field(default="", max_length=2000)
    document_ref: str | None = None


class Application(BaseModel):
    evidence: list[Evidence] = Field(min_length=1)
    no_disqualification: bool = Field(description="R-EX-02 (c): I declare that no disqualification applies")


class Review(BaseModel):
    decision: Literal["approve", "return", "reject"]
    reasons: list[str] = Field(default_factory=list)


class RenewalReview(BaseModel):
    decision: Literal["renew", "decline"]
    reasons: list[str] = Field(default_factory=list)


class Reason(BaseModel):
    reason: str = Field(min_length=1, max_length=1000)


class Visibility(BaseModel):
    visibility: Literal["public", "institutions"]


# --- views --------------------------------------------------------------------------------------

def own_view(doc: dict) -> dict:
    s = state_of(doc)
    s.pop("history")
    return s


async def public_view(st: Store, doc: dict) -> dict:
    """R-EX-03: what anyone allowed to see the directory sees."""
    orgs = await st.orgs(r["org_id"] for r in doc["recommendations"])
    p = doc["profile"]
    return {
        "expert_id": doc["_id"], "name": doc["name"], "status": doc["status"],
        "registered_fiscal_year": doc.get("registered_fiscal_year"),
        "qualifications": p["qualifications"], "fields": p["fields"], "regions": p["regions"],
        "introduction": p["introduction"], "photo_ref": p.get("photo_ref"),
        "remote_ok": bool(p.get("remote_ok")),
        "recommended_by": [{"org_id": o, "name": (orgs.get(o) or {}).get("name")}
                           for o in domain.effective_recommenders(state_of(doc), orgs)],
        "radar": await st.radar(doc["_id"]),
        "availability": doc["availability"], "version": doc["version"],
    }


def dossier_view(doc: dict, radar: dict | None) -> dict:
    s = state_of(doc)
    s["radar"] = radar
    return {**s, "renewal_dossier": domain.renewal_dossier(s)}


# --- the expert's own page (R-EX-01 stage 1, R-EX-03) --------------------------------------------

@router.post("/experts/me", status_code=201, tags=["own page"], summary="Open my expert page (stage 1, R-EX-01)")
async def create_page(body: CreatePage, request: Request, who: Principal = Depends(require("expert"))):
    state, change = domain.new_expert(f"ex-{uuid.uuid4().hex[:12]}", who.subject, body.name,
                                      body.model_dump(exclude={"name"}))
    return own_view(await store(request).create(state, change, actor=who.subject))


@router.get("/experts/me", tags=["own page"], summary="My expert record, including the application state")
async def my_page(request: Request, who: Principal = Depends(require("expert"))):
    return own_view(await store(request).by_account(who.subject))


@router.get("/experts/me/history", tags=["own page"], summary="Earlier versions of my page (R-EX-03)")
async def my_history(request: Request, who: Principal = Depends(require("expert"))):
    doc = await store(request).by_account(who.subject)
    return {"version": doc["version"], "history": doc["history"]}


async def _mine(request: Request, who: Principal, fn, action: str = "", with_radar: bool = False) -> dict:
    st = store(request)
    doc = await st.by_account(who.subject)
    return own_view(await st.mutate(doc["_id"], fn, actor=who.subject, action=action, with_radar=with_radar))


@router.put("/experts/me/profile", tags=["own page"], summary="Edit my page; every edit is a new version (R-EX-03)")
async def edit_profile(body: EditProfile, request: Request, who: Principal = Depends(require("expert"))):
    profile = body.model_dump(exclude={"expected_version"})
    return await _mine(request, who, lambda s: domain.edit_profile(s, profile, expected_version=body.expected_version,
                                                                   at=now_iso()))


@router.put("/experts/me/availability", tags=["own page"], summary="Set when I cannot be dispatched (R-EX-03)")
async def set_availability(body: Availability, request: Request, who: Principal = Depends(require("expert"))):
    windows = [w.model_dump() for w in body.windows]
    return await _mine(request, who, lambda s: domain.set_availability(s, windows, body.note, body.weekdays))


class Capacity(BaseModel):
    paused: bool = Field(default=False, description="no new dispatches while paused (R-EX-06)")
    open_cap: int | None = Field(default=None, ge=1, le=100, description=(
        "most open dispatches (accepted, not yet reported) taken on at a time; hidden from matching when reached"))


@router.put("/experts/me/capacity", tags=["own page"], summary="Pause, or cap my open dispatches (R-EX-06)")
async def set_capacity(body: Capacity, request: Request, who: Principal = Depends(require("expert"))):
    return await _mine(request, who, lambda s: domain.set_capacity(s, body.paused, body.open_cap))


@router.post("/experts/me/consents", tags=["own page"],
             summary="Ask for, or accept, a recommendation by an institution (R-EX-02 a)")
async def give_consent(body: OrgRef, request: Request, who: Principal = Depends(require("expert"))):
    return await _mine(request, who, lambda s: domain.consent(s, body.org_id, at=now_iso()), "experts.ConsentGiven")


@router.post("/experts/me/application", tags=["own page"],
             summary="Apply for national dispatch-expert registration (stage 2, R-EX-01/02)")
async def apply(body: Application, request: Request, who: Principal = Depends(require("expert"))):
    st = store(request)
    doc = await st.by_account(who.subject)
    orgs = await st.orgs(r["org_id"] for r in doc["recommendations"])
    evidence = [e.model_dump() for e in body.evidence]
    return own_view(await st.mutate(doc["_id"], lambda s: domain.apply_stage2(
        s, evidence, body.no_disqualification, orgs, at=now_iso()), actor=who.subject))


@router.post("/experts/me/renewal", tags=["own page"],
             summary="Confirm that I intend to continue next fiscal year (R-EX-04)")
async def confirm_renewal(request: Request, who: Principal = Depends(require("expert"))):
    return await _mine(request, who, lambda s: domain.confirm_renewal(s, date.today(), at=now_iso()),
                       "experts.RenewalReviewRequested")


# --- institutions (R-EX-02 a, R-PF-04) ------------------------------------------------------------

def _acting_for(who: Principal, org_id: str) -> None:
    if org_id not in who.orgs_with(Right.RECOMMEND_EXPERTS):
        raise Problem(403, "Forbidden", f"You do not act for organisation {org_id} in a platform role that may "
                      "recommend experts (R-PF-04).")


@router.post("/experts/{expert_id}/recommendations", tags=["institutions"],
             summary="Recommend an expert for national registration (R-EX-02 a)")
async def recommend(expert_id: str, body: OrgRef, request: Request, who: Principal = Depends(require("institution"))):
    _acting_for(who, body.org_id)
    st = store(request)
    org = (await st.orgs([body.org_id])).get(body.org_id)
    doc = await st.mutate(expert_id, lambda s: domain.recommend(s, body.org_id, org, at=now_iso()),
                          actor=who.subject, action="experts.RecommendationGiven")
    return await public_view(st, doc)


@router.get("/institutions/{org_id}/recommendees", tags=["institutions"],
            summary="Experts this institution recommended, and those waiting for its recommendation")
async def recommendees(org_id: str, request: Request, who: Principal = Depends(require("institution"))):
    _acting_for(who, org_id)
    out = []
    async for doc in store(request).experts.find({"recommendations.org_id": org_id}, {"history": 0, "_outbox": 0}):
        rec = next(r for r in doc["recommendations"] if r["org_id"] == org_id)
        out.append({"expert_id": doc["_id"], "name": doc["name"], "status": doc["status"],
                    "fields": doc["profile"]["fields"], "recommended": rec["recommended"],
                    "consented": rec["consented"],
                    "application": (doc.get("application") or {}).get("state")})
    return {"org_id": org_id, "experts": out}


# --- the processing agency ------------------------------------------------------------------------

QueueLimit = Query(100, ge=1, le=paging.MAX_PAGE)
QueueCursor = Query(None, max_length=300, description="next_cursor of the previous page")


async def _queue(request: Request, filt: dict, limit: int, cursor: str | None) -> tuple[list[dict], str | None]:
    """Oldest change first, paged by the `key` each change stamps (R-OPS-03: no queue stops at a fixed count)."""
    st = store(request)
    docs, nxt = await paging.page(st.experts, filt, limit=limit, cursor=cursor, newest_first=False,
                                  projection={"_outbox": 0})
    return [dossier_view(d, await st.radar(d["_id"])) for d in docs], nxt


@router.get("/reviews/applications", tags=["agency"],
            summary="Stage-2 applications waiting for the formal review, oldest first, paged by next_cursor")
async def application_queue(request: Request, limit: int = QueueLimit, cursor: str | None = QueueCursor,
                            _: Principal = Depends(require(*STAFF))):
    items, nxt = await _queue(request, {"status": "applied"}, limit, cursor)
    return {"applications": items, "next_cursor": nxt}


@router.get("/reviews/renewals", tags=["agency"],
            summary="Renewals after three years, with dispatch record and ratings (R-EX-04), oldest first, paged by "
                    "next_cursor")
async def renewal_queue(request: Request, limit: int = QueueLimit, cursor: str | None = QueueCursor,
                        _: Principal = Depends(require(*STAFF))):
    items, nxt = await _queue(request, {"renewal.state": "review"}, limit, cursor)
    return {"renewals": items, "next_cursor": nxt}


@router.get("/experts/{expert_id}/dossier", tags=["agency"], summary="Everything the agency reviews about an expert")
async def dossier(expert_id: str, request: Request, _: Principal = Depends(require(*STAFF))):
    st = store(request)
    doc = await st.get(expert_id)
    if doc is None:
        raise Problem(404, "No such expert", f"There is no expert {expert_id}.")
    return dossier_view(doc, await st.radar(expert_id))


@router.post("/experts/{expert_id}/review", tags=["agency"],
             summary="Formal review of a stage-2 application: approve, return with reasons, reject (R-EX-01)")
async def review(expert_id: str, body: Review, request: Request, who: Principal = Depends(require("agency"))):
    doc = await store(request).mutate(expert_id, lambda s: domain.review_application(
        s, body.decision, body.reasons, reviewer=who.subject, at=now_iso(), today=date.today()), actor=who.subject)
    return own_view(doc)


@router.post("/experts/{expert_id}/renewal-review", tags=["agency"],
             summary="Renew or decline after reviewing record and ratings (R-EX-04)")
async def renewal_review(expert_id: str, body: RenewalReview, request: Request,
                         who: Principal = Depends(require("agency"))):
    doc = await store(request).mutate(expert_id, lambda s: domain.review_renewal(
        s, body.decision, body.reasons, reviewer=who.subject, at=now_iso()), actor=who.subject,
        action="experts.RenewalDeclined", with_radar=True)
    return own_view(doc)


@router.post("/experts/{expert_id}/suspend", tags=["agency"], summary="Suspend: never offered for dispatch")
async def suspend(expert_id: str, body: Reason, request: Request, who: Principal = Depends(require("agency"))):
    return own_view(await store(request).mutate(expert_id, lambda s: domain.suspend(
        s, body.reason, by=who.subject, at=now_iso()), actor=who.subject))


@router.post("/experts/{expert_id}/reinstate", tags=["agency"], summary="End a suspension")
async def reinstate(expert_id: str, request: Request, who: Principal = Depends(require("agency"))):
    return own_view(await store(request).mutate(expert_id, lambda s: domain.reinstate(
        s, date.today(), by=who.subject, at=now_iso()), actor=who.subject))


@router.post("/experts/{expert_id}/exit", tags=["agency"], summary="Forced exit from the programme (final)")
async def force_exit(expert_id: str, body: Reason, request: Request, who: Principal = Depends(require("agency"))):
    return own_view(await store(request).mutate(expert_id, lambda s: domain.force_exit(
        s, body.reason, by=who.subject, at=now_iso()), actor=who.subject))


@router.post("/registrations/expire-lapsed", tags=["agency"],
             summary="End the registrations of past fiscal years that were not renewed (R-EX-04)")
async def expire_lapsed(request: Request, who: Principal = Depends(require(*STAFF))):
    st, today, expired = store(request), date.today(), []
    async for d in st.experts.find({"status": {"$in": ["registered", "suspended"]}}, {"_id": 1}):
        doc = await st.mutate(d["_id"], lambda s: domain.expire_if_lapsed(s, today), actor=who.subject)
        if doc["status"] == "expired":
            expired.append(d["_id"])
    return {"expired": expired}


# --- programme setting (R-ANC-02) ----------------------------------------------------------------

@router.get("/settings/directory", tags=["settings"], summary="Who may search the expert directory")
async def get_visibility(request: Request, _: Principal = Depends(require(*STAFF))):
    return {"visibility": await store(request).visibility()}


@router.put("/settings/directory", tags=["settings"],
            summary="Open the directory to the public or restrict it to institutions (R-ANC-02)")
async def put_visibility(body: Visibility, request: Request, who: Principal = Depends(require("operator"))):
    await store(request).set_visibility(body.visibility, who.subject)
    return {"visibility": body.visibility}


# --- directory: search and public page (R-EX-03, R-EX-05, R-ANC-02) ----------------------------------

async def directory_reader(request: Request) -> Principal | None:
    """Anyone when the programme opened the directory to the public; otherwise institutions and staff."""
    public = await store(request).visibility() == "public"
    if public and not request.headers.get("authorization"):
        return None
    who = await authenticate(request)
    if not public and not who.roles & set(SEARCHERS):
        raise Problem(403, "Forbidden", "In this programme the expert directory is open to support institutions "
                      "and the programme's staff only (R-ANC-02).")
    if not public and not who.first_party:  # as servicekit.auth.require: this route names no scope
        raise Problem(403, "Forbidden", "This token was issued to a third-party application; the restricted expert "
                      "directory is not among the actions its granted scopes name.")
    return who


@router.get("/experts", tags=["directory"], summary="Search experts (R-EX-05)")
async def search(request: Request, who: Principal | None = Depends(directory_reader),
                 q: str = Query("", max_length=200, description="free text, Japanese or English"),
                 field: list[str] = Query(default=[], description="fields from the controlled vocabulary; all must match"),
                 qualification: str | None = None, region: str | None = None,
                 available_on: date | None = Query(None, description="not inside any unavailability window that day, "
                                                                            "and on a weekday the expert works"),
                 for_dispatch: bool = Query(False, description="only registered experts of this fiscal year, not "
                                                               "suspended, available (on available_on, else today)"),
                 status: list[str] = Query(default=[], description="agency/operator only: statuses to list"),
                 min_communication: float | None = Query(None, ge=1, le=5),
                 min_clarity: float | None = Query(None, ge=1, le=5),
                 min_expertise: float | None = Query(None, ge=1, le=5),
                 min_analysis: float | None = Query(None, ge=1, le=5),
                 min_execution: float | None = Query(None, ge=1, le=5),
                 min_manners: float | None = Query(None, ge=1, le=5),
                 sort: Literal["relevance", "rating", "name", *RATING_AXES] = "relevance",
                 page: int = Query(1, ge=1, le=10_000), size: int = Query(20, ge=1, le=100)):
    unknown = [f for f in field if f not in EXPERT_FIELDS]
    if unknown:
        raise Problem(422, "Unknown field", f"Fields come from the list {', '.join(EXPERT_FIELDS)}; "
                      f"not known: {', '.join(unknown)}.")
    statuses = VISIBLE
    if status:
        if not who or not who.roles & set(STAFF):
            raise Problem(403, "Forbidden", "Only the programme's staff may list experts by status.")
        statuses = tuple(status)
    mins = {"communication": min_communication, "clarity": min_clarity, "expertise": min_expertise,
            "analysis": min_analysis, "execution": min_execution, "manners": min_manners}
    total, items = store(request).index.search(
        q=q, fields=field, qualification=qualification, region=region, available_on=available_on,
        min_ratings=mins, for_dispatch=for_dispatch, statuses=statuses, sort=sort, page=page, size=size)
    # plain JSON: the cards are already JSON-ready, and FastAPI's generic encoder would cost more than the search
    return JSONResponse({"total": total, "page": page, "size": size, "items": items})


@router.get("/experts/suggestions", tags=["directory"],
            summary="Suggested experts for a need, each with the reasons; work spread among equals (R-EX-07)")
async def suggestions(request: Request, who: Principal | None = Depends(directory_reader),
                      field: list[str] = Query(default=[], description="fields needed (controlled vocabulary); "
                                                                          "experts sharing none are not suggested"),
                      region: str | None = Query(None, max_length=10, description="the business's prefecture, e.g. 熊本県"),
                      remote_ok: bool = Query(False, description="the business accepts online work"),
                      need: list[Literal[*RATING_AXES]] = Query(default=[], description="rating axes that matter most"),
                      on: date | None = Query(None, description="the day the work should start (availability)"),
                      limit: int = Query(10, ge=1, le=50)):
    unknown = [f for f in field if f not in EXPERT_FIELDS]
    if unknown:
        raise Problem(422, "Unknown field", f"Fields come from the list {', '.join(EXPERT_FIELDS)}; "
                      f"not known: {', '.join(unknown)}.")
    if region and matching.block_of(region) is None:
        raise Problem(422, "Unknown prefecture", f"'{region}' is not a prefecture; write it as in 熊本県 or 東京都.")
    st, today = store(request), date.today()
    wanted = matching.Need(tuple(dict.fromkeys(field)), region, remote_ok, tuple(dict.fromkeys(need)), on)
    # the same caller asking on the same day sees the same order; other callers and other days rotate equals
    seed = f"{today.isoformat()}|{who.subject if who else 'public'}"
    candidates = st.index.candidates(fields=list(wanted.fields), on=on, today=today)
    top, left_out = matching.suggest(candidates, wanted, today=today, seed=seed, limit=2 * limit)
    # The few shown are re-read: a cap reached or a dispatch completed since this replica's index learnt of it
    # must show (and an expert at the cap must not be suggested, R-EX-06); their first places in suggestions come
    # from the counters every replica shares (one query for those few).
    by_id = {c["expert_id"]: c for c in candidates}
    top_ids = [s.expert_id for s in top]

    async def reread() -> list[dict]:
        return [{**by_id[d["_id"]], **match_view(d)}
                async for d in st.experts.find({"_id": {"$in": top_ids}, "status": "registered"},
                                               {"history": 0, "_outbox": 0})]
    fresh, firsts = await asyncio.gather(
        reread(), st.first_places.since(top_ids, today - timedelta(days=matching.DEFAULT.exposure_days), today))
    for c in fresh:
        c["first_places"] = firsts.get(c["expert_id"], 0)
    shown, late = matching.suggest(fresh, wanted, today=today, seed=seed, limit=limit)
    for why, n in late.items():
        left_out[why] = left_out.get(why, 0) + n
    if shown:
        await st.first_places.note(shown[0].expert_id, today)
    return JSONResponse({"need": {"fields": list(wanted.fields), "region": region, "block": matching.block_of(region),
                                  "remote_ok": remote_ok, "needs": list(wanted.needs),
                                  "on": on.isoformat() if on else None},
                         "candidates": len(candidates), "left_out": left_out,
                         "items": [s.card() for s in shown]})


@router.get("/experts/{expert_id}", tags=["directory"], summary="An expert's public page (R-EX-03)")
async def public_page(expert_id: str, request: Request, who: Principal | None = Depends(directory_reader)):
    st = store(request)
    doc = await st.get(expert_id)
    staff = bool(who and who.roles & set(STAFF))
    if doc is None or (doc["status"] not in VISIBLE and not staff):
        raise Problem(404, "No such expert", f"There is no listed expert {expert_id}.")
    return await public_view(st, doc)

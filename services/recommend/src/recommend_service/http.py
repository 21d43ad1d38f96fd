"""HTTP handlers of the recommend service: catalogue (R-REC-04), recommendations (R-REC-01/02),
interactions (R-REC-02) and aggregated uptake for policy analysis (R-REC-05)."""
from __future__ import annotations

import re
from datetime import UTC, datetime, date
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from pymongo.errors import DuplicateKeyError

from contracts.events.recommend import InteractionRecorded, ProgrammeAdded, ProgrammeTags
from recommend_service import benchmark, diagnosis, domain, report, store
from servicekit import aggregate
from servicekit.auth import Principal, require
from servicekit.problems import Problem
from servicekit.refusals import Rejected
from servicekit.store import record_audit

router = APIRouter()
SIGNED_IN = ("business", "founder", "operator", "institution", "expert", "bureau", "agency")


def _svc(request: Request):
    return request.app.state.service


class BusinessProfile(BaseModel):
    business_id: str
    name: str
    prefecture: str
    industry: str
    employees: int
    registered_at: datetime | None = None


class Programme(BaseModel):
    programme_id: str = Field(min_length=3, max_length=80, pattern=r"^[a-z0-9][a-z0-9-]*$")
    name: str = Field(min_length=1, max_length=200)
    fiscal_year: int = Field(ge=1990, le=2100)
    budget_oku_yen: float | None = Field(default=None, ge=0, le=1_000_000)
    purpose: str = Field(default="", max_length=2000)
    target: str = Field(default="", max_length=2000)
    subsidy_rate: str | None = Field(default=None, max_length=200)
    cap_yen: int | None = Field(default=None, ge=0, le=10**12)
    tags: ProgrammeTags = Field(default_factory=ProgrammeTags)
    application_deadline: date | None = Field(default=None, description="last day to apply; followers are reminded "
                                                                        "before it (R-NOT-04)")
    source: str | None = Field(default=None, description="seed document it comes from (001, 002) or None")


class Recommendation(BaseModel):
    programme: Programme
    score: float
    reasons: list[str] = Field(description="why it is recommended, in words the user understands")


class InteractionIn(BaseModel):
    programme_id: str
    kind: Literal["used", "favourite"]


class Interaction(InteractionIn):
    business_id: str


class UptakeCell(BaseModel):
    programme_id: str
    prefecture: str
    industry: str
    businesses: int


class Uptake(BaseModel):
    k: int
    cells: list[UptakeCell]
    suppressed_cells: int = Field(description="cells with fewer than k businesses, left out (R-REC-05)")
    next_after: str | None = Field(default=None, description="cursor of the next page of programmes; None on the last")


def _profile(doc: dict, keywords: str) -> dict:
    """What recommendations match on (R-REC-01): the business's attributes and its questionnaire answers."""
    return {"industry": doc["industry"], "prefecture": doc["prefecture"], "employees": doc["employees"],
            "keywords": [k for k in re.split(r"[,、，\s]+", keywords) if k]}


async def _business(request: Request, business_id: str, who: Principal) -> dict:
    """The profile if the caller acts for that business (R-ID-07: bound in its token), holds its delegation to read
    its data (R-ID-08), or is an operator; 403 for anyone else."""
    doc = await _svc(request).db.business_profiles.find_one({"_id": business_id}, {"_outbox": 0, "_seen": 0})
    if "operator" not in who.roles and not who.may(business_id, "profile:read"):
        raise Problem(403, "Forbidden", f"Only business {business_id} itself or an operator may see this.")
    if doc is None:
        raise Problem(404, "Not found", f"No profile for business {business_id} yet.")
    return doc


@router.get("/businesses/{business_id}", response_model=BusinessProfile, tags=["businesses"],
            summary="The attributes recommendations are matched on, as learnt from identity events")
async def get_profile(business_id: str, request: Request,
                      who: Principal = Depends(require(*SIGNED_IN))) -> BusinessProfile:
    doc = await _business(request, business_id, who)
    return BusinessProfile(business_id=doc["_id"], **{k: doc.get(k) for k in BusinessProfile.model_fields if k != "business_id"})


class ProgrammePage(BaseModel):
    items: list[Programme]
    next_after: str | None = Field(description="pass as `after` for the next page; None on the last page")


AFTER = Query("", max_length=200, description="cursor: the `next_after` of the previous page (empty: from the start)")


@router.get("/programmes", response_model=ProgrammePage, tags=["programmes"],
            summary="The support programme catalogue, a page at a time in programme-id order (R-REC-04, R-OPS-01)")
async def list_programmes(request: Request, after: str = AFTER, limit: int = Query(50, ge=1, le=200),
                          _: Principal = Depends(require(*SIGNED_IN))) -> ProgrammePage:
    page = await store.programmes_page(_svc(request).db, after, limit)
    return ProgrammePage(items=[Programme(**p) for p in page],
                         next_after=page[-1]["programme_id"] if len(page) == limit else None)


@router.get("/programmes/{programme_id}", response_model=Programme, tags=["programmes"],
            summary="One support programme: the page pushed notices and recommendations link to (R-REC-04, R-NOT-01)")
async def get_programme(programme_id: str, request: Request, _: Principal = Depends(require(*SIGNED_IN))) -> Programme:
    p = await store.programme(_svc(request).db, programme_id)
    if p is None:
        raise Problem(404, "Not found", f"No programme {programme_id} in the catalogue.")
    return Programme(**p)


@router.post("/programmes", status_code=201, response_model=Programme, tags=["programmes"],
             summary="Add a programme to the catalogue; matching businesses are notified (R-REC-04, R-NOT-01)")
async def add_programme(body: Programme, request: Request, who: Principal = Depends(require("operator"))) -> Programme:
    svc = _svc(request)
    event = svc.event(ProgrammeAdded(**body.model_dump(exclude={"source"})), actor=who.subject)
    try:
        await svc.insert(svc.db.programmes, {"_id": body.programme_id, **body.model_dump(mode="json", exclude={"programme_id"}),
                                             "added_by": who.subject}, events=[event])
    except DuplicateKeyError:
        raise Problem(409, "Already in the catalogue", f"Programme {body.programme_id} already exists.") from None
    return body


@router.get("/businesses/{business_id}/recommendations", response_model=list[Recommendation], tags=["recommendations"],
            summary="Programmes ranked for this business, each with its reasons (R-REC-01, R-REC-02)")
async def recommendations(business_id: str, request: Request,
                          keywords: str = Query("", max_length=500,
                                                description="questionnaire answers, comma-separated (e.g. 事業承継,輸出)"),
                          limit: int = Query(10, ge=1, le=50),
                          who: Principal = Depends(require(*SIGNED_IN))) -> list[Recommendation]:
    db = _svc(request).db
    doc = await _business(request, business_id, who)
    profile = _profile(doc, keywords)
    # R-OPS-03: the segment's candidates and the counts of this business's own programmes; nothing else is read
    candidates = (await store.segment_for_request(db, store.segment_of(doc)))["candidates"]
    mine = set(doc.get("items") or [])
    by_id = {p["programme_id"]: p for p in candidates}
    ranked = domain.rank(candidates, profile, mine, await store.programme_stats(db, sorted(mine)), limit=limit)
    return [Recommendation(programme=Programme(**by_id[s.programme_id]), score=round(s.score, 3), reasons=s.reasons)
            for s in ranked]


@router.post("/businesses/{business_id}/interactions", response_model=Interaction, tags=["recommendations"],
             summary="Record that the business uses or favours a programme (idempotent; R-REC-02)")
async def record_interaction(business_id: str, body: InteractionIn, request: Request,
                             who: Principal = Depends(require("business", "founder", "operator"))) -> Interaction:
    svc = _svc(request)
    await _business(request, business_id, who)  # refuses whoever may not act for it
    if await svc.db.programmes.find_one({"_id": body.programme_id}, {"_id": 1}) is None:
        raise Problem(404, "Unknown programme", f"There is no programme {body.programme_id} in the catalogue.")
    use = f"{body.programme_id}:{body.kind}"

    def decide(doc: dict) -> aggregate.Change | None:
        if use in (doc.get("uses") or []):
            return None  # recorded before: idempotent
        items = doc.get("items") or []
        new = body.programme_id not in items
        event = svc.event(InteractionRecorded(
            business_id=business_id, programme_id=body.programme_id, kind=body.kind, before=items if new else [],
            new_programme=new, prefecture=doc["prefecture"], industry=doc["industry"]), actor=who.subject)
        return aggregate.Change(add_to_set={"uses": use, "items": body.programme_id}, events=[event],
                                where={"uses": {"$ne": use},
                                       "items": {"$ne": body.programme_id} if new else body.programme_id})

    # compare-and-set on what the business had (`version`; profiles stored before it count theirs in `_v`)
    await aggregate.update(svc, svc.db.business_profiles, business_id, decide, actor=who.subject,
                           action="recommend.InteractionRecorded", attempts=3,
                           projection={"uses": 1, "items": 1, "version": 1, "_v": 1, "prefecture": 1, "industry": 1},
                           busy=Rejected("conflict", "Busy", "The business's interactions changed concurrently; try again."))
    return Interaction(business_id=business_id, **body.model_dump())


@router.get("/analytics/programme-uptake", response_model=Uptake, tags=["analytics"],
            summary="Businesses using each programme by prefecture × industry; small cells suppressed (R-REC-05)")
async def programme_uptake(request: Request,
                           k: int = Query(5, ge=5, le=1000, description="smallest group size shown (never below 5)"),
                           after: str = AFTER, limit: int = Query(50, ge=1, le=200, description="programmes per page"),
                           who: Principal = Depends(require("operator", "agency"))) -> Uptake:
    db = _svc(request).db
    stats = await store.stats_page(db, after, limit)  # counters kept by events (R-OPS-03), a page of programmes
    cells, suppressed = domain.uptake_from_counters(stats, k)
    await record_audit(db, actor=who.subject, action="recommend.UptakeRead", key="programme-uptake",
                       payload={"k": k, "after": after})
    return Uptake(k=k, cells=[UptakeCell(**c) for c in cells], suppressed_cells=suppressed,
                  next_after=stats[-1]["programme_id"] if len(stats) == limit else None)


# --- case studies (R-POR-08) ------------------------------------------------------------------------------------------
class CaseStudy(BaseModel):
    case_id: str
    title: str
    title_en: str
    summary: str
    summary_en: str
    support: str = Field(description="the support the business received")
    outcome: str = Field(description="what came of it")
    fiscal_year: int
    programme_ids: list[str] = Field(description="programmes of the catalogue the case used")
    tags: ProgrammeTags = Field(description="industry, size, region and challenge keywords, as programmes are tagged")


class CasePage(BaseModel):
    items: list[CaseStudy]
    next_after: str | None = Field(description="pass as `after` for the next page; None on the last page")


class CaseRecommendation(BaseModel):
    case: CaseStudy
    score: float
    reasons: list[str] = Field(description="why this case is recommended, in words the user understands")


def _cases(request: Request) -> list[dict]:
    return request.app.state.cases  # the catalogue, loaded with the service (domain.load_cases)


@router.get("/cases", response_model=CasePage, tags=["cases"],
            summary="Search the support cases (事例) by words, industry and region, a page at a time (R-POR-08)")
async def search_cases(request: Request,
                       q: str = Query("", max_length=200, description="words to find (Japanese or English), all of them"),
                       industry: str | None = Query(None, max_length=40, description="e.g. 製造業"),
                       region: str | None = Query(None, max_length=10, description="a prefecture, e.g. 鳥取県"),
                       after: str = AFTER, limit: int = Query(20, ge=1, le=100),
                       _: Principal = Depends(require(*SIGNED_IN))) -> CasePage:
    if problem := domain.region_problem(region):
        raise Problem(422, "Unknown region", problem)
    items, nxt = domain.cases_page(_cases(request), after, limit, q=q, industry=industry, region=region)
    return CasePage(items=[CaseStudy(**c) for c in items], next_after=nxt)


@router.get("/cases/{case_id}", response_model=CaseStudy, tags=["cases"], summary="One support case (R-POR-08)")
async def get_case(case_id: str, request: Request, _: Principal = Depends(require(*SIGNED_IN))) -> CaseStudy:
    case = next((c for c in _cases(request) if c["case_id"] == case_id), None)
    if case is None:
        raise Problem(404, "Not found", f"No case {case_id}.")
    return CaseStudy(**case)


@router.get("/businesses/{business_id}/case-recommendations", response_model=list[CaseRecommendation],
            tags=["recommendations"],
            summary="Support cases close to this business, each with its reasons, matched like programmes (R-POR-08)")
async def recommend_cases(business_id: str, request: Request,
                          keywords: str = Query("", max_length=500,
                                                description="questionnaire answers, comma-separated (e.g. 事業承継,輸出)"),
                          limit: int = Query(5, ge=1, le=20),
                          who: Principal = Depends(require(*SIGNED_IN))) -> list[CaseRecommendation]:
    doc = await _business(request, business_id, who)
    profile = _profile(doc, keywords)
    cases = {c["case_id"]: c for c in _cases(request)}
    return [CaseRecommendation(case=CaseStudy(**cases[s.programme_id]), score=round(s.score, 3), reasons=s.reasons)
            for s in domain.rank_cases(list(cases.values()), profile, limit=limit)]


class PostingRecommendation(BaseModel):
    posting_id: str
    title: str | None
    direction: str
    kind: str
    region: str
    industry: str
    score: float
    reasons: list[str] = Field(description="why this need or offer is recommended")
    link: str = Field(description="where the portal shows it (the community service); contacts only after both consent")


@router.get("/businesses/{business_id}/posting-recommendations", response_model=list[PostingRecommendation],
            tags=["recommendations"],
            summary="Needs and offers of the community (sales channels, partners, successors, expert help) close to "
                    "this business, each with its reasons, matched like programmes (R-POR-03, R-REC-01)")
async def recommend_postings(business_id: str, request: Request,
                             keywords: str = Query("", max_length=500,
                                                   description="questionnaire answers, comma-separated (e.g. 事業承継)"),
                             limit: int = Query(5, ge=1, le=20),
                             who: Principal = Depends(require(*SIGNED_IN))) -> list[PostingRecommendation]:
    doc = await _business(request, business_id, who)
    profile = _profile(doc, keywords)
    candidates = {p["_id"]: p for p in await store.posting_candidates(request.app.state.service.db, profile)}
    return [PostingRecommendation(**{k: candidates[s.programme_id][k] for k in ("title", "direction", "kind", "region",
                                                                                "industry")},
                                  posting_id=s.programme_id, score=s.score, reasons=s.reasons,
                                  link=f"/api/community/postings/{s.programme_id}")
            for s in domain.rank_postings(list(candidates.values()), profile, business_id, profile["keywords"],
                                          limit=limit)]


class Diagnosis(BaseModel):
    indicators: dict[str, float | None] = Field(description="sales_growth, operating_margin, labour_productivity")
    peer_medians: dict[str, float | None] = Field(description="same industry and size; None with too few peers")
    peers: int
    sales_forecast_next_year: int | None
    subsidy_simulation: dict[str, int] | None = None


@router.get("/businesses/{business_id}/diagnosis", response_model=Diagnosis, tags=["recommendations"],
            summary="Management diagnosis: local benchmark against peers, forecast, subsidy simulation (R-REC-03)")
async def diagnose(business_id: str, request: Request,
                   programme_id: str | None = Query(None, description="simulate using this programme's rate and cap"),
                   investment_yen: int | None = Query(None, ge=1, le=10**12),
                   who: Principal = Depends(require(*SIGNED_IN))) -> Diagnosis:
    db = _svc(request).db
    doc = await _business(request, business_id, who)
    mine = diagnosis.indicators(doc.get("financials") or [], doc["employees"])
    # R-OPS-03: peers come from the group's sketch, kept by events; the business itself is taken out of it
    group = await store.peer_group_for_request(db, doc.get("peer_group")) or {}
    medians = diagnosis.peer_medians_ranked(group.get("ranked") or {}, doc.get("indicators"))
    out = Diagnosis(indicators=mine, peer_medians=medians, peers=max((group.get("n") or 0) - 1, 0),
                    sales_forecast_next_year=diagnosis.forecast_sales(doc.get("financials") or [], medians["sales_growth"]))
    if programme_id or investment_yen:
        if not (programme_id and investment_yen):
            raise Problem(422, "Incomplete simulation", "Give both programme_id and investment_yen to simulate a subsidy.")
        prog = await db.programmes.find_one({"_id": programme_id}, {"subsidy_rate": 1, "cap_yen": 1})
        if prog is None:
            raise Problem(404, "Unknown programme", f"There is no programme {programme_id} in the catalogue.")
        out.subsidy_simulation = diagnosis.simulate_subsidy(investment_yen, diagnosis.subsidy_rate(prog.get("subsidy_rate")),
                                                            prog.get("cap_yen"))
    return out


# --- local benchmark in full (R-REC-06) -------------------------------------------------------------------------------
class BenchmarkIndicator(BaseModel):
    key: str
    name: str = Field(description="the indicator's name in the official local benchmark tool")
    unit: str
    higher_is_better: bool
    value: float | None = Field(description="None when not computable (see reason)")
    score: int | None = Field(description="1–5 against the quintiles of the same industry's peers; None: see reason")
    reason: str | None = Field(description="why there is no value or no score")
    peers: int = Field(description="peers of the same industry with this figure (the business itself excluded)")
    peer_quintiles: list[float] | None = Field(description="the peers' 20/40/60/80% points; None with too few peers")


class BenchmarkPeriod(BaseModel):
    fiscal_year: int
    indicators: dict[str, dict] = Field(description="{key: {value, reason}} of that period")


class Benchmark(BaseModel):
    business_id: str
    fiscal_year: int | None = Field(description="the latest period with figures")
    indicators: list[BenchmarkIndicator]
    total: int = Field(description="sum of the scores")
    max_total: int
    rank: Literal["A", "B", "C", "D"] | None = Field(description="None unless all six are scored (see rank_reason)")
    rank_reason: str | None
    trend: list[BenchmarkPeriod] = Field(description="the six indicators over the last three periods, oldest first")


async def _benchmark(request: Request, business_id: str, who: Principal) -> tuple[dict, dict]:
    """R-REC-06: the business's profile (same access rule as the diagnosis) and its benchmark; the peers come from
    the industry's sketch kept by events (R-OPS-03), the business itself taken out of it."""
    db = _svc(request).db
    doc = await _business(request, business_id, who)
    group = await store.industry_peers_for_request(db, doc.get("industry")) or {}
    cuts = benchmark.peer_cuts(group.get("sketch") or {}, doc.get("bench_values"))
    return doc, benchmark.benchmark(doc.get("financials") or [], doc.get("employees"), cuts)


@router.get("/businesses/{business_id}/benchmark", response_model=Benchmark, tags=["recommendations"],
            summary="Local benchmark in full: six indicators scored 1–5 against the industry, total, rank A–D, "
                    "three-period trend (R-REC-06)")
async def get_benchmark(business_id: str, request: Request,
                        who: Principal = Depends(require(*SIGNED_IN))) -> Benchmark:
    _, result = await _benchmark(request, business_id, who)
    return Benchmark(business_id=business_id, **result)


@router.get("/businesses/{business_id}/benchmark.pdf", tags=["recommendations"], response_class=Response,
            responses={200: {"content": {"application/pdf": {}}, "description": "the report, one A4 page"}},
            summary="The local benchmark report as a PDF with Japanese text and a chart of the scores (R-REC-06, "
                    "R-ANC-04)")
async def get_benchmark_pdf(business_id: str, request: Request,
                            who: Principal = Depends(require(*SIGNED_IN))) -> Response:
    doc, result = await _benchmark(request, business_id, who)
    now = datetime.now(UTC)
    pdf = await run_in_threadpool(report.benchmark_pdf, business_name=doc.get("name") or business_id,
                                  industry=doc.get("industry") or "", result=result, generated_at=now,
                                  font_file=request.app.state.settings.benchmark_font_file)
    await record_audit(_svc(request).db, actor=who.subject, action="recommend.BenchmarkReportRead", key=business_id,
                       payload={"fiscal_year": result["fiscal_year"], "rank": result["rank"]})
    return Response(pdf, media_type="application/pdf",
                    headers={"content-disposition": f'attachment; filename="benchmark-{business_id}.pdf"',
                             "cache-control": "no-store"})

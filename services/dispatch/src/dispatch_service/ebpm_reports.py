"""EBPM reports of dispatch (R-REC-07): uptake and outcomes per fiscal year, block and industry, anonymised by
`servicekit.ebpm` (no cell under 5 businesses, cell key perturbation against differencing), as JSON, CSV or SVG.

Built from dispatch's own read models only: `worklist` (one document per dispatch, kept by its status events),
`platforms` (the platform's bureau block, from identity's events), `businesses` (prefecture and industry, from
identity's BusinessRegistered / BusinessProfileChanged), `consultations` (dispatch's own) and `outcome_surveys`
(R-REC-08). Web consultations belong to no platform, so their block is unknown ("—"): they appear in national
reports only. A business whose industry dispatch has not learnt is counted under "—".

Who sees what: the agency and operators everything; a bureau its own block only (R-PF-05, the records are filtered
before the table is built, so its total is its block's); an institution the dispatches it requested itself
(R-PF-05) — its outcome report likewise."""
from __future__ import annotations

from datetime import UTC
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from contracts.vocab import fiscal_year as fy_of, place_problem
from dispatch_service.domain.dispatch import JST
from servicekit import ebpm, ebpm_keys
from servicekit.auth import Principal, require
from servicekit.refusals import Rejected

router = APIRouter(tags=["ebpm"])
Dim = Literal["fiscal_year", "block", "industry"]
Format = Literal["json", "csv", "svg"]
UNKNOWN = "—"
LABELS = {"fiscal_year": ("年度", "fiscal year"), "block": ("ブロック", "block"), "industry": ("業種", "industry")}
UPTAKE = (ebpm.Measure("requests", "count", "派遣申請数", "dispatch requests"),
          ebpm.Measure("paid", "count", "派遣実施（支払済）数", "dispatches paid"),
          ebpm.Measure("consultations", "count", "Web相談数", "web consultations"))
OUTCOMES = (ebpm.Measure("answered", "count", "調査回答数", "surveys answered"),
            ebpm.Measure("reporting_results", "count", "成果報告数", "reporting results"))
NOTES = ("Consultations belong to no platform: their block is unknown and they appear in national reports only.",)


def _scope(p: Principal) -> dict:
    """What the caller may see (R-PF-05): {} nationally, {"block": …} a bureau, {"orgs": […]} an institution."""
    if p.roles & {"agency", "operator"}:
        return {}
    if "bureau" in p.roles:
        if problem := place_problem(p.roles, p.bureau_id, any_block=True):
            raise Rejected("forbidden", "No block", problem)
        return {"block": p.bureau_id}
    orgs = sorted({o.get("org_id") for o in p.orgs if o.get("org_id")})
    if not orgs:
        raise Rejected("forbidden", "Forbidden", "EBPM reports are for the agency, bureaus, operators and the staff "
                       "of an institution; your account is linked to no organisation.")
    return {"orgs": orgs}


async def _table(request: Request, by: list[str], measures) -> ebpm.Table:
    svc = request.app.state.service
    return ebpm.Table(tuple(by), measures, await ebpm_keys.params(svc.db, svc.settings), labels=dict(LABELS))


async def _places(db, business_ids: set[str]) -> dict[str, str]:
    """The industry of each business, as dispatch learnt it from identity's events (looked up 1,000 at a time)."""
    ids, out = sorted(business_ids), {}
    for i in range(0, len(ids), 1000):
        async for d in db.businesses.find({"_id": {"$in": ids[i:i + 1000]}}, {"industry": 1}):
            out[d["_id"]] = d.get("industry") or UNKNOWN
    return out


async def _blocks(db) -> dict[str, str]:
    return {d["_id"]: d.get("bureau_id") async for d in db.platforms.find({}, {"bureau_id": 1})}


def _respond(table: ebpm.Table, fmt: str, chart: str, title: str, name: str, scope: dict):
    report = table.publish()
    notes = NOTES if "orgs" not in scope and "block" not in scope else ()
    body, media = ebpm.render(table, report, fmt, chart=chart, title=title, notes=notes)
    if fmt == "json":
        return {**body, "scope": scope or {"national": True}}
    return Response(body, media_type=media,
                    headers={"content-disposition": f'attachment; filename="{name}.{fmt}"'} if fmt == "csv" else {})


def _by(by: list[Dim] | None) -> list[str]:
    out = list(dict.fromkeys(by or ["fiscal_year", "block", "industry"]))
    return out


@router.get("/reports/ebpm/uptake", summary="EBPM: dispatch requests, paid dispatches and web consultations per "
            "fiscal year, block and industry; cells under 5 businesses suppressed, figures perturbed (R-REC-07)",
            responses={200: {"content": {"text/csv": {}, "image/svg+xml": {}}}})
async def uptake(request: Request, by: list[Dim] | None = Query(None, description="dimensions (repeat)"),
                 fiscal_year: int | None = Query(None, ge=2000, le=2100), format: Format = "json",
                 chart: Literal["businesses", "requests", "paid", "consultations"] = "businesses",
                 p: Principal = Depends(require("agency", "operator", "bureau", "institution"))):
    scope, dims, db = _scope(p), _by(by), request.app.state.store.db
    blocks = await _blocks(db)
    q: dict = {} if fiscal_year is None else {"fiscal_year": fiscal_year}
    if "orgs" in scope:
        q["institution_id"] = {"$in": scope["orgs"]}
    recs = []
    async for d in db.worklist.find(q, {"business_id": 1, "fiscal_year": 1, "platform_id": 1, "status": 1}):
        block = blocks.get(d.get("platform_id")) or UNKNOWN
        if "block" in scope and block != scope["block"]:
            continue
        recs.append((d["business_id"], d["fiscal_year"], block, {"requests": True, "paid": d.get("status") == "paid"}))
    if not scope:  # consultations: no platform, so no block: national reports only
        async for c in db.consultations.find({}, {"business_id": 1, "created_at": 1}):
            at = c["created_at"] if c["created_at"].tzinfo else c["created_at"].replace(tzinfo=UTC)
            fy = fy_of(at.astimezone(JST).date())
            if fiscal_year is None or fy == fiscal_year:
                recs.append((c["business_id"], fy, UNKNOWN, {"consultations": True}))
    industry = await _places(db, {r[0] for r in recs})
    table = await _table(request, dims, UPTAKE)
    for bid, fy, block, values in recs:
        row = {"fiscal_year": fy, "block": block, "industry": industry.get(bid, UNKNOWN)}
        table.add(tuple(row[d] for d in dims), bid, **values)
    return _respond(table, format, chart, "専門家派遣の利用 / dispatch uptake", "ebpm-uptake", scope)


@router.get("/reports/ebpm/outcomes", summary="EBPM: supported businesses, survey answers and businesses reporting "
            "results per fiscal year, block and industry; cells under 5 businesses suppressed, figures perturbed "
            "(R-REC-07, R-REC-08)", responses={200: {"content": {"text/csv": {}, "image/svg+xml": {}}}})
async def outcomes(request: Request, by: list[Dim] | None = Query(None, description="dimensions (repeat)"),
                   fiscal_year: int | None = Query(None, ge=2000, le=2100), format: Format = "json",
                   chart: Literal["businesses", "answered", "reporting_results"] = "businesses",
                   p: Principal = Depends(require("agency", "operator", "bureau", "institution"))):
    scope, dims, db = _scope(p), _by(by), request.app.state.store.db
    q: dict = {} if fiscal_year is None else {"fiscal_year": fiscal_year}
    per: dict[str, dict] = {}
    async for s in db.outcome_surveys.find(q, {"dispatch_id": 1, "business_id": 1, "fiscal_year": 1, "block": 1,
                                               "answered_at": 1, "results": 1}):
        if "block" in scope and s.get("block") != scope["block"]:
            continue
        r = per.setdefault(s["dispatch_id"], {"business_id": s["business_id"], "fiscal_year": s["fiscal_year"],
                                              "block": s.get("block") or UNKNOWN, "answered": False, "results": False})
        if s.get("answered_at"):
            r["answered"] = True
            r["results"] = r["results"] or bool(s.get("results"))
    if "orgs" in scope:
        mine = {d["_id"] async for d in db.worklist.find({"_id": {"$in": sorted(per)},
                                                          "institution_id": {"$in": scope["orgs"]}}, {"_id": 1})}
        per = {k: v for k, v in per.items() if k in mine}
    # a business counts once per cell: answered / reporting results if any of its dispatches there did
    flags: dict[tuple, dict] = {}
    for r in per.values():
        f = flags.setdefault((r["business_id"], r["fiscal_year"], r["block"]), {"answered": False, "results": False})
        f["answered"] |= r["answered"]
        f["results"] |= r["results"]
    industry = await _places(db, {k[0] for k in flags})
    table = await _table(request, dims, OUTCOMES)
    for (bid, fy, block), f in flags.items():
        row = {"fiscal_year": fy, "block": block, "industry": industry.get(bid, UNKNOWN)}
        table.add(tuple(row[d] for d in dims), bid, answered=1 if f["answered"] else 0,
                  reporting_results=1 if f["results"] else 0)
    return _respond(table, format, chart, "派遣の成果 / dispatch outcomes", "ebpm-outcomes", scope)

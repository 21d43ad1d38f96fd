"""EBPM reports of dispatch (R-REC-07): uptake and outcomes per fiscal year, block and industry, anonymised by
`servicekit.ebpm` (no cell under 5 businesses, cell key perturbation against differencing), as JSON, CSV or SVG.

Read from counters kept by dispatch's own events and writes (`ebpm_counters`, R-OPS-03): a report reads its scope's
counter cells, O(cells), whatever the number of dispatches. The records behind them come from dispatch's own read
models (`domain.ebpm`): `worklist` (one document per dispatch, kept by its status events), `platforms` (the platform's
bureau block, from identity's events), `businesses` (industry, from identity's BusinessRegistered /
BusinessProfileChanged), `consultations` (dispatch's own) and `outcome_surveys` (R-REC-08). `rows_table` builds the
same table from those rows at request time: the recount the counters are checked against (tests, bench/), and the
path of a caller linked to several institutions (their union is not a counter scope). Web consultations belong to no
platform, so their block is unknown ("—"): they appear in national reports only. A business whose industry dispatch
has not learnt is counted under "—".

Who sees what: the agency and operators everything; a bureau its own block only (R-PF-05, its total is its block's);
an institution the dispatches it requested itself (R-PF-05) — its outcome report likewise."""
from __future__ import annotations

from collections import defaultdict
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from contracts.vocab import place_problem
from dispatch_service.domain.ebpm import MEASURES, OUTCOMES, UNKNOWN, UPTAKE, outcome_records, uptake_records
from servicekit import ebpm, ebpm_keys
from servicekit.auth import Principal, require
from servicekit.refusals import Rejected

router = APIRouter(tags=["ebpm"])
Dim = Literal["fiscal_year", "block", "industry"]
Format = Literal["json", "csv", "svg"]
LABELS = {"fiscal_year": ("年度", "fiscal year"), "block": ("ブロック", "block"), "industry": ("業種", "industry")}
NOTES = ("Consultations belong to no platform: their block is unknown and they appear in national reports only.",)
__all__ = ["router", "rows_table", "UPTAKE", "OUTCOMES"]


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


async def _places(db, business_ids: set[str]) -> dict[str, str]:
    """The industry of each business, as dispatch learnt it from identity's events (looked up 1,000 at a time)."""
    ids, out = sorted(business_ids), {}
    for i in range(0, len(ids), 1000):
        async for d in db.businesses.find({"_id": {"$in": ids[i:i + 1000]}}, {"industry": 1}):
            out[d["_id"]] = d.get("industry") or UNKNOWN
    return out


async def _blocks(db) -> dict[str, str]:
    return {d["_id"]: d.get("bureau_id") async for d in db.platforms.find({}, {"bureau_id": 1})}


async def rows_table(db, params: ebpm.Params, report: str, by: list[str], fiscal_year: int | None,
                     scope: dict) -> ebpm.Table:
    """The report's table built from every row of the scope at request time (O(rows))."""
    orgs = set(scope["orgs"]) if "orgs" in scope else None
    q: dict = {} if fiscal_year is None else {"fiscal_year": fiscal_year}
    rows: dict[str, dict] = defaultdict(lambda: {"dispatches": [], "consultations": [], "surveys": []})
    institution_of: dict[str, str | None] = {}
    if report == "uptake":
        wq = {**q, **({"institution_id": {"$in": sorted(orgs)}} if orgs is not None else {})}
        async for d in db.worklist.find(wq, {"business_id": 1, "fiscal_year": 1, "platform_id": 1, "status": 1,
                                             "institution_id": 1}):
            rows[d["business_id"]]["dispatches"].append(d)
        if not scope:  # consultations: no platform, so no block: national reports only
            async for c in db.consultations.find({}, {"business_id": 1, "created_at": 1}):
                rows[c["business_id"]]["consultations"].append(c)
    else:
        async for s in db.outcome_surveys.find(q, {"dispatch_id": 1, "business_id": 1, "fiscal_year": 1, "block": 1,
                                                   "answered_at": 1, "results": 1}):
            rows[s["business_id"]]["surveys"].append(s)
        if orgs is not None:
            ids = sorted({s["dispatch_id"] for r in rows.values() for s in r["surveys"]})
            for i in range(0, len(ids), 1000):
                async for d in db.worklist.find({"_id": {"$in": ids[i:i + 1000]}}, {"institution_id": 1}):
                    institution_of[d["_id"]] = d.get("institution_id")
    blocks = await _blocks(db) if report == "uptake" else {}
    industry = await _places(db, set(rows))
    table = ebpm.Table(tuple(by), MEASURES[report], params, labels=dict(LABELS))
    for bid, r in rows.items():
        ind = industry.get(bid, UNKNOWN)
        recs = (uptake_records(r["dispatches"], r["consultations"], blocks, ind, orgs=orgs, block=scope.get("block"))
                if report == "uptake" else
                outcome_records(r["surveys"], institution_of, ind, orgs=orgs, block=scope.get("block")))
        for rec in recs:
            if fiscal_year is not None and rec.fiscal_year != fiscal_year:
                continue
            row = rec._asdict()
            table.add(tuple(row[d] for d in by), bid, **rec.values)
    return table


async def report_table(request: Request, report: str, by: list[str], fiscal_year: int | None,
                       scope: dict) -> ebpm.Table:
    """From the counters for a national, a bureau's or one institution's scope; from the rows for the union of
    several institutions (a staff account linked to more than one organisation)."""
    svc = request.app.state.service
    params = await ebpm_keys.params(svc.db, svc.settings)
    if len(scope.get("orgs", ())) > 1:
        return await rows_table(request.app.state.store.db, params, report, by, fiscal_year, scope)
    cscope = {"org": scope["orgs"][0]} if "orgs" in scope else scope
    return await request.app.state.ebpm_counters.table(report, by, fiscal_year, cscope, params, dict(LABELS))


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
    scope, dims = _scope(p), _by(by)
    table = await report_table(request, "uptake", dims, fiscal_year, scope)
    return _respond(table, format, chart, "専門家派遣の利用 / dispatch uptake", "ebpm-uptake", scope)


@router.get("/reports/ebpm/outcomes", summary="EBPM: supported businesses, survey answers and businesses reporting "
            "results per fiscal year, block and industry; cells under 5 businesses suppressed, figures perturbed "
            "(R-REC-07, R-REC-08)", responses={200: {"content": {"text/csv": {}, "image/svg+xml": {}}}})
async def outcomes(request: Request, by: list[Dim] | None = Query(None, description="dimensions (repeat)"),
                   fiscal_year: int | None = Query(None, ge=2000, le=2100), format: Format = "json",
                   chart: Literal["businesses", "answered", "reporting_results"] = "businesses",
                   p: Principal = Depends(require("agency", "operator", "bureau", "institution"))):
    scope, dims = _scope(p), _by(by)
    table = await report_table(request, "outcomes", dims, fiscal_year, scope)
    return _respond(table, format, chart, "派遣の成果 / dispatch outcomes", "ebpm-outcomes", scope)

"""EBPM report records and their counters (R-REC-07, R-OPS-03), pure (no I/O).

A report's records are built per business from dispatch's read models (`uptake_records`, `outcome_records`), the same
function whether the report is computed from the rows at request time or kept as counters:

- rows: every record of the scope is added to a `servicekit.ebpm.Table` (`ebpm_reports.rows_table`);
- counters: each business's records are summed per *counter cell* (`contributions`): one cell per grouping of
  GROUPINGS (fiscal year and block, fiscal year, block, neither — always with the industry), per scope (`*`: national,
  or one institution's id: what it requested) and per value of the grouping's dimensions. A counter holds the cell's
  distinct businesses, the halves of their record keys' sum and each measure's total (`ebpm.Summary`).

Industry is in every grouping because a business has one industry: the cells of a grouping that differ only by industry
share no business, so their summaries add up (`ebpm.Summary.merge`) to the cell without industry; fiscal year and block
are not like that (a business may have dispatches in two years or two blocks), so each combination has its own cells.
A read (`plan`) takes the counter document of one grouping and scope (its cells inside) and keeps the cells of the
fiscal year or block filtered on — O(cells), whatever the number of dispatches.
"""
from __future__ import annotations

from datetime import UTC
from typing import Iterable, NamedTuple

from contracts.vocab import fiscal_year as fy_of
from dispatch_service.domain.dispatch import JST
from servicekit.ebpm import Measure

UNKNOWN = "—"
NATIONAL = "*"
DIMS = ("fiscal_year", "block", "industry")
GROUPINGS = (("fiscal_year", "block"), ("fiscal_year",), ("block",), ())   # each with the industry
UPTAKE = (Measure("requests", "count", "派遣申請数", "dispatch requests"),
          Measure("paid", "count", "派遣実施（支払済）数", "dispatches paid"),
          Measure("consultations", "count", "Web相談数", "web consultations"))
OUTCOMES = (Measure("answered", "count", "調査回答数", "surveys answered"),
            Measure("reporting_results", "count", "成果報告数", "reporting results"))
MEASURES = {"uptake": UPTAKE, "outcomes": OUTCOMES}


class Rec(NamedTuple):
    """One record of a business: its cell's dimension values and what it adds there."""
    fiscal_year: int
    block: str
    industry: str
    values: dict


def report_status(status: str | None) -> str:
    """A dispatch's status as the uptake report sees it: paid, or not yet (R-REC-07 counts requests and paid ones). Its
    other steps are one to the report, so a business's copy of its rows does not change with them."""
    return "paid" if status == "paid" else "not_paid"


def uptake_records(dispatches: Iterable[dict], consultations: Iterable[dict], blocks: dict, industry: str, *,
                   orgs: set[str] | None = None, block: str | None = None) -> list[Rec]:
    """The uptake records of one business: one per dispatch (its `worklist` document: requested, paid?) and, in
    national reports only (`orgs` and `block` None: consultations belong to no platform and no institution), one per
    web consultation in the fiscal year of its opening. `orgs`: an institution's scope (its requests only); `block`: a
    bureau's (its block only)."""
    out = []
    for d in dispatches:
        if orgs is not None and d.get("institution_id") not in orgs:
            continue
        b = blocks.get(d.get("platform_id")) or UNKNOWN
        if block is not None and b != block:
            continue
        out.append(Rec(d["fiscal_year"], b, industry, {"requests": 1, "paid": 1 if d.get("status") == "paid" else 0}))
    if orgs is None and block is None:
        for c in consultations:
            at = c["created_at"] if c["created_at"].tzinfo else c["created_at"].replace(tzinfo=UTC)
            out.append(Rec(fy_of(at.astimezone(JST).date()), UNKNOWN, industry, {"consultations": 1}))
    return out


def outcome_records(surveys: Iterable[dict], institution_of: dict[str, str | None], industry: str, *,
                    orgs: set[str] | None = None, block: str | None = None) -> list[Rec]:
    """The outcome records of one business: one per (fiscal year, block) of its surveyed dispatches, answered if any
    survey there was, reporting results if any answer did (R-REC-08). `institution_of`: each dispatch's requesting
    institution (an institution's scope keeps its own dispatches, then flags them)."""
    per: dict[str, dict] = {}
    for s in surveys:
        if block is not None and s.get("block") != block:
            continue
        r = per.setdefault(s["dispatch_id"], {"fiscal_year": s["fiscal_year"], "block": s.get("block") or UNKNOWN,
                                              "answered": False, "results": False})
        if s.get("answered_at"):
            r["answered"] = True
            r["results"] = r["results"] or bool(s.get("results"))
    if orgs is not None:
        per = {k: v for k, v in per.items() if institution_of.get(k) in orgs}
    flags: dict[tuple, dict] = {}
    for r in per.values():
        f = flags.setdefault((r["fiscal_year"], r["block"]), {"answered": False, "results": False})
        f["answered"] |= r["answered"]
        f["results"] |= r["results"]
    return [Rec(fy, b, industry, {"answered": 1 if f["answered"] else 0,
                                  "reporting_results": 1 if f["results"] else 0})
            for (fy, b), f in flags.items()]


def grouping_name(dims: Iterable[str]) -> str:
    g = [d for d in ("fiscal_year", "block") if d in set(dims)]
    return "+".join(g) or "-"


def cell_id(report: str, cell: dict) -> str:
    return "|".join([report, *(str(cell[k]) for k in ("g", "org", "fiscal_year", "block", "industry"))])


def contributions(report: str, scopes: dict[str, list[Rec]]) -> dict[str, tuple[dict, dict]]:
    """What one business adds to each counter cell: {cell id: (cell, values)}; `scopes` its records per scope
    (NATIONAL and each institution that requested one of its dispatches). A cell appears once the business has a
    record there (values may all be 0: it still counts as a business of the cell, as in the row-based table)."""
    out: dict[str, tuple[dict, dict]] = {}
    for org, recs in scopes.items():
        for g in GROUPINGS:
            for r in recs:
                cell = {"report": report, "g": grouping_name(g), "org": org,
                        "fiscal_year": r.fiscal_year if "fiscal_year" in g else None,
                        "block": r.block if "block" in g else None, "industry": r.industry}
                cid = cell_id(report, cell)
                vals = out.setdefault(cid, (cell, {}))[1]
                for k, v in r.values.items():
                    vals[k] = vals.get(k, 0) + v
    return out


def business_contributions(dispatches: list[dict], consultations: list[dict], surveys: list[dict], blocks: dict,
                           industry: str) -> dict[str, tuple[dict, dict]]:
    """Everything one business adds to the counters of both reports, from its own rows: its `worklist` documents, web
    consultations and outcome surveys; `blocks` the bureau block of each of its platforms; nationally and for each
    institution that requested one of its dispatches."""
    institution_of = {d["_id"]: d.get("institution_id") for d in dispatches}
    orgs = sorted({d["institution_id"] for d in dispatches if d.get("institution_id")})
    out = contributions("uptake", {NATIONAL: uptake_records(dispatches, consultations, blocks, industry),
                                   **{o: uptake_records(dispatches, (), blocks, industry, orgs={o}) for o in orgs}})
    out |= contributions("outcomes", {NATIONAL: outcome_records(surveys, institution_of, industry),
                                      **{o: outcome_records(surveys, institution_of, industry, orgs={o})
                                         for o in orgs}})
    return out


def delta(before: dict | None, after: dict | None, key: tuple[int, int], measures: tuple[Measure, ...]) -> dict:
    """The `$inc` that takes a counter from a business's `before` contribution (None: not a member) to `after`."""
    sign = (after is not None) - (before is not None)
    inc = {"n": sign, "k_hi": sign * key[0], "k_lo": sign * key[1]} if sign else {}
    for m in measures:
        d = (after or {}).get(m.name, 0) - (before or {}).get(m.name, 0)
        if d:
            inc[f"s.{m.name}"] = d
    return inc


def field(key: str) -> str:
    """A key as a MongoDB field name (no ".", no leading "$")."""
    return str(key).replace("%", "%25").replace(".", "%2E").replace("$", "%24")


def counter_doc(cell: dict) -> str:
    """The counter document holding the cell: one per report × grouping × scope, its cells inside (so a read is one
    `_id` lookup — the only query FerretDB answers without a scan — of a size proportional to the grouping's cells)."""
    return f"{cell['report']}|{cell['g']}|{cell['org']}"


def cell_field(cell: dict) -> str:
    return field(f"{cell['fiscal_year']}|{cell['block']}|{cell['industry']}")


def plan(report: str, by: list[str], fiscal_year: int | None, scope: dict) -> tuple[str, str, dict]:
    """The counters of a read: (the rows' counter document, the total's, the cell values every cell read must have).
    `scope`: {} national, {"block": b} a bureau's, {"org": o} one institution's. The rows' grouping holds the
    dimensions asked for plus those filtered on; the total's only those filtered on (its cells merged into one)."""
    org = scope.get("org", NATIONAL)
    filt: dict = {}
    if fiscal_year is not None:
        filt["fiscal_year"] = fiscal_year
    if "block" in scope:
        filt["block"] = scope["block"]
    rows = {"report": report, "g": grouping_name(set(filt) | set(by)), "org": org}
    total = {"report": report, "g": grouping_name(set(filt)), "org": org}
    return counter_doc(rows), counter_doc(total), filt

"""Outcomes of dispatches (R-REC-08), pure: follow-up surveys to the business some months after payment, and the
programme's KPI — the share of supported businesses reporting results (seed 001: target 65%) — per fiscal year,
block, field and expert, in EBPM form: a group with fewer than `min_cell` businesses is suppressed (R-REC-07)."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

GROUPINGS = ("fiscal_year", "block", "field", "expert_id")


@dataclass(frozen=True)
class OutcomeParams:
    waves_months: tuple[int, ...] = (3, 12)   # surveys after payment (param)
    reminder_days: int = 14                   # one reminder if unanswered (param)
    kpi_target: float = 0.65                  # seed 001 (param)
    min_cell: int = 5                         # R-REC-07: no cell under 5


def waves(paid_at: datetime, p: OutcomeParams) -> list[tuple[int, datetime]]:
    """(months, due) for each survey of a dispatch paid at `paid_at` (a month counted as 30 days)."""
    return [(m, paid_at + timedelta(days=30 * m)) for m in p.waves_months]


def next_send(survey: dict, now: datetime, p: OutcomeParams) -> str | None:
    """What the clock sends for a survey now: the survey, its one reminder, or nothing."""
    if survey.get("answered_at") or now < survey["due_at"]:
        return None
    if not survey.get("sent_at"):
        return "survey"
    if not survey.get("reminded_at") and now >= survey["sent_at"] + timedelta(days=p.reminder_days):
        return "reminder"
    return None


def reports_results(answer: dict) -> bool:
    """A business 'reports results' when it says the support led to a concrete result (an action taken or a figure
    improved), as the programme's KPI counts it."""
    return bool(answer.get("results_achieved")) or bool(answer.get("actions_taken"))


ALL = "*"   # a counter's scope over every fiscal year or every block
FLAGS = ("supported", "answered", "results")


def cells(survey: dict) -> list[dict]:
    """The KPI counters one survey's business counts in (R-REC-08): for each grouping, the group of the survey in the
    scopes the KPI is read in — one fiscal year or all, one block (a bureau's view, R-PF-05) or all. A grouping by
    fiscal year (or block) needs no fiscal-year (or block) scope of its own: its group is the scope."""
    out = []
    for by in GROUPINGS:
        fys = [ALL] if by == "fiscal_year" else [survey.get("fiscal_year"), ALL]
        blocks = [ALL] if by == "block" else [survey.get("block"), ALL]
        out += [{"by": by, "fy": fy, "block": b, "key": survey.get(by)} for fy in fys for b in blocks]
    return out


def _part(v) -> str:
    return "-" if v is None else str(v)


def scope_id(by: str, fy, block) -> str:
    """The counter document of one grouping and scope: all its groups in one document, so a KPI read is one `_id`
    lookup (the only query FerretDB answers without a scan) of a size proportional to the groups."""
    return f"{by}|{_part(fy)}|{_part(block)}"


def group_field(key) -> str:
    """A group's key as a field name (no ".", no leading "$"; None as "-")."""
    if key is None:
        return "-"
    k = str(key).replace("%", "%25").replace(".", "%2E").replace("$", "%24")
    return "%2D" if k == "-" else k


def group_key(by: str, field: str):
    if field == "-":
        return None
    k = field.replace("%2D", "-").replace("%24", "$").replace("%2E", ".").replace("%25", "%")
    return int(k) if by == "fiscal_year" else k


def read_scope(by: str, fiscal_year: int | None, block: str | None) -> tuple[str, str | None]:
    """Which counters answer the KPI grouped `by`, for one fiscal year (or all) and one block (or all): the scope's
    document, and the one group wanted when the grouping is itself the filter."""
    if by not in GROUPINGS:
        raise ValueError(by)
    fy = ALL if by == "fiscal_year" or fiscal_year is None else fiscal_year
    b = ALL if by == "block" or block is None else block
    only = fiscal_year if by == "fiscal_year" else block if by == "block" else None
    return scope_id(by, fy, b), (None if only is None else group_field(only))


def cell_id(cell: dict) -> str:
    """One counter: a group in a scope (the memberships of businesses are kept per counter)."""
    return scope_id(cell["by"], cell["fy"], cell["block"]) + "|" + group_field(cell["key"])


def flags_of(survey: dict) -> list[str]:
    """What a survey says of its business: supported (scheduled), answered, reporting results."""
    return ["supported"] + (["answered"] if survey.get("answered_at") else []) + (["results"] if survey.get("results")
                                                                                   else [])


def count_rows(rows: list[dict], by: str) -> list[dict]:
    """The counts the KPI needs per group, recounted from rows (one per supported business and dispatch): distinct
    businesses supported, answering, reporting results."""
    if by not in GROUPINGS:
        raise ValueError(by)
    groups: dict = defaultdict(lambda: {"supported": set(), "answered": set(), "results": set()})
    for r in rows:
        g = groups[r.get(by)]
        g["supported"].add(r["business_id"])
        if r["answered"]:
            g["answered"].add(r["business_id"])
        if r["results"]:
            g["results"].add(r["business_id"])
    return [{"key": k, **{f: len(g[f]) for f in FLAGS}} for k, g in groups.items()]


def kpi(rows: list[dict], by: str, p: OutcomeParams) -> list[dict]:
    """`rows`: one per supported business and dispatch ({business_id, fiscal_year, block, field, expert_id,
    answered: bool, results: bool}); see `kpi_of_counts`."""
    return kpi_of_counts(count_rows(rows, by), by, p)


def kpi_of_counts(counts: list[dict], by: str, p: OutcomeParams) -> list[dict]:
    """`counts`: per group of `by` ({key, supported, answered, results}: distinct businesses). Per group: businesses
    supported, answering and reporting results, the share against the target; groups under `min_cell` businesses
    show no figures (suppressed)."""
    if by not in GROUPINGS:
        raise ValueError(by)
    out = []
    for g in sorted(counts, key=lambda g: str(g["key"])):
        n = int(g.get("supported", 0))
        if n < p.min_cell:
            out.append({by: g["key"], "suppressed": True})
            continue
        share = int(g.get("results", 0)) / n
        out.append({by: g["key"], "suppressed": False, "supported": n, "answered": int(g.get("answered", 0)),
                    "reporting_results": int(g.get("results", 0)), "share": round(share, 3), "target": p.kpi_target,
                    "meets_target": share >= p.kpi_target})
    return out

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


def kpi(rows: list[dict], by: str, p: OutcomeParams) -> list[dict]:
    """`rows`: one per supported business and dispatch ({business_id, fiscal_year, block, field, expert_id,
    answered: bool, results: bool}). Per group of `by`: businesses supported, answering and reporting results, the
    share against the target; groups under `min_cell` businesses show no figures (suppressed)."""
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
    out = []
    for key, g in sorted(groups.items(), key=lambda kv: str(kv[0])):
        n = len(g["supported"])
        if n < p.min_cell:
            out.append({by: key, "suppressed": True})
            continue
        share = len(g["results"]) / n
        out.append({by: key, "suppressed": False, "supported": n, "answered": len(g["answered"]),
                    "reporting_results": len(g["results"]), "share": round(share, 3), "target": p.kpi_target,
                    "meets_target": share >= p.kpi_target})
    return out

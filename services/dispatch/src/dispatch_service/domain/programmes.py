"""Dispatch programmes as data: caps, fee rates and units per fiscal year (R-DSP-03/07/10 parameters)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Programme:
    """One fiscal year's dispatch programme. Every number a rule uses lives here, never in the logic.

    R-DSP-03: `free_dispatches` per business per fiscal year, `free_dispatches_extended` for the issue
    kinds in `extended_issue_kinds` (business succession / IT where the programme allows it).
    R-DSP-07: per application at most `max_visits` on-site visits of at most `max_hours_per_visit`
    each, and at most `max_online_hours` online in total.
    R-DSP-10: `fee_per_hour` yen, counted in `unit_minutes` units per day, at most `daily_fee_cap` a day.
    R-DSP-04: an issue statement of at least `min_issue_chars` characters.
    """

    programme_id: str
    fiscal_year: int
    name: str
    free_dispatches: int = 3
    free_dispatches_extended: int = 3
    extended_issue_kinds: frozenset[str] = field(default_factory=frozenset)
    max_visits: int = 5
    max_hours_per_visit: float = 3.0
    max_online_hours: float = 15.0
    fee_per_hour: int = 5_000
    daily_fee_cap: int = 30_000
    unit_minutes: int = 30
    min_issue_chars: int = 20

    def free_cap(self, issue_kind: str | None) -> int:
        """R-DSP-03: the free-dispatch cap that applies to a request about `issue_kind`."""
        if issue_kind and issue_kind in self.extended_issue_kinds:
            return self.free_dispatches_extended
        return self.free_dispatches


def default_programme(fiscal_year: int) -> Programme:
    """The seeded programme of a fiscal year: 3 free dispatches (5 for business succession / IT, as in
    the FY2020 programmes), 5 visits × 3 h and 15 h online per application (Kumamoto 2023), 5,000 yen
    an hour in 30-minute units, at most 30,000 yen a day (2013 scheme)."""
    return Programme(
        programme_id=f"dispatch-{fiscal_year}", fiscal_year=fiscal_year,
        name=f"専門家派遣事業 FY{fiscal_year}",
        free_dispatches=3, free_dispatches_extended=5,
        extended_issue_kinds=frozenset({"business_succession", "it_dx"}),
        max_visits=5, max_hours_per_visit=3.0, max_online_hours=15.0,
        fee_per_hour=5_000, daily_fee_cap=30_000, unit_minutes=30, min_issue_chars=20,
    )


def programme_to_doc(p: Programme) -> dict:
    d = {k: getattr(p, k) for k in p.__dataclass_fields__}
    d["extended_issue_kinds"] = sorted(p.extended_issue_kinds)
    return d


def programme_from_doc(d: dict) -> Programme:
    kw = {k: d[k] for k in Programme.__dataclass_fields__ if k in d}
    kw["extended_issue_kinds"] = frozenset(kw.get("extended_issue_kinds", ()))
    return Programme(**kw)

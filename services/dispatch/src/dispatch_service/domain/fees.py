"""The expert's fee (謝金) from verified visit time (R-DSP-10, R-DSP-11, R-ANC-01)."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date

from dispatch_service.domain.programmes import Programme

ON_SITE, ONLINE, WEB = "onsite", "online", "web"


@dataclass(frozen=True)
class VisitTime:
    """Time an expert spent on one visit. `verified` is true only once checked in/out (or declared) and
    signed off by the business (R-ANC-01); only verified time is paid."""

    day: date
    minutes: int
    mode: str = ON_SITE  # onsite | online (online dispatch, paid) | web (web consultation, never paid)
    verified: bool = True


@dataclass(frozen=True)
class Fee:
    fee: int
    travel: int
    paid_minutes: int
    exemption: str | None = None  # why no fee is due (R-DSP-11), if so

    @property
    def total(self) -> int:
        return self.fee + self.travel


def fee_exemption(*, expert_employer_id: str | None, requesting_institution_id: str | None,
                  personnel_cost_subsidised: bool) -> str | None:
    """R-DSP-11: no fee when the expert's own employer requested the dispatch or when the expert's
    personnel costs are already paid by national or local government."""
    if personnel_cost_subsidised:
        return "personnel_cost_subsidised"
    if expert_employer_id and requesting_institution_id and expert_employer_id == requesting_institution_id:
        return "own_employer"
    return None


def day_fee(minutes: int, p: Programme) -> tuple[int, int]:
    """R-DSP-10: one day's fee and the minutes it pays for: whole `unit_minutes` units (a remainder is
    dropped) at `fee_per_hour`, at most `daily_fee_cap`."""
    units = max(minutes, 0) // p.unit_minutes
    paid = units * p.unit_minutes
    return min(paid * p.fee_per_hour // 60, p.daily_fee_cap), paid


def counted_minutes(v: VisitTime, p: Programme) -> int:
    """R-DSP-07: a visit counts for at most `max_hours_per_visit`; web consultations count nothing."""
    if not v.verified or v.mode == WEB:
        return 0
    return min(v.minutes, int(p.max_hours_per_visit * 60))


def compute_fee(visits: list[VisitTime], p: Programme, *, travel: int = 0, exemption: str | None = None) -> Fee:
    """R-DSP-10/11, R-ANC-01: fee over verified visits, grouped per day; travel costs are added
    (charged to the budget even when no fee is due). R-DSP-07 caps what is paid whatever was done (and approved):
    at most `max_visits` on-site visits (the earliest), each for at most `max_hours_per_visit`, and at most
    `max_online_hours` online in all."""
    if exemption:
        return Fee(0, travel, 0, exemption)
    per_day: dict[date, int] = defaultdict(int)
    on_site_left, online_left = p.max_visits, int(p.max_online_hours * 60)
    for v in sorted(visits, key=lambda v: v.day):
        minutes = counted_minutes(v, p)
        if minutes and v.mode == ON_SITE:
            minutes, on_site_left = (minutes, on_site_left - 1) if on_site_left > 0 else (0, 0)
        elif minutes and v.mode == ONLINE:
            minutes = min(minutes, online_left)
            online_left -= minutes
        per_day[v.day] += minutes
    fee = paid = 0
    for minutes in per_day.values():
        f, m = day_fee(minutes, p)
        fee, paid = fee + f, paid + m
    return Fee(fee, travel, paid)


def estimate_fee(planned: list[VisitTime], p: Programme, *, travel: int = 0, exemption: str | None = None) -> Fee:
    """The amount reserved at acceptance (R-DSP-08): the fee the planned visits would cost."""
    return compute_fee([VisitTime(v.day, v.minutes, v.mode, True) for v in planned], p,
                       travel=travel, exemption=exemption)

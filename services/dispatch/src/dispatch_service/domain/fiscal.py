"""Which fiscal year a dispatch belongs to, and the dates its work may lie on (R-DSP-03, R-DSP-07, R-BUD-01), pure.

The rule, written down once:
1. The fiscal year (April–March, Japan time) of a dispatch is the fiscal year of the day it is requested. That year's
   programme sets its caps and fees, its free dispatch counts against that year's cap (R-DSP-03), and its budget is
   reserved in and paid from that year's frame (R-BUD-01).
2. Every planned visit lies within that fiscal year, on or after the day of the request. A plan that crosses
   31 March is refused: the work after it is a new request in the new year, under the new year's frame and cap.
3. Screening happens within the year: a direct request co-signed after its year ended is refused (request again).
4. Work is recorded within the year too: a check-in or a declared visit outside the fiscal year is refused.
5. Confirmation and payment may come after 31 March: the fee is paid from the dispatch's own year's frame, which
   the budget service keeps open for reservations already held when the year closes.
"""
from __future__ import annotations

from datetime import date, datetime

from dispatch_service.domain.eligibility import Refusal, refusal


def bounds(fiscal_year: int) -> tuple[date, date]:
    """First and last day of a Japanese fiscal year."""
    return date(fiscal_year, 4, 1), date(fiscal_year + 1, 3, 31)


def year_of(day: date | datetime) -> int:
    return day.year if day.month >= 4 else day.year - 1


def plan_problems(days: list[date], fiscal_year: int, requested_on: date | None) -> list[Refusal]:
    """Rule 2: planned visit days within the fiscal year and not before the request."""
    first, last = bounds(fiscal_year)
    outside = sorted({d for d in days if not first <= d <= last})
    out = []
    if outside:
        out.append(refusal("visit_outside_fiscal_year", f"(fiscal year {fiscal_year} runs {first.isoformat()} to "
                           f"{last.isoformat()}; planned: {', '.join(d.isoformat() for d in outside)}.)"))
    if requested_on is not None and (past := sorted({d for d in days if d < requested_on})):
        out.append(refusal("visit_in_the_past", f"({', '.join(d.isoformat() for d in past)})"))
    return out


def screening_problems(fiscal_year: int, today: date | None) -> list[Refusal]:
    """Rule 3: screening within the dispatch's fiscal year."""
    if today is not None and year_of(today) != fiscal_year:
        return [refusal("fiscal_year_ended", f"(fiscal year {fiscal_year} ended on {bounds(fiscal_year)[1].isoformat()}.)")]
    return []


def recorded_problem(day: date, fiscal_year: int) -> str | None:
    """Rule 4: why a visit on `day` cannot be recorded on a dispatch of `fiscal_year`, or None."""
    first, last = bounds(fiscal_year)
    if first <= day <= last:
        return None
    return (f"This dispatch belongs to fiscal year {fiscal_year} ({first.isoformat()} to {last.isoformat()}); a visit on "
            f"{day.isoformat()} cannot be recorded on it. Work in another fiscal year is a new request.")

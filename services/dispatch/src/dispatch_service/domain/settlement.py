"""What the agency must see before it confirms a dispatch for payment (R-DSP-07, R-DSP-10, R-ANC-01), pure.

Nothing is cut or dropped silently: unsigned visits and work beyond the programme's caps are findings. Confirmation
is refused while there are findings, unless the agency approves them explicitly; the approved findings are stored
with the confirmation, and the fee is computed as the rules say (unsigned time unpaid, capped time capped).
"""
from __future__ import annotations

from dataclasses import dataclass

from dispatch_service.domain.fees import ON_SITE, ONLINE, VisitTime
from dispatch_service.domain.programmes import Programme


@dataclass(frozen=True)
class Finding:
    code: str
    rule: str
    message: str


def findings(visits: list[VisitTime], open_visits: int, p: Programme) -> list[Finding]:
    """Findings on the work actually done (checked in/out or declared), as opposed to the plan screened at the
    request (R-DSP-07 caps apply to both)."""
    out = []
    if open_visits:
        out.append(Finding("visit_open", "R-ANC-01", f"{open_visits} visit(s) have no end time (no check-out and no "
                                                       "signed declaration)."))
    unsigned = [v for v in visits if not v.verified]
    if unsigned:
        out.append(Finding("visit_unsigned", "R-ANC-01", f"{len(unsigned)} visit(s) are not signed off by the business "
                                                          "and will not be paid."))
    if not [v for v in visits if v.verified]:
        out.append(Finding("nothing_verified", "R-ANC-01", "No visit is signed off: the fee would be 0."))
    on_site = [v for v in visits if v.mode == ON_SITE and v.verified]
    if len(on_site) > p.max_visits:
        out.append(Finding("too_many_visits", "R-DSP-07", f"{len(on_site)} on-site visits; at most {p.max_visits} "
                                                           "are allowed per application and only the first "
                                                           f"{p.max_visits} are paid."))
    cap = int(p.max_hours_per_visit * 60)
    if long := [v for v in on_site if v.minutes > cap]:
        out.append(Finding("visit_too_long", "R-DSP-07", f"{len(long)} visit(s) last longer than "
                                                          f"{p.max_hours_per_visit:g} h; only {p.max_hours_per_visit:g} h "
                                                          "each are paid."))
    online = sum(v.minutes for v in visits if v.mode == ONLINE and v.verified)
    if online > p.max_online_hours * 60:
        out.append(Finding("online_hours_exceeded", "R-DSP-07", f"{online / 60:g} h online; at most "
                                                                 f"{p.max_online_hours:g} h are allowed and paid."))
    return out

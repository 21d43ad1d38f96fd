"""Screening of a dispatch request: every refusal is a named reason code with a plain message
(R-DSP-01..04, R-DSP-06, R-DSP-07, R-DSP-12, R-RAT-03, R-EX-01, R-ID-06)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from dispatch_service.domain.fees import ONLINE, ON_SITE, WEB
from dispatch_service.domain.programmes import Programme

REQUEST_DISPATCH = "request_dispatch"
# R-PF-04: member roles allowed to request a dispatch (the representative and dispatch-capable members).
DISPATCH_ROLES = frozenset({"representative", "dispatch_member"})

# R-DSP-06: what the request is for. Only `issue_solving` is a dispatch; every other kind is refused.
SUPPORT_KINDS = ("issue_solving", "general_lecture", "staff_training", "business_work", "customer_brokering",
                 "document_production", "website", "logo", "packaging", "flyer")

# Statuses in which a dispatch uses one of the business's free dispatches (R-DSP-03). A request uses
# a slot from acceptance on; a refusal (at screening or for lack of budget) and a cancellation before
# approval give the slot back; a dispatch cancelled after approval keeps it (the expert was committed).
COUNTING_STATUSES = frozenset({"accepted", "reserved", "approved", "scheduled", "visited", "reported",
                               "confirmed", "paid"})
# R-DSP-02(a): the business "has received" a platform dispatch once a route-A visit took place.
RECEIVED_STATUSES = frozenset({"visited", "reported", "confirmed", "paid"})


@dataclass(frozen=True)
class Refusal:
    code: str
    message: str
    rule: str


MESSAGES: dict[str, tuple[str, str]] = {
    "not_dispatch_member": ("R-DSP-01", "Your institution is not a member of this regional platform that may request "
                            "dispatches (only the representative and dispatch-capable members may)."),
    "no_prior_platform_dispatch": ("R-DSP-02", "A direct request needs an earlier dispatch to your business through a "
                                   "regional platform; please ask a local support institution first."),
    "no_web_consultation": ("R-DSP-02", "A direct request needs a web consultation with this expert that has been held "
                            "first, to clarify the issue and the expert needed."),
    "not_cosigned": ("R-DSP-02", "A direct request must be co-signed by the expert."),
    "free_cap_reached": ("R-DSP-03", "Your business has used all its free dispatches for this fiscal year."),
    "issue_unclear": ("R-DSP-04", "Please state the management issue clearly (a few sentences)."),
    "within_self_help": ("R-DSP-04", "A dispatch is for issues the business cannot solve by its own efforts."),
    "no_specialist_need": ("R-DSP-04", "A dispatch is for issues that need advanced or specialised knowledge."),
    "expert_belongs_to_business": ("R-DSP-06", "The expert belongs to your business or a related company."),
    "advisory_contract": ("R-DSP-06", "The expert has an advisory (顧問) contract or a similar relationship with your "
                          "business; this work belongs to that contract."),
    "expert_solicited": ("R-DSP-06", "The expert asked your business to request them; such requests are not accepted."),
    "dates_fixed_without_desk": ("R-DSP-06", "Visit dates were arranged directly with the expert without the desk's "
                                 "consent."),
    "general_lecture_or_training": ("R-DSP-06", "General lectures and staff training are not dispatches; a dispatch "
                                    "solves a specific management issue."),
    "doing_business_work": ("R-DSP-06", "The expert may not do the business's own work or broker customers for it."),
    "mere_production": ("R-DSP-06", "Merely producing documents (plans, subsidy applications) or websites, logos, "
                        "packaging or flyers is ordinary paid work, not a dispatch."),
    "desk_discretion": ("R-DSP-06", "The dispatch desk found this request unsuitable for a dispatch:"),
    "no_visits_planned": ("R-DSP-07", "Please plan at least one visit."),
    "too_many_visits": ("R-DSP-07", "Too many on-site visits for one application."),
    "visit_too_long": ("R-DSP-07", "A visit is longer than a visit may last."),
    "online_hours_exceeded": ("R-DSP-07", "The online sessions exceed the online hours one application may use."),
    "visit_outside_fiscal_year": ("R-DSP-07", "Every planned visit must lie within the dispatch's fiscal year "
                                  "(April to March); plan the rest as a new request in the next fiscal year."),
    "visit_in_the_past": ("R-DSP-07", "A planned visit lies before the day of the request."),
    "fiscal_year_ended": ("R-DSP-03", "The fiscal year of this request has ended before it was screened; please "
                          "request again in the current fiscal year."),
    "rating_pending": ("R-DSP-12", "Please rate the expert of your last dispatch first; then you can apply for the "
                       "next free dispatch."),
    "expert_unknown": ("R-EX-01", "This expert is not known to the dispatch service."),
    "expert_not_registered": ("R-EX-01", "This expert is not registered as a national dispatch expert this fiscal "
                              "year."),
    "expert_suspended": ("R-EX-01", "This expert is suspended and cannot be dispatched."),
    "expert_unavailable": ("R-EX-03", "The expert is not available on a planned date."),
    "expert_paused": ("R-EX-06", "The expert has paused new dispatches; please choose another expert."),
    "expert_off_weekday": ("R-EX-06", "A planned visit falls on a weekday the expert does not take visits on; please "
                           "plan it on one of the expert's working days or choose another expert."),
    "expert_at_capacity": ("R-EX-06", "The expert has as many open dispatches as they take on at a time; please choose "
                           "another expert or ask again later."),
    "account_revoked": ("R-ID-06", "An account involved in this request has been revoked."),
}


WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def refusal(code: str, detail: str = "") -> Refusal:
    rule, message = MESSAGES[code]
    return Refusal(code, f"{message} {detail}".strip(), rule)


@dataclass(frozen=True)
class PlannedVisit:
    day: date
    hours: float
    mode: str = ON_SITE


@dataclass(frozen=True)
class ExpertState:
    """What dispatch knows about the expert, from experts' events (event-carried state)."""

    status: str  # portal | applied | registered | suspended | expired | exited
    registered_fiscal_year: int | None = None
    employer_org_id: str | None = None
    personnel_cost_subsidised: bool = False
    related_business_ids: frozenset[str] = frozenset()
    unavailable: tuple[tuple[date, date], ...] = ()
    revoked: bool = False
    paused: bool = False             # R-EX-06: the expert takes no new dispatch
    open_cap: int | None = None      # R-EX-06: most open dispatches at a time
    open_now: int = 0                # the expert's open dispatches (dispatch's own count, this request excluded)
    weekdays: frozenset[int] = frozenset()  # R-EX-06 calendar: weekdays worked, 0 = Monday (empty: any day)


@dataclass(frozen=True)
class Application:
    route: str  # "A" platform | "B" direct
    business_id: str
    fiscal_year: int
    issue: str
    issue_kind: str | None = None
    beyond_self_help: bool = True
    needs_specialist: bool = True
    support_kinds: frozenset[str] = frozenset({"issue_solving"})
    advisory_contract: bool = False
    solicited_by_expert: bool = False
    dates_fixed_without_desk: bool = False
    planned: tuple[PlannedVisit, ...] = ()
    # route A: what is known of the requesting institution's membership (R-PF-04)
    token_rights: frozenset[str] = frozenset()
    member_role: str | None = None  # from identity's events; None = not known (yet)
    member_left: bool = False
    # route B (R-DSP-02)
    prior_platform_dispatch: bool = False
    consultation_held: bool = False
    cosigned: bool = False
    # the fiscal-year rule (domain.fiscal): the day the request was made and the day it is screened
    requested_on: date | None = None
    screened_on: date | None = None


@dataclass(frozen=True)
class History:
    """The business's record this fiscal year, from dispatch's own store and ratings' events."""

    used_free: int = 0
    pending_ratings: int = 0


def check_route_a(a: Application) -> list[Refusal]:
    """R-DSP-01, R-PF-04: route A is open only to the representative and dispatch-capable members. What
    identity's events say about the membership wins over a (possibly older) token."""
    if a.member_left:
        return [refusal("not_dispatch_member")]
    if a.member_role is not None:
        return [] if a.member_role in DISPATCH_ROLES else [refusal("not_dispatch_member")]
    return [] if REQUEST_DISPATCH in a.token_rights else [refusal("not_dispatch_member")]


def check_route_b(a: Application) -> list[Refusal]:
    """R-DSP-02: a direct request needs (a) an earlier platform dispatch, (b) a held web consultation with
    this expert, (c) the expert's co-signature."""
    out = []
    if not a.prior_platform_dispatch:
        out.append(refusal("no_prior_platform_dispatch"))
    if not a.consultation_held:
        out.append(refusal("no_web_consultation"))
    if not a.cosigned:
        out.append(refusal("not_cosigned"))
    return out


def check_free_cap(a: Application, h: History, p: Programme) -> list[Refusal]:
    """R-DSP-03: at most `free_cap` dispatches per business per fiscal year, both routes together."""
    cap = p.free_cap(a.issue_kind)
    if h.used_free >= cap:
        return [refusal("free_cap_reached", f"({h.used_free} of {cap} used in fiscal year {a.fiscal_year}.)")]
    return []


def check_issue(a: Application, p: Programme) -> list[Refusal]:
    """R-DSP-04: a clear management issue, beyond self-help, needing specialised knowledge."""
    out = []
    if len(a.issue.strip()) < p.min_issue_chars:
        out.append(refusal("issue_unclear"))
    if not a.beyond_self_help:
        out.append(refusal("within_self_help"))
    if not a.needs_specialist:
        out.append(refusal("no_specialist_need"))
    return out


def check_grounds(a: Application, e: ExpertState | None) -> list[Refusal]:
    """R-DSP-06: every ground on which a request is refused, each its own reason."""
    out = []
    if e is not None and a.business_id in e.related_business_ids:
        out.append(refusal("expert_belongs_to_business"))
    if a.advisory_contract:
        out.append(refusal("advisory_contract"))
    if a.solicited_by_expert:
        out.append(refusal("expert_solicited"))
    if a.dates_fixed_without_desk:
        out.append(refusal("dates_fixed_without_desk"))
    kinds = a.support_kinds
    if kinds & {"general_lecture", "staff_training"}:
        out.append(refusal("general_lecture_or_training"))
    if kinds & {"business_work", "customer_brokering"}:
        out.append(refusal("doing_business_work"))
    if kinds & {"document_production", "website", "logo", "packaging", "flyer"}:
        out.append(refusal("mere_production"))
    return out


def check_visit_caps(planned: tuple[PlannedVisit, ...], p: Programme) -> list[Refusal]:
    """R-DSP-07: per application at most `max_visits` on-site visits of at most `max_hours_per_visit`,
    and at most `max_online_hours` online in total."""
    if not planned:
        return [refusal("no_visits_planned")]
    out = []
    on_site = [v for v in planned if v.mode == ON_SITE]
    if len(on_site) > p.max_visits:
        out.append(refusal("too_many_visits", f"(at most {p.max_visits}, planned {len(on_site)}.)"))
    if any(v.hours > p.max_hours_per_visit for v in on_site):
        out.append(refusal("visit_too_long", f"(at most {p.max_hours_per_visit:g} h per visit.)"))
    online = sum(v.hours for v in planned if v.mode in (ONLINE, WEB))
    if online > p.max_online_hours:
        out.append(refusal("online_hours_exceeded", f"(at most {p.max_online_hours:g} h, planned {online:g} h.)"))
    return out


def check_rating_block(h: History) -> list[Refusal]:
    """R-DSP-12, R-RAT-03: an unrated last dispatch blocks the next free request."""
    return [refusal("rating_pending")] if h.pending_ratings > 0 else []


def check_expert(a: Application, e: ExpertState | None) -> list[Refusal]:
    """R-EX-01, R-EX-03, R-EX-06, R-ID-06: the expert is a registered national dispatch expert this fiscal year,
    not suspended or revoked, not paused nor at the cap of open dispatches, available on every planned date, and every
    planned date on a weekday the expert works (R-EX-06 calendar)."""
    if e is None:
        return [refusal("expert_unknown")]
    if e.revoked or e.status == "exited":
        return [refusal("account_revoked")]
    if e.status == "suspended":
        return [refusal("expert_suspended")]
    if e.status != "registered" or (e.registered_fiscal_year not in (None, a.fiscal_year)):
        return [refusal("expert_not_registered")]
    if e.paused:
        return [refusal("expert_paused")]
    if e.open_cap is not None and e.open_now >= e.open_cap:
        return [refusal("expert_at_capacity", f"({e.open_now} open of {e.open_cap}.)")]
    busy = sorted({v.day for v in a.planned for s, t in e.unavailable if s <= v.day <= t})
    if busy:
        return [refusal("expert_unavailable", "(" + ", ".join(d.isoformat() for d in busy) + ")")]
    if e.weekdays:
        off = sorted({v.day for v in a.planned if v.day.weekday() not in e.weekdays})
        if off:
            works = ", ".join(WEEKDAY_NAMES[w] for w in sorted(e.weekdays))
            return [refusal("expert_off_weekday", "(" + ", ".join(f"{d.isoformat()} is a {WEEKDAY_NAMES[d.weekday()]}"
                                                                for d in off) + f"; the expert works on {works}.)")]
    return []


def check_fiscal_year(a: Application) -> list[Refusal]:
    """The fiscal-year rule (domain.fiscal): screened within the year, every planned visit within it."""
    from dispatch_service.domain import fiscal

    return (fiscal.screening_problems(a.fiscal_year, a.screened_on)
            + fiscal.plan_problems([v.day for v in a.planned], a.fiscal_year, a.requested_on))


def screen(a: Application, e: ExpertState | None, h: History, p: Programme) -> list[Refusal]:
    """Every reason to refuse the application; an empty list means accepted (R-DSP-14 screening)."""
    route = check_route_a(a) if a.route == "A" else check_route_b(a)
    return (route + check_expert(a, e) + check_issue(a, p) + check_grounds(a, e)
            + check_visit_caps(a.planned, p) + check_fiscal_year(a) + check_rating_block(h) + check_free_cap(a, h, p))

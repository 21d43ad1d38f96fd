"""Pure rules of the expert registry (R-EX-01..05, R-PF-04): stages, applications, reviews, renewals.

An expert is a plain dict (the stored document without Mongo metadata). Every operation takes the
current state and returns `(new_state, change)` where `change` is the ExpertChanged kind, or raises
`servicekit.refusals.Rejected` with words a user understands (HTTP only at the edge). No I/O here; dates come in as arguments.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import date

from contracts.vocab import EXPERT_FIELDS, RIGHTS, MemberRole, Right, fiscal_year
from servicekit.refusals import Rejected


@dataclass(frozen=True)
class Programme:
    """Programme parameters (data, not literals in the rules)."""

    # R-EX-02 (b): the public qualifications accepted as a route (税理士, 公認会計士, 弁護士, 中小企業診断士, …).
    public_qualifications: frozenset[str] = frozenset({
        "税理士", "公認会計士", "弁護士", "中小企業診断士", "弁理士", "社会保険労務士", "司法書士",
        "行政書士", "技術士", "不動産鑑定士", "ITストラテジスト", "情報処理安全確保支援士"})
    # R-EX-02 (b): minimum years of each experience route.
    min_years: dict[str, int] = field(default_factory=lambda: {
        "manager_or_engineer": 10, "sme_support": 3, "teaching_research": 5})
    # R-EX-04: consecutive registered years after which renewal needs the agency's review.
    review_after_years: int = 3
    # R-EX-03: profile versions kept for the history.
    history_keep: int = 50


DEFAULT = Programme()

STATUSES = ("portal", "applied", "registered", "suspended", "expired", "exited")
ROUTES = ("public_qualification", "manager_or_engineer", "sme_support", "teaching_research")


# --- stage 1 (R-EX-01) --------------------------------------------------------------------------

def new_expert(expert_id: str, account_id: str, name: str, profile: dict) -> tuple[dict, str]:
    """R-EX-01 stage 1: a portal user (real name) opens their expert page; not a dispatch expert yet."""
    if not name.strip():
        raise Rejected("invalid", "Name required", "The expert page needs the real name of the account holder.")
    return {
        "expert_id": expert_id, "account_id": account_id, "name": name.strip(), "status": "portal",
        "profile": validate_profile(profile), "availability": {"windows": [], "note": ""}, "version": 1,
        "history": [], "application": None, "recommendations": [], "registered_fiscal_year": None,
        "registered_years": [], "renewal": None, "suspension": None, "radar": None,
        "record": {"dispatches": 0, "by_fiscal_year": {}},
    }, "registered"


def validate_profile(profile: dict) -> dict:
    """R-EX-03 page content; fields only from the controlled vocabulary (R-EX-05 filters on them)."""
    unknown = [f for f in profile.get("fields", []) if f not in EXPERT_FIELDS]
    if unknown:
        raise Rejected("invalid", "Unknown field", f"Fields must come from the list {', '.join(EXPERT_FIELDS)}; "
                       f"not known: {', '.join(unknown)}.")
    return {
        "qualifications": _clean_list(profile.get("qualifications", [])),
        "fields": _clean_list(profile.get("fields", [])),
        "regions": _clean_list(profile.get("regions", [])),
        "introduction": str(profile.get("introduction", "")).strip(),
        # R-EX-07: the expert also works online, so a business outside their regions may be suggested them
        "remote_ok": bool(profile.get("remote_ok", False)),
        "photo_ref": profile.get("photo_ref"),
        # declared affiliations: not public, but carried to dispatch for its refusals (R-DSP-06/11)
        "employer_org_id": profile.get("employer_org_id"),
        "personnel_cost_subsidised": bool(profile.get("personnel_cost_subsidised", False)),
        "related_business_ids": _clean_list(profile.get("related_business_ids", [])),
    }


def _clean_list(items) -> list[str]:
    out: list[str] = []
    for i in items:
        s = str(i).strip()
        if s and s not in out:
            out.append(s)
    return out


def _live(expert: dict) -> dict:
    if expert["status"] == "exited":
        raise Rejected("conflict", "Expert has exited", "This expert has left the programme; the page can no longer change.")
    return copy.deepcopy(expert)


def edit_profile(expert: dict, profile: dict, *, expected_version: int | None, at: str,
                 p: Programme = DEFAULT) -> tuple[dict, str]:
    """R-EX-03: the expert edits their page at any time; every edit is a new version, the old one is kept."""
    new = _live(expert)
    if expected_version is not None and expected_version != expert["version"]:
        raise Rejected("conflict", "Edited elsewhere", f"The page is at version {expert['version']}, not {expected_version}; "
                       "reload it and apply your change again.")
    cleaned = validate_profile(profile)
    new["history"] = (new["history"] + [{"version": expert["version"], "profile": expert["profile"],
                                         "replaced_at": at}])[-p.history_keep:]
    new["profile"] = cleaned
    new["version"] = expert["version"] + 1
    return new, "profile"


def set_availability(expert: dict, windows: list[dict], note: str,
                     weekdays: list[int] | None = None) -> tuple[dict, str]:
    """R-EX-03: unavailability windows and a note ("on a long trip until …: no dispatches").
    R-EX-06 calendar: the weekdays the expert takes visits on (0 = Monday; none given: any day)."""
    days = sorted(set(weekdays or []))
    if any(not 0 <= w <= 6 for w in days):
        raise Rejected("invalid", "No such weekday", "Weekdays are 0 (Monday) to 6 (Sunday).")
    new = _live(expert)
    clean = []
    for w in windows:
        start, end = _d(w["start"]), _d(w["end"])
        if end < start:
            raise Rejected("invalid", "Window ends before it starts", f"The window {start}–{end} ends before it starts.")
        clean.append({"start": start.isoformat(), "end": end.isoformat(), "note": str(w.get("note", ""))})
    new["availability"] = {"windows": sorted(clean, key=lambda w: w["start"]), "note": note.strip()}
    if days and len(days) < 7:
        new["availability"]["weekdays"] = days
    return new, "availability"


def set_capacity(expert: dict, paused: bool, open_cap: int | None) -> tuple[dict, str]:
    """R-EX-06: a pause switch and a cap of open dispatches the expert takes on at a time."""
    if open_cap is not None and not 1 <= open_cap <= 100:
        raise Rejected("invalid", "Cap not possible", "The cap of open dispatches is between 1 and 100 (or none).")
    new = _live(expert)
    new["capacity"] = {**(expert.get("capacity") or {}), "paused": paused, "open_cap": open_cap}
    return new, "availability"


def on_hold(expert: dict) -> bool:
    """R-EX-06: hidden from matching while paused or while the open dispatches reach the expert's cap."""
    cap = expert.get("capacity") or {}
    return bool(cap.get("paused")) or (cap.get("open_cap") is not None
                                       and len(cap.get("open_ids", [])) >= cap["open_cap"])


OPEN_DISPATCH = frozenset({"accepted", "reserved", "approved", "scheduled", "visited"})


RECENT_KEEP = 50  # R-EX-07: the newest dispatches received, kept for the fairness term (which reads a window of days)


def track_dispatch(expert: dict, dispatch_id: str, status: str, at: str | None = None) -> tuple[dict, str]:
    """R-EX-06: the expert's open dispatches, from dispatch's events; an event goes out only when the hold flips.
    R-EX-07: a dispatch seen open for the first time is also noted with its time (`at`) as recent load."""
    new = dict(expert)
    cap = dict(expert.get("capacity") or {})
    ids = set(cap.get("open_ids", []))
    (ids.add if status in OPEN_DISPATCH else ids.discard)(dispatch_id)
    cap["open_ids"] = sorted(ids)
    recent = list(cap.get("recent", []))
    if at and status in OPEN_DISPATCH and all(r["id"] != dispatch_id for r in recent):
        cap["recent"] = (recent + [{"id": dispatch_id, "at": at}])[-RECENT_KEEP:]
    new["capacity"] = cap
    return new, ("availability" if on_hold(new) != on_hold(expert) else "")


def available_on(expert: dict, d: date) -> bool:
    """R-EX-03/05: not inside any unavailability window the expert declared; R-EX-06: on a weekday they work."""
    days = expert["availability"].get("weekdays")
    return not any(_d(w["start"]) <= d <= _d(w["end"]) for w in expert["availability"]["windows"]) \
        and (not days or d.weekday() in days)


def dispatchable(expert: dict, d: date) -> bool:
    """R-EX-05: only a registered national expert (stage 2, this fiscal year), not suspended, available that day."""
    return (expert["status"] == "registered" and (expert.get("registered_fiscal_year") or 0) >= fiscal_year(d)
            and available_on(expert, d))


# --- recommendation (R-EX-02 a, R-PF-04) ---------------------------------------------------------

def may_recommend(org: dict | None) -> bool:
    """R-PF-04 / R-EX-02 (a): a platform member whose role carries the recommend right, never an individual.

    `org` is the read model learnt from identity: {"kind": ..., "memberships": {platform_id: member_role}}.
    """
    if not org or org.get("kind") == "individual":
        return False
    for role in (org.get("memberships") or {}).values():
        try:
            r = MemberRole(role)
        except ValueError:
            continue
        if r is not MemberRole.INDIVIDUAL and Right.RECOMMEND_EXPERTS in RIGHTS[r]:
            return True
    return False


def recommend(expert: dict, org_id: str, org: dict | None, *, at: str) -> tuple[dict, str | None]:
    """R-EX-02 (a): an institution recommends the expert. Effective once the expert consents too
    (already, if the expert asked that institution; otherwise the institution acted on its own initiative)."""
    if not may_recommend(org):
        raise Rejected("forbidden", "May not recommend", "Only a platform member institution whose role allows recommending "
                       "experts may recommend; individuals and non-members may not (R-PF-04).")
    new = _live(expert)
    rec = _rec(new, org_id)
    rec.update(recommended=True, recommended_at=at, org_name=(org or {}).get("name"))
    return new, "profile" if rec["consented"] else None


def consent(expert: dict, org_id: str, *, at: str) -> tuple[dict, str | None]:
    """The expert asks for (or accepts) a recommendation by this institution."""
    new = _live(expert)
    rec = _rec(new, org_id)
    rec.update(consented=True, consented_at=at)
    return new, "profile" if rec["recommended"] else None


def _rec(expert: dict, org_id: str) -> dict:
    for r in expert["recommendations"]:
        if r["org_id"] == org_id:
            return r
    r = {"org_id": org_id, "org_name": None, "recommended": False, "consented": False}
    expert["recommendations"].append(r)
    return r


def effective_recommenders(expert: dict, orgs: dict[str, dict]) -> list[str]:
    """Institutions whose recommendation counts: recommended, consented, and still allowed to recommend."""
    return [r["org_id"] for r in expert["recommendations"]
            if r["recommended"] and r["consented"] and may_recommend(orgs.get(r["org_id"]))]


# --- stage 2 application and review (R-EX-01, R-EX-02) -------------------------------------------

def qualifying_routes(evidence: list[dict], p: Programme = DEFAULT) -> list[str]:
    """R-EX-02 (b): which qualification routes the evidence satisfies (at least one is needed)."""
    routes = []
    for e in evidence:
        kind = e.get("route")
        if kind == "public_qualification" and e.get("qualification") in p.public_qualifications:
            routes.append(kind)
        elif kind in p.min_years and (e.get("years") or 0) >= p.min_years[kind]:
            routes.append(kind)
    return sorted(set(routes))


def application_problems(expert: dict, evidence: list[dict], no_disqualification: bool,
                         orgs: dict[str, dict], p: Programme = DEFAULT) -> list[str]:
    """R-EX-02: everything still missing for a stage-2 application, in words the expert understands."""
    problems = []
    if not effective_recommenders(expert, orgs):
        problems.append("(a) a recommendation by a platform member institution (not an individual) "
                        "that you have consented to")
    if not qualifying_routes(evidence, p):
        problems.append("(b) evidence of one qualification route: a public qualification such as "
                        + "/".join(sorted(p.public_qualifications)[:4]) + ", "
                        + f"≥{p.min_years['manager_or_engineer']} years as manager or engineer, "
                        + f"≥{p.min_years['sme_support']} years in SME support, or "
                        + f"≥{p.min_years['teaching_research']} years teaching/research at a skills institution")
    if not no_disqualification:
        problems.append("(c) a declaration that no disqualification applies (e.g. organised crime membership)")
    return problems


def apply_stage2(expert: dict, evidence: list[dict], no_disqualification: bool, orgs: dict[str, dict], *,
                 at: str, p: Programme = DEFAULT) -> tuple[dict, str]:
    """R-EX-01/02: a portal expert applies for national registration; the agency reviews it next."""
    if expert["status"] != "portal":
        raise Rejected("conflict", "Cannot apply now", f"An application is possible from the portal stage only; "
                       f"this expert is '{expert['status']}'.")
    problems = application_problems(expert, evidence, no_disqualification, orgs, p)
    if problems:
        raise Rejected("invalid", "Application incomplete", "Still missing: " + "; ".join(problems) + ".")
    new = _live(expert)
    new["status"] = "applied"
    new["application"] = {"state": "submitted", "evidence": evidence, "routes": qualifying_routes(evidence, p),
                          "no_disqualification": True, "recommenders": effective_recommenders(expert, orgs),
                          "submitted_at": at, "reasons": [], "history": (expert.get("application") or {}).get("history", [])}
    return new, "applied"


def review_application(expert: dict, decision: str, reasons: list[str], *, reviewer: str, at: str,
                       today: date) -> tuple[dict, str]:
    """R-EX-01: the processing agency's formal review: approve, return with reasons, or reject."""
    if expert["status"] != "applied":
        raise Rejected("conflict", "Nothing to review", "This expert has no application waiting for review.")
    if decision not in ("approve", "return", "reject"):
        raise Rejected("invalid", "Unknown decision", "The decision must be approve, return or reject.")
    reasons = [r.strip() for r in reasons if r.strip()]
    if decision != "approve" and not reasons:
        raise Rejected("invalid", "Reasons required", "Returning or rejecting an application needs the reasons, "
                       "so the expert knows what to fix.")
    new = _live(expert)
    app = new["application"]
    app["history"] = app.get("history", []) + [{"decision": decision, "reasons": reasons, "by": reviewer, "at": at}]
    app.update(reasons=reasons, reviewed_by=reviewer, reviewed_at=at)
    if decision == "approve":
        fy = fiscal_year(today)
        app["state"] = "approved"
        new.update(status="registered", registered_fiscal_year=fy, registered_years=sorted({*new["registered_years"], fy}))
        return new, "approved"
    app["state"] = "returned" if decision == "return" else "rejected"
    new["status"] = "portal"
    return new, "returned" if decision == "return" else "rejected"


# --- fiscal-year registration and renewal (R-EX-04) ----------------------------------------------

def consecutive_years(years: list[int], through: int) -> int:
    """How many fiscal years in a row the expert has been registered, ending with `through`."""
    s, n = set(years), 0
    while through - n in s:
        n += 1
    return n


def confirm_renewal(expert: dict, today: date, *, at: str, p: Programme = DEFAULT) -> tuple[dict, str | None]:
    """R-EX-04: the expert confirms the intent to continue next fiscal year. Renewed at once, unless the
    expert has been registered for `review_after_years` years in a row: then the agency reviews the record."""
    current = fiscal_year(today)
    if expert["status"] != "registered" or expert.get("registered_fiscal_year") != current:
        raise Rejected("conflict", "Cannot renew", f"Only an expert registered for fiscal year {current} can confirm "
                       f"renewal for {current + 1}.")
    new = _live(expert)
    target = current + 1
    if consecutive_years(new["registered_years"], current) >= p.review_after_years:
        new["renewal"] = {"state": "review", "for_fiscal_year": target, "intent_confirmed_at": at}
        return new, None
    new["renewal"] = {"state": "renewed", "for_fiscal_year": target, "intent_confirmed_at": at}
    new["registered_fiscal_year"] = target
    new["registered_years"] = sorted({*new["registered_years"], target})
    return new, "renewed"


def renewal_dossier(expert: dict) -> dict:
    """R-EX-04: what the agency sees when reviewing a renewal: years in a row, dispatch record, ratings."""
    fy = expert.get("registered_fiscal_year") or 0
    return {"consecutive_years": consecutive_years(expert["registered_years"], fy),
            "dispatches": expert["record"]["dispatches"],
            "dispatches_by_fiscal_year": expert["record"]["by_fiscal_year"],
            "radar": expert.get("radar")}


def review_renewal(expert: dict, decision: str, reasons: list[str], *, reviewer: str, at: str) -> tuple[dict, str | None]:
    """R-EX-04: the agency renews (having seen record and ratings) or declines; a declined registration
    runs to the end of its fiscal year and then expires."""
    r = expert.get("renewal") or {}
    if r.get("state") != "review":
        raise Rejected("conflict", "Nothing to review", "This expert has no renewal waiting for review.")
    if decision not in ("renew", "decline"):
        raise Rejected("invalid", "Unknown decision", "The decision must be renew or decline.")
    reasons = [x.strip() for x in reasons if x.strip()]
    if decision == "decline" and not reasons:
        raise Rejected("invalid", "Reasons required", "Declining a renewal needs the reasons.")
    new = _live(expert)
    new["renewal"] = {**r, "state": "renewed" if decision == "renew" else "declined", "reasons": reasons,
                      "reviewed_by": reviewer, "reviewed_at": at, "dossier": renewal_dossier(expert)}
    if decision == "decline":
        return new, None
    target = r["for_fiscal_year"]
    new["registered_fiscal_year"] = target
    new["registered_years"] = sorted({*new["registered_years"], target})
    if new["status"] != "registered":
        return new, None  # suspended meanwhile: the renewal counts when reinstated
    return new, "renewed"


def expire_if_lapsed(expert: dict, today: date) -> tuple[dict, str | None]:
    """R-EX-04: a registration not renewed ends with its fiscal year."""
    if expert["status"] in ("registered", "suspended") and (expert.get("registered_fiscal_year") or 0) < fiscal_year(today):
        new = copy.deepcopy(expert)
        new["status"] = "expired"
        if new.get("suspension"):
            new["suspension"]["previous"] = "expired"
        return new, "expired"
    return expert, None


# --- suspension and forced exit -------------------------------------------------------------------

def suspend(expert: dict, reason: str, *, by: str, at: str) -> tuple[dict, str]:
    """The agency suspends an expert: never offered for dispatch until reinstated (R-EX-05)."""
    if expert["status"] == "suspended":
        raise Rejected("conflict", "Already suspended", "This expert is already suspended.")
    if not reason.strip():
        raise Rejected("invalid", "Reason required", "A suspension needs a reason.")
    new = _live(expert)
    new["suspension"] = {"previous": expert["status"], "reason": reason.strip(), "by": by, "at": at}
    new["status"] = "suspended"
    return new, "suspended"


def reinstate(expert: dict, today: date, *, by: str, at: str) -> tuple[dict, str]:
    """Ends a suspension: back to the earlier stage, or expired if the registration year ended meanwhile."""
    if expert["status"] != "suspended":
        raise Rejected("conflict", "Not suspended", "Only a suspended expert can be reinstated.")
    new = _live(expert)
    previous = new["suspension"]["previous"]
    if previous == "registered" and (new.get("registered_fiscal_year") or 0) < fiscal_year(today):
        previous = "expired"
    new["status"] = previous
    new["suspension"] = {**new["suspension"], "ended_by": by, "ended_at": at}
    return new, "reinstated"


def force_exit(expert: dict, reason: str, *, by: str, at: str) -> tuple[dict, str | None]:
    """Forced exit (R-ID-06 account revoked, or the agency's decision): final; no page, no dispatch."""
    if expert["status"] == "exited":
        return expert, None
    new = copy.deepcopy(expert)
    new["exit"] = {"previous": expert["status"], "reason": reason, "by": by, "at": at}
    new["status"] = "exited"
    return new, "exited"


# --- learnt from other services -------------------------------------------------------------------

def record_dispatch(expert: dict, fy: int) -> dict:
    """R-EX-04: completed dispatches count towards the record the renewal review sees."""
    new = copy.deepcopy(expert)
    new["record"]["dispatches"] += 1
    by = new["record"]["by_fiscal_year"]
    by[str(fy)] = by.get(str(fy), 0) + 1
    return new


def _d(v) -> date:
    return v if isinstance(v, date) else date.fromisoformat(str(v))

"""Support history (個人カルテ), pure: R-POR-06 and R-DSP-05.

- Institutions' staff log consultations per business; the logging institution always sees its own entries.
- Another institution sees a business's history only while the business shares it with that institution
  (支援情報の共有): a grant the business gives and may withdraw at any time. Without a grant in force it sees its own
  entries only (none of another institution's); after a withdrawal, the same.
- The business sees all of its history; the agency (and operators) see it for oversight, as they see every dispatch.
- Every read that returns another institution's entries is a read the business can list (who, when, whose entries).
- The history includes the follow-up records of route-A dispatches (R-DSP-05), each the requesting institution's.
- R-DSP-05 follow-up reminders: after the expert's report the requesting institution follows the business up about
  every `interval_months` for about `years`; a period without a follow-up recorded is due at its end, once.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from servicekit.refusals import Rejected

JST = ZoneInfo("Asia/Tokyo")


@dataclass(frozen=True)
class FollowUpParams:
    interval_months: int = 6    # a follow-up about every N months (param)
    years: int = 3              # for about three years after the report (R-DSP-05, param)
    month_days: int = 30        # a month counted as 30 days, as the outcome surveys count it

    @property
    def periods(self) -> int:
        return max(1, (self.years * 12) // max(1, self.interval_months))

    @property
    def interval(self) -> timedelta:
        return timedelta(days=self.interval_months * self.month_days)


@dataclass(frozen=True)
class Viewer:
    """Who reads a business's history: the business itself, an institution (its organisations, and whether the
    business shares its history with one of them now), or the agency/operators for oversight."""

    kind: Literal["business", "institution", "oversight"]
    org_ids: frozenset[str] = frozenset()
    shared: bool = False


# --- consultations logged by institutions ------------------------------------------------------------------------
def check_entry(consulted_on: date, today_jst: date) -> None:
    """A consultation is logged once it was held: its date is not in the future (Japan time)."""
    if consulted_on > today_jst:
        raise Rejected("invalid", "Date in the future", f"A consultation is logged once held; {consulted_on} is "
                       f"after today ({today_jst}).")


def logging_org(org_ids: list[str], asked: str | None) -> str:
    """The institution a staff account logs for: the one it names among its own, or its only one."""
    if asked is not None:
        if asked not in org_ids:
            raise Rejected("forbidden", "Not your institution", f"You do not act for organisation {asked}.")
        return asked
    if len(org_ids) == 1:
        return org_ids[0]
    if not org_ids:
        raise Rejected("forbidden", "No institution", "Your account is not linked to an institution.")
    raise Rejected("invalid", "Which institution?", f"You act for several organisations ({', '.join(sorted(org_ids))}):"
                   " name org_id.")


# --- sharing (支援情報の共有) ---------------------------------------------------------------------------------------
def in_force(grant: dict | None) -> bool:
    return bool(grant) and grant.get("withdrawn_at") is None and grant.get("granted_at") is not None


def grant(current: dict | None, *, business_id: str, org_id: str, actor: str, now: datetime) -> dict | None:
    """R-POR-06: the business shares its history with `org_id`. The fields to set, or None when a grant is already in
    force (granting twice changes nothing). A grant withdrawn before may be given again; its acts stay listed."""
    if in_force(current):
        return None
    acts = [*(current or {}).get("acts", []), {"act": "granted", "by": actor, "at": now}]
    return {"business_id": business_id, "org_id": org_id, "granted_at": now, "granted_by": actor,
            "withdrawn_at": None, "withdrawn_by": None, "acts": acts}


def withdraw(current: dict | None, *, org_id: str, actor: str, now: datetime) -> dict:
    """R-POR-06: the business withdraws the sharing with `org_id`, at any time; refused when none is in force."""
    if not in_force(current):
        raise Rejected("conflict", "Not shared", f"Your support history is not shared with {org_id}.")
    return {"withdrawn_at": now, "withdrawn_by": actor,
            "acts": [*current.get("acts", []), {"act": "withdrawn", "by": actor, "at": now}]}


# --- reading ------------------------------------------------------------------------------------------------------
def visible(item: dict, viewer: Viewer) -> bool:
    """R-POR-06: the business and oversight see every item; an institution its own, and the others' only while the
    business shares its history with it."""
    if viewer.kind in ("business", "oversight"):
        return True
    return item.get("org_id") in viewer.org_ids or viewer.shared


def others_read(items: list[dict], viewer: Viewer) -> list[str]:
    """The institutions whose entries this read shows to someone other than the business and their authors: a read
    the business can list (empty for the business's own reads)."""
    if viewer.kind == "business":
        return []
    return sorted({i.get("org_id") or "" for i in items if i.get("org_id") not in viewer.org_ids})


def follow_up_items(dispatch: dict) -> list[dict]:
    """R-DSP-05: a route-A dispatch's follow-up records as items of the history, the requesting institution's."""
    if dispatch.get("route") != "A":
        return []
    return [{"kind": "follow_up", "dispatch_id": dispatch["_id"], "org_id": dispatch.get("institution_id"),
             "date": _day(f["at"]), "at": f["at"], "follow_up_kind": f.get("kind"), "note": f.get("note"),
             "by": f.get("by")} for f in dispatch.get("follow_ups", [])]


def entry_item(entry: dict) -> dict:
    return {"kind": "consultation", "entry_id": entry["_id"], "org_id": entry["org_id"], "date": entry["consulted_on"],
            "at": entry["logged_at"], "topic": entry["topic"], "summary": entry["summary"],
            "next_steps": entry.get("next_steps"), "staff": entry.get("staff"), "by": entry.get("logged_by")}


def view(entries: list[dict], dispatches: list[dict], viewer: Viewer) -> list[dict]:
    """The history a viewer may see: consultations and route-A follow-ups together, newest first."""
    items = [entry_item(e) for e in entries] + [i for d in dispatches for i in follow_up_items(d)]
    items = [i for i in items if visible(i, viewer)]
    return sorted(items, key=lambda i: (i["date"], _aware(i["at"])), reverse=True)


def _day(at: datetime) -> str:
    return _aware(at).astimezone(JST).date().isoformat()


def _aware(at: datetime) -> datetime:
    from datetime import UTC
    return at if at.tzinfo else at.replace(tzinfo=UTC)


# --- follow-up reminders (R-DSP-05) ------------------------------------------------------------------------------
def follow_up_due(dispatch: dict, now: datetime, p: FollowUpParams) -> tuple[int, datetime, datetime] | None:
    """The follow-up period of a route-A dispatch to remind its institution of now, as (period, due_at, until), or
    None. Period k covers (report + (k-1)·interval, report + k·interval] and is due at its end when no follow-up was
    recorded in it; only the latest period that ended is reminded, once (`follow_up_reminded` lists those sent)."""
    if dispatch.get("route") != "A" or not dispatch.get("institution_id"):
        return None
    filed = (dispatch.get("report") or {}).get("filed_at")
    if filed is None:
        return None
    filed, now = _aware(filed), _aware(now)
    until = filed + p.interval * p.periods
    if now > until + p.interval:  # the follow-up is long over: nothing to remind any more
        return None
    ended = min(int((now - filed) / p.interval), p.periods)
    if ended < 1:
        return None
    start, due = filed + p.interval * (ended - 1), filed + p.interval * ended
    if ended in dispatch.get("follow_up_reminded", []):
        return None
    if any(start < _aware(f["at"]) for f in dispatch.get("follow_ups", [])):
        return None
    return ended, due, until


def last_follow_up(dispatch: dict) -> datetime | None:
    ats = [_aware(f["at"]) for f in dispatch.get("follow_ups", [])]
    return max(ats) if ats else None

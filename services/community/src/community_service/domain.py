"""The rules of the community (R-POR-02) and of matching (R-POR-03): pure, no I/O.

Who a thing belongs to is a `Party`: a business (everyone who acts for it, R-ID-07 — its id comes from the caller's
token, never from what is typed) or one account (an expert, a founder). Moderation states, who may accept an answer,
what a viewer sees of moderated content, the consent states of a match and when contact details show are all here.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import combinations

from servicekit.refusals import Rejected

# --- parties ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Party:
    kind: str  # "business" | "account"
    id: str

    def doc(self) -> dict:
        return {"kind": self.kind, "id": self.id}

    @classmethod
    def of(cls, doc: dict) -> "Party":
        return cls(doc["kind"], doc["id"])


def is_party(party: Party, account_id: str, businesses: dict[str, str] | frozenset | set) -> bool:
    """The caller is this party: it acts for the business (prime or member), or it is the account."""
    if party.kind == "business":
        return party.id in businesses
    return party.id == account_id


# --- community threads (R-POR-02) -------------------------------------------------------------------------------------
CATEGORIES = ("management", "sales", "finance", "hr", "it", "succession", "legal", "other")
TITLE_MAX, BODY_MAX, REASON_MIN, REASON_MAX = 120, 5000, 5, 500
VISIBLE, HELD, HIDDEN = "visible", "held", "hidden"
# action -> (states it applies to, state it leads to)
MODERATION: dict[str, tuple[frozenset[str], str]] = {
    "hold": (frozenset({VISIBLE}), HELD),              # taken out of view while the agency looks into it
    "hide": (frozenset({VISIBLE, HELD}), HIDDEN),      # removed from view
    "restore": (frozenset({HELD, HIDDEN}), VISIBLE),   # back in view
}
MODERATOR_ROLES = frozenset({"agency", "operator"})


def author_kind(roles: frozenset[str] | set[str], mentor: bool) -> str:
    """R-POR-02: how a contribution is labelled — an expert, a senior owner (先輩経営者: a business account that opted
    in as mentor), a business, or a founder."""
    if "expert" in roles:
        return "expert"
    if "business" in roles:
        return "senior_owner" if mentor else "business"
    if "founder" in roles:
        return "founder"
    raise Rejected("forbidden", "Not a community member", "Businesses, founders and experts take part in the community.")


def _text(field: str, value: str, low: int, high: int) -> str:
    v = (value or "").strip()
    if not low <= len(v) <= high:
        raise Rejected("invalid", f"Check the {field}", f"The {field} needs {low} to {high} characters (has {len(v)}).",
                       errors=[{"field": field, "message": f"{low}..{high} characters"}])
    return v


def new_thread(category: str, title: str, body: str) -> dict:
    if category not in CATEGORIES:
        raise Rejected("invalid", "Unknown category", f"Category '{category}' is not one of: {', '.join(CATEGORIES)}.")
    return {"category": category, "title": _text("title", title, 3, TITLE_MAX), "body": _text("body", body, 1, BODY_MAX),
            "status": VISIBLE}


def new_post(thread: dict, body: str) -> dict:
    """An answer or a peer's reply: only in a thread that is in view."""
    if thread["status"] != VISIBLE:
        raise Rejected("conflict", "Thread not open for replies", "This thread is held or hidden by the moderators.")
    return {"body": _text("body", body, 1, BODY_MAX), "status": VISIBLE}


def reason_of(reason: str) -> str:
    """Every moderation act, report and dismissal carries a reason the author (or the agency) can read."""
    return _text("reason", reason, REASON_MIN, REASON_MAX)


def moderate(status: str, action: str, reason: str) -> tuple[str, str]:
    """R-POR-02: hold, hide or restore a thread or post, always with a reason: (new status, reason)."""
    if action not in MODERATION:
        raise Rejected("invalid", "Unknown action", f"Moderation is one of: {', '.join(MODERATION)}.")
    why = reason_of(reason)
    sources, target = MODERATION[action]
    if status not in sources:
        raise Rejected("conflict", f"Cannot {action}", f"The content is {status}; '{action}' applies only to "
                       f"{' or '.join(sorted(sources))} content.")
    return target, why


def may_mark(thread: dict, post: dict, caller_is_asker: bool, mark: str) -> None:
    """R-POR-02: the asker (the thread's party) marks an answer in its own thread helpful or accepted; never its own
    post, never one out of view."""
    if not caller_is_asker:
        raise Rejected("forbidden", "Only the asker", "Only who asked the question marks its answers.")
    if mark not in ("accepted", "helpful"):
        raise Rejected("invalid", "Unknown mark", "Mark an answer 'accepted' or 'helpful'.")
    if post["thread_id"] != thread["_id"]:
        raise Rejected("not_found", "Not found", "No such answer in this thread.")
    if Party.of(post["party"]) == Party.of(thread["party"]):
        raise Rejected("conflict", "Your own post", "An answer of your own cannot be marked.")
    if post["status"] != VISIBLE or thread["status"] != VISIBLE:
        raise Rejected("conflict", "Not in view", "Held or hidden content cannot be marked.")


def shown(doc: dict, *, author: bool, moderator: bool) -> dict:
    """What a viewer sees of a thread or post: in view, everything; held or hidden, its author and the moderators see
    it with the moderation's reason, everyone else only that it was removed."""
    out = {k: v for k, v in doc.items() if k not in ("_id", "_outbox", "key", "_seen", "list_key", "moderation_history")}
    if author or moderator:
        return out
    if doc["status"] == VISIBLE:
        out.pop("moderation", None)
        return out
    return {**{k: out[k] for k in ("thread_id", "post_id", "category", "status", "created_at", "replies") if k in out},
            "title": None, "body": None, "author_kind": None, "author_account_id": None, "party": None,
            "moderation": None}


# --- matching (R-POR-03) -----------------------------------------------------------------------------------------------
DIRECTIONS = ("need", "offer")
POSTING_KINDS = ("sales_channel", "partner", "successor", "expert_help")
OPEN, CLOSED = "open", "closed"
INTERESTED, CONNECTED, WITHDRAWN = "interested", "connected", "withdrawn"
SIDES = ("owner", "interested")


def check_posting(direction: str, kind: str, owner_kind: str, region: str, industry: str) -> None:
    """A business posts needs and offers of every kind (販路, partners, successors — 事業承継 — and expert help it
    needs); an expert offers help beyond dispatch only."""
    if direction not in DIRECTIONS:
        raise Rejected("invalid", "Need or offer?", f"direction is one of: {', '.join(DIRECTIONS)}.")
    if kind not in POSTING_KINDS:
        raise Rejected("invalid", "Unknown kind", f"kind is one of: {', '.join(POSTING_KINDS)}.")
    if owner_kind == "expert" and (kind, direction) != ("expert_help", "offer"):
        raise Rejected("forbidden", "Experts offer expert help",
                       "An expert posts offers of expert help beyond dispatch; other needs and offers are businesses'.")
    for field, v in (("region", region), ("industry", industry)):
        _text(field, v, 1, 40)
        if "|" in v or ";" in v:
            raise Rejected("invalid", f"Check the {field}", f"The {field} may not contain '|' or ';'.")


def match_id(posting_id: str, interested: Party) -> str:
    """One match per posting and interested party, so a repeated interest is the same match."""
    h = hashlib.sha256(f"{posting_id}|{interested.kind}|{interested.id}".encode()).hexdigest()[:16]
    return f"{posting_id}.{h}"


def express_interest(posting: dict, owner: Party, interested: Party) -> dict:
    """A party's interest in a posting: not its own, only while open. Nobody has consented yet."""
    if posting["status"] != OPEN:
        raise Rejected("conflict", "Posting closed", "This posting no longer takes interest.")
    if owner == interested:
        raise Rejected("conflict", "Your own posting", "You cannot express interest in your own posting.")
    return {"status": INTERESTED, "consent": {"owner": False, "interested": False}}


def consent(match: dict, side: str) -> tuple[dict, bool]:
    """One side consents to share contact details; the match connects once both have: (fields, connected now)."""
    if side not in SIDES:
        raise Rejected("forbidden", "Not a side of this match", "Only the posting's owner or the interested party consents.")
    if match["status"] == WITHDRAWN:
        raise Rejected("conflict", "Withdrawn", "This match was withdrawn; express interest again to start over.")
    if match["status"] == CONNECTED or match["consent"].get(side):
        return {}, False  # already given: nothing changes
    given = {**match["consent"], side: True}
    fields = {f"consent.{side}": True}
    if all(given.values()):
        fields["status"] = CONNECTED
        return fields, True
    return fields, False


def withdraw(match: dict, side: str) -> dict:
    """Either side withdraws before both consented; once connected, contact details have been shared."""
    if side not in SIDES:
        raise Rejected("forbidden", "Not a side of this match", "Only the posting's owner or the interested party withdraws.")
    if match["status"] == CONNECTED:
        raise Rejected("conflict", "Already connected", "Both sides consented; contact details have been shared.")
    if match["status"] == WITHDRAWN:
        raise Rejected("conflict", "Already withdrawn", "This match was already withdrawn.")
    return {"status": WITHDRAWN, "withdrawn_by": side}


def contacts_shown(match: dict, side: str | None) -> bool:
    """R-POR-03: contact details of both sides show only to the two sides and only after both consented."""
    return side in SIDES and match["status"] == CONNECTED and all(match["consent"].values())


def again(match: dict) -> dict:
    """A withdrawn match started anew by a fresh interest."""
    return {"status": INTERESTED, "consent": {"owner": False, "interested": False}, "withdrawn_by": None}


# --- indexed listing: every list read is one `_id` range (R-OPS-03) -------------------------------------------------
FILTERS = ("direction", "kind", "region", "industry")


def newest_first(at: datetime) -> str:
    """A fixed-width key that sorts newest first."""
    micros = int(at.astimezone(UTC).timestamp() * 1_000_000)
    return f"{10**17 - micros:017d}"


def facet(filters: dict[str, str | None]) -> str:
    """The facet a search with these filters reads: the present filters in a fixed order."""
    parts = [f"{k}={filters[k]}" for k in FILTERS if filters.get(k)]
    return ";".join(parts) or "*"


def posting_facets(posting: dict) -> list[str]:
    """Every facet a posting is listed under: one per subset of its filter values (16), so each search is one range."""
    out = []
    for n in range(len(FILTERS) + 1):
        for names in combinations(FILTERS, n):
            out.append(facet({k: posting[k] for k in names}))
    return out


def thread_facets(thread: dict) -> list[str]:
    return ["*", f"category={thread['category']}"]


def index_ids(facets: list[str], list_key: str, item_id: str) -> list[str]:
    """The index entries of an item; `list_key` (from `newest_first`) is kept on the item, so the entries can be
    found again exactly (the database keeps times to the millisecond only)."""
    return [f"{f}|{list_key}|{item_id}" for f in facets]


# --- regional joint ordering (R-POR-04, 共同受発注) ------------------------------------------------------------------
LOTS_MAX, ORDER_OPEN, ORDER_AWARDED = 50, "open", "awarded"


def order_area(asked: list[str] | None, platform_area: list[str] | None) -> list[str]:
    """The prefectures an order is open to: the platform's support area, or part of it. A platform whose area was
    never registered cannot post, since nobody could tell who is in it."""
    if not platform_area:
        raise Rejected("conflict", "No support area", "The platform has no support area registered yet: its bureau "
                       "sets it (PUT /api/identity/platforms/{id}/area) before the platform posts joint orders.")
    if not asked:
        return sorted(set(platform_area))
    outside = sorted(set(asked) - set(platform_area))
    if outside:
        raise Rejected("invalid", "Outside the support area", f"{', '.join(outside)} is not in the platform's "
                       f"support area ({', '.join(sorted(platform_area))}).", outside=outside)
    return sorted(set(asked))


def check_lots(titles: list[str]) -> list[str]:
    """Lots are numbered in the order given: lot-1, lot-2 …; at least one, at most LOTS_MAX, no two alike."""
    names = [t.strip() for t in titles]
    if not 1 <= len(names) <= LOTS_MAX:
        raise Rejected("invalid", "Lots", f"A joint order has 1 to {LOTS_MAX} lots.")
    if len(set(names)) != len(names):
        raise Rejected("invalid", "Lots", "Two lots have the same title; tell them apart.")
    return [f"lot-{i}" for i in range(1, len(names) + 1)]


def may_apply(order: dict, lot_id: str, business_prefecture: str | None, today: str) -> None:
    """R-POR-04: an open order, a lot it has, before its deadline, and a business located in its area (refused with
    the reason otherwise)."""
    if order["status"] != ORDER_OPEN:
        raise Rejected("conflict", "Closed", "This joint order is awarded and takes no more applications.")
    if lot_id not in {lot["lot_id"] for lot in order["lots"]}:
        raise Rejected("not_found", "No such lot", f"The joint order has no lot {lot_id}.")
    if today > order["deadline"]:
        raise Rejected("conflict", "Past the deadline", f"Applications closed on {order['deadline']}.")
    if business_prefecture is None:
        raise Rejected("conflict", "Where is the business?", "The portal does not know your business's prefecture yet "
                       "(its profile has not reached this service); try again in a moment.")
    if business_prefecture not in order["area_prefectures"]:
        raise Rejected("forbidden", "Outside the area", f"Your business is in {business_prefecture}; this joint order "
                       f"is open to businesses in {', '.join(order['area_prefectures'])} only (R-POR-04).",
                       prefecture=business_prefecture)


def award(order: dict, awards: dict[str, str], applied: dict[str, set[str]]) -> dict[str, str]:
    """The poster gives each lot to a business that applied for it (a lot may stay unawarded); returns the awards.
    `applied`: lot id -> businesses that applied for it."""
    if order["status"] != ORDER_OPEN:
        raise Rejected("conflict", "Already awarded", "The lots of this joint order were awarded already.")
    lots = {lot["lot_id"] for lot in order["lots"]}
    for lot_id, business_id in awards.items():
        if lot_id not in lots:
            raise Rejected("invalid", "No such lot", f"The joint order has no lot {lot_id}.")
        if business_id not in applied.get(lot_id, set()):
            raise Rejected("invalid", "Not an applicant", f"Business {business_id} did not apply for {lot_id}.")
    return dict(sorted(awards.items()))


def result_for(business_id: str, awards: dict[str, str]) -> list[str]:
    """The lots a business won (empty: not awarded), for the notice every applicant gets."""
    return sorted(lot for lot, b in awards.items() if b == business_id)

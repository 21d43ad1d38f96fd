"""The dispatch lifecycle as a state machine (R-DSP-14); an invalid step raises `InvalidTransition`."""
from __future__ import annotations

# R-DSP-14: requested → accepted | refused → reserved → approved → scheduled → visited → reported →
# confirmed → paid. `visited` repeats (one per visit). A budget refusal ends an accepted request. A budget service
# that stays silent puts `accepted` or `confirmed` into `budget_unanswered` (see domain.saga).
TRANSITIONS: dict[str, frozenset[str]] = {
    "requested": frozenset({"accepted", "refused", "cancelled"}),
    "accepted": frozenset({"reserved", "refused", "cancelled", "budget_unanswered"}),
    "reserved": frozenset({"approved", "cancelled"}),
    "approved": frozenset({"scheduled", "cancelled"}),
    "scheduled": frozenset({"visited", "cancelled"}),
    "visited": frozenset({"visited", "reported", "cancelled"}),
    "reported": frozenset({"confirmed", "cancelled"}),
    # Once the agency confirmed, the commit is already on its way to the budget service; a late
    # cancellation would race the payment, so from here the fraud procedure (R-DSP-13) applies instead.
    "confirmed": frozenset({"paid", "budget_unanswered"}),
    # The budget service did not answer a command re-sent several times (domain.saga): visible to the agency, which
    # retries (back to the waiting status); a late answer still applies.
    "budget_unanswered": frozenset({"accepted", "confirmed", "reserved", "refused", "cancelled", "paid"}),
    "paid": frozenset(),
    "refused": frozenset(),
    "cancelled": frozenset(),
}

TERMINAL = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)
# Statuses in which budget is held for the dispatch (a cancellation must release it).
RESERVED_STATUSES = frozenset({"reserved", "approved", "scheduled", "visited", "reported"})
# Statuses before approval: a cancellation here gives the free dispatch back (R-DSP-03).
BEFORE_APPROVAL = frozenset({"requested", "accepted", "reserved", "budget_unanswered"})


class InvalidTransition(Exception):
    """A lifecycle step that is not allowed from the current status (HTTP 409)."""

    def __init__(self, current: str, wanted: str):
        self.current, self.wanted = current, wanted
        super().__init__(f"A dispatch that is '{current}' cannot become '{wanted}'.")


def can(current: str, wanted: str) -> bool:
    return wanted in TRANSITIONS.get(current, frozenset())


def transition(current: str, wanted: str) -> str:
    """R-DSP-14: the next status, or `InvalidTransition`."""
    if not can(current, wanted):
        raise InvalidTransition(current, wanted)
    return wanted


def sources(wanted: str) -> list[str]:
    """The statuses `wanted` may be reached from: the guard of a conditional update."""
    return [s for s, nxt in TRANSITIONS.items() if wanted in nxt]

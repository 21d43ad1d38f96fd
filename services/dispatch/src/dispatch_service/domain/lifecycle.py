"""The dispatch lifecycle as a state machine (R-DSP-14); an invalid step raises `InvalidTransition`."""
from __future__ import annotations

from contracts.events.dispatch import DispatchStatus as S
from servicekit.refusals import Rejected

# R-DSP-14: requested → accepted | refused → reserved → approved → scheduled → visited → reported →
# confirmed → paid. `visited` repeats (one per visit). A budget refusal ends an accepted request. A budget service
# that stays silent puts `accepted` or `confirmed` into `budget_unanswered` (see domain.saga).
TRANSITIONS: dict[S, frozenset[S]] = {
    S.REQUESTED: frozenset({S.ACCEPTED, S.REFUSED, S.CANCELLED}),
    S.ACCEPTED: frozenset({S.RESERVED, S.REFUSED, S.CANCELLED, S.BUDGET_UNANSWERED}),
    S.RESERVED: frozenset({S.APPROVED, S.CANCELLED}),
    S.APPROVED: frozenset({S.SCHEDULED, S.CANCELLED}),
    S.SCHEDULED: frozenset({S.VISITED, S.CANCELLED}),
    S.VISITED: frozenset({S.VISITED, S.REPORTED, S.CANCELLED}),
    S.REPORTED: frozenset({S.CONFIRMED, S.CANCELLED}),
    # Once the agency confirmed, the commit is already on its way to the budget service; a late
    # cancellation would race the payment, so from here the fraud procedure (R-DSP-13) applies instead.
    S.CONFIRMED: frozenset({S.PAID, S.BUDGET_UNANSWERED}),
    # The budget service did not answer a command re-sent several times (domain.saga): visible to the agency, which
    # retries (back to the waiting status); a late answer still applies.
    S.BUDGET_UNANSWERED: frozenset({S.ACCEPTED, S.CONFIRMED, S.RESERVED, S.REFUSED, S.CANCELLED, S.PAID}),
    S.PAID: frozenset(),
    S.REFUSED: frozenset(),
    S.CANCELLED: frozenset(),
}

TERMINAL = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)
# Statuses in which budget is held for the dispatch (a cancellation must release it).
RESERVED_STATUSES = frozenset({S.RESERVED, S.APPROVED, S.SCHEDULED, S.VISITED, S.REPORTED})
# Statuses in which the expert carries the dispatch (R-EX-06: counted against the expert's cap of open dispatches).
OPEN_FOR_EXPERT = frozenset({S.ACCEPTED, S.RESERVED, S.APPROVED, S.SCHEDULED, S.VISITED})
# Statuses before approval: a cancellation here gives the free dispatch back (R-DSP-03).
BEFORE_APPROVAL = frozenset({S.REQUESTED, S.ACCEPTED, S.RESERVED, S.BUDGET_UNANSWERED})


class InvalidTransition(Rejected):
    """A lifecycle step that is not allowed from the current status (HTTP 409)."""

    def __init__(self, current: str, wanted: str):
        self.current, self.wanted = S(current), S(wanted)
        super().__init__("conflict", "Not possible in the dispatch's current state",
                         f"A dispatch that is '{self.current}' cannot become '{self.wanted}'.",
                         current_status=self.current.value, requested_status=self.wanted.value)


def can(current: str, wanted: str) -> bool:
    return S(wanted) in TRANSITIONS.get(S(current), frozenset())


def transition(current: str, wanted: str) -> S:
    """R-DSP-14: the next status, or `InvalidTransition`."""
    if not can(current, wanted):
        raise InvalidTransition(current, wanted)
    return S(wanted)


def sources(wanted: str) -> list[S]:
    """The statuses `wanted` may be reached from: the guard of a conditional update."""
    return [s for s, nxt in TRANSITIONS.items() if S(wanted) in nxt]

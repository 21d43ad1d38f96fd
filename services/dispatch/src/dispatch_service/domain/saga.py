"""The budget leg of the dispatch saga when the budget service stays silent (R-DSP-08, R-DSP-14), pure.

A dispatch waits for budget twice: `accepted` waits for the answer to its ReserveBudget, `confirmed` for the answer
to its CommitBudget. A command unanswered for `answer_seconds` is re-sent with the SAME command id (budget applies
each command once, so a re-send never reserves or pays twice); after `max_attempts` sends the dispatch becomes
`budget_unanswered`, a status the agency sees in its queue and can retry. A late answer still applies.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

UNANSWERED = "budget_unanswered"
WAITING = ("accepted", "confirmed")  # the statuses in which a dispatch can wait for a budget answer (`waiting_for`)


@dataclass(frozen=True)
class SagaParams:
    answer_seconds: float = 60.0
    max_attempts: int = 3
    slot_grace_seconds: float = 60.0


def waiting_for(doc: dict) -> Literal["reserve", "commit"] | None:
    """Which budget command the dispatch waits for an answer to, if any."""
    if doc.get("commit") and not doc.get("payment") and doc["status"] in ("confirmed", UNANSWERED):
        return "commit"
    if doc.get("reserve") and not doc.get("reserved") and doc["status"] in ("accepted", UNANSWERED):
        return "reserve"
    return None


def overdue(doc: dict, now: datetime, params: SagaParams) -> Literal["resend", "give_up"] | None:
    """What the sweeper does with a dispatch now: re-send its command, give up (visible status), or nothing."""
    phase = waiting_for(doc)
    if phase is None or doc["status"] == UNANSWERED:
        return None
    cmd = doc[phase]
    sent = cmd.get("sent_at")
    if sent is None or (now - sent).total_seconds() < params.answer_seconds:
        return None
    return "resend" if cmd.get("attempts", 1) < params.max_attempts else "give_up"

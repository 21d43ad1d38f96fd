"""Budget commands (`budget.commands`) and events (`budget.events`); both keyed by frame id.

The budget service is the only consumer of `budget.commands` and the single writer of each frame, so
Kafka's per-key order serialises every frame's reservations (R-BUD-03). Every command carries a
`command_id`; the budget service applies each id at most once. Amounts are integer yen.
"""
from typing import ClassVar, Literal

from pydantic import Field

from contracts.envelope import Message

COMMANDS = "budget.commands"
EVENTS = "budget.events"


def frame_id(fiscal_year: int, platform_id: str) -> str:
    """The frame of a platform in a fiscal year (R-BUD-01); every party derives it the same way."""
    return f"frame-{fiscal_year}-{platform_id}"


class _Command(Message):
    topic: ClassVar[str] = COMMANDS
    key_field: ClassVar[str] = "frame_id"
    command_id: str = Field(description="idempotency key: the same id never moves money twice")
    frame_id: str
    dispatch_id: str


class ReserveBudget(_Command):
    """Dispatch asks to reserve the estimated fee + travel of a dispatch against a member's share."""

    message_type: ClassVar[str] = "budget.ReserveBudget"
    member_id: str = Field(description="organisation id of the requesting member institution")
    fee: int = Field(ge=0, description="estimated fee, yen")
    travel: int = Field(ge=0, description="estimated travel costs, yen")


class CommitBudget(_Command):
    """The agency confirmed the dispatch: the actual fee and travel become spending (R-BUD-04)."""

    message_type: ClassVar[str] = "budget.CommitBudget"
    fee: int = Field(ge=0)
    travel: int = Field(ge=0)


class ReleaseBudget(_Command):
    """The dispatch was cancelled or refused after reservation: the reservation returns to the frame."""

    message_type: ClassVar[str] = "budget.ReleaseBudget"
    reason: str = ""


class CreditRefund(_Command):
    """A refund claimed after fraud was repaid (R-DSP-13): the amount returns to the frame as negative spending of the
    member that spent it (R-BUD-05: a ledger line). One per dispatch; the id makes a re-send harmless."""

    message_type: ClassVar[str] = "budget.CreditRefund"
    amount: int = Field(ge=0, description="yen repaid")


class _Event(Message):
    topic: ClassVar[str] = EVENTS
    key_field: ClassVar[str] = "frame_id"
    frame_id: str


class FrameAllocated(_Event):
    """A bureau allocated (or changed) a platform's frame for a fiscal year (R-BUD-01)."""

    message_type: ClassVar[str] = "budget.FrameAllocated"
    fiscal_year: int
    platform_id: str
    representative_id: str
    fee: int = Field(ge=0)
    travel: int = Field(ge=0)


class ShareChanged(_Event):
    """The representative set a member's share of the frame (R-BUD-02)."""

    message_type: ClassVar[str] = "budget.ShareChanged"
    member_id: str
    amount: int = Field(ge=0)


class BudgetReserved(_Event):
    """Answer to ReserveBudget: the amount is held for the dispatch."""

    message_type: ClassVar[str] = "budget.BudgetReserved"
    dispatch_id: str
    command_id: str
    member_id: str
    amount: int = Field(ge=0)


class BudgetRefused(_Event):
    """Answer to ReserveBudget: nothing was held, for this reason."""

    message_type: ClassVar[str] = "budget.BudgetRefused"
    dispatch_id: str
    command_id: str
    reason_code: Literal["no_frame", "insufficient_balance", "frame_closed", "not_allowed"]
    reason: str = Field(description="the reason in words a user understands")


class BudgetCommitted(_Event):
    """The actual fee + travel became spending; `returned` went back to the frame (R-BUD-04)."""

    message_type: ClassVar[str] = "budget.BudgetCommitted"
    dispatch_id: str
    command_id: str
    spent: int = Field(ge=0)
    returned: int = Field(ge=0)
    uncovered: int = Field(default=0, ge=0, description="actual cost above the reservation that the member's "
                           "available budget could not cover; never spent from the frame (R-BUD-03)")


class BudgetReleased(_Event):
    """A reservation was released (cancel / refusal); the amount is available again."""

    message_type: ClassVar[str] = "budget.BudgetReleased"
    dispatch_id: str
    command_id: str
    amount: int = Field(ge=0)


class BudgetRefunded(_Event):
    """Answer to CreditRefund: `amount` went back to the frame (at most what the dispatch spent)."""

    message_type: ClassVar[str] = "budget.BudgetRefunded"
    dispatch_id: str
    command_id: str
    amount: int = Field(ge=0)


class FrameClosed(_Event):
    """Fiscal-year close: the frame refuses new reservations from now on."""

    message_type: ClassVar[str] = "budget.FrameClosed"
    open_reservations: list[str] = Field(default_factory=list, description="dispatch ids still reserved")

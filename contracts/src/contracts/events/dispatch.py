"""Events of the dispatch service on `dispatch.events` (key: dispatch id)."""
from datetime import datetime
from enum import StrEnum
from typing import Annotated, ClassVar, Literal

from pydantic import Field, WithJsonSchema

from contracts.envelope import Message

TOPIC = "dispatch.events"



class DispatchStatus(StrEnum):
    """R-DSP-14: the lifecycle, in order; `cancelled` and `refused` end it early; `budget_unanswered` is the visible
    state of a dispatch whose budget command went unanswered (the agency retries). A str: stored and sent as its value."""

    REQUESTED = "requested"
    ACCEPTED = "accepted"
    REFUSED = "refused"
    RESERVED = "reserved"
    APPROVED = "approved"
    SCHEDULED = "scheduled"
    VISITED = "visited"
    REPORTED = "reported"
    CONFIRMED = "confirmed"
    PAID = "paid"
    CANCELLED = "cancelled"
    BUDGET_UNANSWERED = "budget_unanswered"


STATUSES = tuple(s.value for s in DispatchStatus)


class DispatchStatusChanged(Message):
    """One step of a dispatch's lifecycle (R-DSP-14); every transition is one of these."""

    message_type: ClassVar[str] = "dispatch.DispatchStatusChanged"
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "dispatch_id"

    dispatch_id: str
    # the enum, with the wire schema of v1 (a string enum inline), so v1 consumers see no change
    status: Annotated[DispatchStatus, WithJsonSchema({"enum": list(STATUSES), "title": "Status", "type": "string"})] = Field(
        description="R-DSP-14; budget_unanswered: the budget service did not answer a re-sent command, the agency acts")
    route: Literal["A", "B"]
    fiscal_year: int
    business_id: str
    expert_id: str
    institution_id: str | None = Field(default=None, description="requesting institution (route A)")
    platform_id: str | None = None
    reason_code: str | None = Field(default=None, description="set when refused or cancelled")
    reason: str | None = None
    fee: int | None = Field(default=None, description="yen; set once confirmed")
    travel: int | None = None


class DispatchCompleted(Message):
    """The agency confirmed the expert's report: ratings are now owed (R-RAT-01, R-DSP-12)."""

    message_type: ClassVar[str] = "dispatch.DispatchCompleted"
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "dispatch_id"

    dispatch_id: str
    fiscal_year: int
    route: Literal["A", "B"]
    business_id: str
    business_account_id: str = Field(description="the account that rates for the business")
    expert_id: str
    institution_id: str | None = None
    institution_account_id: str | None = Field(default=None, description="route A: the staff account that rates")
    completed_at: datetime


class FraudConfirmed(Message):
    """The agency found collusion or fraud (R-DSP-13): refund claimed, forced exit requested (R-ID-06)."""

    message_type: ClassVar[str] = "dispatch.FraudConfirmed"
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "dispatch_id"

    dispatch_id: str
    account_ids: list[str] = Field(description="accounts whose forced exit is requested")
    refund_claim: int = Field(ge=0, description="fees paid that are claimed back, yen")
    reason: str


class RefundSettled(Message):
    """A refund claimed after fraud (R-DSP-13) was settled: `repaid` (the money came back; budget credits `amount` to
    the frame's ledger, answering with BudgetRefunded) or `written_off` (it will not come back; nothing moves)."""

    message_type: ClassVar[str] = "dispatch.RefundSettled"
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "dispatch_id"

    dispatch_id: str
    decision: Literal["repaid", "written_off"]
    amount: int = Field(ge=0, description="yen repaid (0 when written off)")
    claimed: int = Field(ge=0, description="yen claimed back")

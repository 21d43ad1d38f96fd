"""Events of the dispatch service on `dispatch.events` (key: dispatch id)."""
from datetime import datetime
from typing import ClassVar, Literal

from pydantic import Field

from contracts.envelope import Message

TOPIC = "dispatch.events"

# R-DSP-14: the lifecycle, in order; `cancelled` and `refused` end it early.
STATUSES = ("requested", "accepted", "refused", "reserved", "approved", "scheduled", "visited",
            "reported", "confirmed", "paid", "cancelled")


class DispatchStatusChanged(Message):
    """One step of a dispatch's lifecycle (R-DSP-14); every transition is one of these."""

    message_type: ClassVar[str] = "dispatch.DispatchStatusChanged"
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "dispatch_id"

    dispatch_id: str
    status: Literal["requested", "accepted", "refused", "reserved", "approved", "scheduled", "visited",
                    "reported", "confirmed", "paid", "cancelled", "budget_unanswered"] = Field(
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

"""Events of the support history (個人カルテ, R-POR-06, R-DSP-05), owned by the dispatch service, on
`dispatch.history` (key: business id, so that a business's grants and withdrawals stay in order).

The events say *that* something happened, not what was said in a consultation: the summary and next steps stay in the
dispatch service's store and are read only by who may see them (the logging institution, the business, an
institution the business shares its history with, the agency for oversight)."""
from datetime import date, datetime
from typing import ClassVar

from pydantic import Field

from contracts.envelope import Message

TOPIC = "dispatch.history"


class ConsultationLogged(Message):
    """An institution's staff logged a consultation with a business in its support history (R-POR-06)."""

    message_type: ClassVar[str] = "dispatch.ConsultationLogged"
    version: ClassVar[int] = 1
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "business_id"

    entry_id: str
    business_id: str
    org_id: str = Field(description="the institution whose staff held the consultation")
    consulted_on: date
    subject: str = Field(description="the topic of the consultation (its summary and next steps stay in dispatch)")
    logged_by: str = Field(description="the staff account that logged it")


class HistorySharingGranted(Message):
    """The business shares its support history with an institution (支援情報の共有, R-POR-06), until it withdraws."""

    message_type: ClassVar[str] = "dispatch.HistorySharingGranted"
    version: ClassVar[int] = 1
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "business_id"

    business_id: str
    org_id: str = Field(description="the institution that may now see the history")
    granted_by: str = Field(description="the business's account that granted it")
    granted_at: datetime


class HistorySharingWithdrawn(Message):
    """The business withdrew the sharing of its support history with an institution (R-POR-06)."""

    message_type: ClassVar[str] = "dispatch.HistorySharingWithdrawn"
    version: ClassVar[int] = 1
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "business_id"

    business_id: str
    org_id: str
    withdrawn_by: str
    withdrawn_at: datetime


class FollowUpDue(Message):
    """R-DSP-05: a route-A dispatch's requesting institution owes the business a follow-up (one per period of the
    follow-up interval over about three years after the report) and has recorded none in this period. Emitted once per
    period by dispatch's clock; notifications may remind the institution's staff (recipient kind `organisation`)."""

    message_type: ClassVar[str] = "dispatch.FollowUpDue"
    version: ClassVar[int] = 1
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "business_id"

    dispatch_id: str
    business_id: str
    institution_id: str = Field(description="the requesting institution that follows the business up")
    period: int = Field(ge=1, description="which follow-up period (1, 2, …) is due")
    due_at: datetime
    follow_up_until: datetime = Field(description="end of the follow-up (about three years after the report)")
    last_follow_up_at: datetime | None = None

"""Events published by the recommend service on `recommend.events` (key: programme id)."""
from datetime import date, datetime
from typing import ClassVar

from pydantic import BaseModel, Field

from contracts.envelope import Message

TOPIC = "recommend.events"


class ProgrammeTags(BaseModel):
    """What a programme is matched on (R-REC-01); an empty list means "any" (no prefectures = nationwide)."""

    industries: list[str] = Field(default_factory=list)
    sizes: list[str] = Field(default_factory=list, description="small and/or medium (by employees, SME Act)")
    prefectures: list[str] = Field(default_factory=list)
    keywords: list[str] = Field(default_factory=list)


class ProgrammeAdded(Message):
    """A support programme entered the catalogue (R-REC-04), added by an operator."""

    message_type: ClassVar[str] = "recommend.ProgrammeAdded"
    version: ClassVar[int] = 1
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "programme_id"

    programme_id: str
    name: str
    fiscal_year: int
    budget_oku_yen: float | None = Field(default=None, description="budget in 億円 (100 million yen)")
    purpose: str = ""
    target: str = ""
    subsidy_rate: str | None = None
    cap_yen: int | None = None
    tags: ProgrammeTags = Field(default_factory=ProgrammeTags)
    application_deadline: date | None = Field(default=None, description="last day to apply (R-NOT-04 reminders)")


class InteractionRecorded(Message):
    """A business started using or favouring a programme (R-REC-02); sent once per business × programme × kind.
    Keeps recommend's own read models (item-item counts, uptake counters: R-OPS-03) without rereading interactions."""

    message_type: ClassVar[str] = "recommend.InteractionRecorded"
    version: ClassVar[int] = 1
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "programme_id"

    business_id: str
    programme_id: str
    kind: str = Field(description="used or favourite")
    before: list[str] = Field(default_factory=list,
                              description="programmes the business used or favoured before; empty when it already "
                                          "had this programme under the other kind (nothing new to count together)")
    new_programme: bool = Field(description="the business had neither kind of interaction with this programme before")
    prefecture: str
    industry: str


class ApplicationSubmitted(Message):
    """A business submitted (or resubmitted) an application to a programme (R-POR-05); `accepted_at` is the time its
    request arrived at the API, the time the deadline is judged by."""

    message_type: ClassVar[str] = "recommend.ApplicationSubmitted"
    version: ClassVar[int] = 1
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "programme_id"

    application_id: str
    programme_id: str
    business_id: str
    receipt_number: str
    submission: int = Field(description="1 for the first submission, 2 after one return, ...")
    accepted_at: datetime = Field(description="arrival time of the submission at the API")
    attachments: dict[str, str] = Field(default_factory=dict, description="required document id -> upload id")
    pending_uploads: dict[str, str] = Field(default_factory=dict, description="document id -> upload whose bytes were "
                                                                             "still arriving at the submission")


class ApplicationReturned(Message):
    """The programme's reviewer returned a submitted application to the business, with the reason (R-POR-05)."""

    message_type: ClassVar[str] = "recommend.ApplicationReturned"
    version: ClassVar[int] = 1
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "programme_id"

    application_id: str
    programme_id: str
    business_id: str
    reason: str
    reviewer: str


class ApplicationAccepted(Message):
    """The programme's reviewer accepted a submitted application (R-POR-05)."""

    message_type: ClassVar[str] = "recommend.ApplicationAccepted"
    version: ClassVar[int] = 1
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "programme_id"

    application_id: str
    programme_id: str
    business_id: str
    receipt_number: str
    reviewer: str

"""Events of the experts service on `experts.events` (key: expert id).

Event-carried state: each event holds the expert's whole dispatch-relevant state, so a consumer
(dispatch, recommend, ratings) keeps its read model by upserting the latest one.
"""
from datetime import date
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, Field

from contracts.envelope import Message

TOPIC = "experts.events"


class Unavailability(BaseModel):
    start: date
    end: date
    note: str = ""


class ExpertChanged(Message):
    """The expert registered, was approved, suspended, reinstated, or edited profile / availability."""

    message_type: ClassVar[str] = "experts.ExpertChanged"
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "expert_id"

    expert_id: str
    account_id: str
    change: Literal["registered", "applied", "approved", "returned", "rejected", "suspended", "reinstated",
                    "renewed", "expired", "profile", "availability", "exited"]
    status: Literal["portal", "applied", "registered", "suspended", "expired", "exited"] = Field(
        description="portal = stage 1 only; registered = national dispatch expert (stage 2) this fiscal year")
    registered_fiscal_year: int | None = None
    name: str
    fields: list[str] = Field(default_factory=list)
    regions: list[str] = Field(default_factory=list)
    qualifications: list[str] = Field(default_factory=list)
    employer_org_id: str | None = Field(default=None, description="institution employing the expert (R-DSP-11)")
    personnel_cost_subsidised: bool = Field(default=False, description="no fee when true (R-DSP-11)")
    related_business_ids: list[str] = Field(default_factory=list,
                                            description="businesses the expert belongs to or advises (R-DSP-06)")
    unavailable: list[Unavailability] = Field(default_factory=list)
    paused: bool = Field(default=False, description="the expert paused new dispatches (R-EX-06)")
    open_cap: int | None = Field(default=None, ge=1, le=100, description=(
        "most open dispatches (accepted, not yet reported) the expert takes on at a time, per week (R-EX-06); "
        "None: no cap set"))
    weekdays: list[Annotated[int, Field(ge=0, le=6)]] = Field(default_factory=list, max_length=7, description=(
        "R-EX-06 calendar: the weekdays the expert takes visits on, 0 = Monday … 6 = Sunday; empty (or absent, as in "
        "events before this field existed): any day"))

"""Events of the ratings service on `ratings.events` (key: expert id)."""
from datetime import datetime
from typing import ClassVar, Literal

from pydantic import Field

from contracts.envelope import Message

TOPIC = "ratings.events"


def owed_rating_id(dispatch_id: str, rater_kind: str) -> str:
    """The id of the rating a rater kind owes for a dispatch (R-RAT-01/03): one per dispatch and rater kind. Shared,
    so dispatch can block the next free request itself the moment it confirms (R-DSP-12), under the same id the
    ratings service then records."""
    return f"{dispatch_id}:{rater_kind}"


class _RatingsEvent(Message):
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "expert_id"
    expert_id: str


class RatingOwed(_RatingsEvent):
    """A rater owes a rating for a completed dispatch (R-RAT-01/03); blocks the next free request (R-DSP-12)."""

    message_type: ClassVar[str] = "ratings.RatingOwed"
    owed_id: str
    dispatch_id: str
    business_id: str
    rater_account_id: str
    rater_kind: Literal["business", "institution"]
    since: datetime


class RatingGiven(_RatingsEvent):
    """The owed rating was given: the block and the prompts end."""

    message_type: ClassVar[str] = "ratings.RatingGiven"
    owed_id: str
    dispatch_id: str
    business_id: str
    rater_account_id: str
    rater_kind: Literal["business", "institution"]


class ExpertRadarUpdated(_RatingsEvent):
    """Per-axis averages over the recent window (R-RAT-02), for the expert page and search."""

    message_type: ClassVar[str] = "ratings.ExpertRadarUpdated"
    averages: dict[str, float] = Field(description="axis -> average 1..5 over the window; axes from contracts.vocab")
    count: int = Field(ge=0, description="ratings inside the window")
    window_days: int
    as_of: datetime


class ExpertClassified(_RatingsEvent):
    """Year-end classification from institution evaluations (R-RAT-04), published after fiscal-year end."""

    message_type: ClassVar[str] = "ratings.ExpertClassified"
    fiscal_year: int
    type: Literal["I", "II", "III", "IV"]
    level: Literal["L1", "L2", "L3", "L4"]

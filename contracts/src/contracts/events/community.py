"""Events of the community service on `community.events` (key: the thread id for the community's threads, the
posting id for matching). Contact details never travel in an event (R-POR-03)."""
from typing import ClassVar, Literal

from pydantic import Field

from contracts.envelope import Message

TOPIC = "community.events"

PartyKind = Literal["business", "account"]


class _ThreadEvent(Message):
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "thread_id"
    thread_id: str


class ThreadOpened(_ThreadEvent):
    """A business, expert or senior owner asked a question in a category (R-POR-02)."""

    message_type: ClassVar[str] = "community.ThreadOpened"
    category: str
    author_account_id: str
    author_kind: Literal["business", "senior_owner", "expert", "founder"]
    party_kind: PartyKind = Field(description="who the thread belongs to: a business (all who act for it) or an account")
    party_id: str


class CommunityReplyPosted(_ThreadEvent):
    """Someone answered in a thread: the thread's author is to hear of it (R-POR-02)."""

    message_type: ClassVar[str] = "community.ReplyPosted"
    post_id: str
    author_account_id: str
    author_kind: Literal["business", "senior_owner", "expert", "founder"]
    thread_author_account_id: str
    thread_party_kind: PartyKind
    thread_party_id: str


class AnswerAccepted(_ThreadEvent):
    """The asker marked an answer as accepted (or only as helpful)."""

    message_type: ClassVar[str] = "community.AnswerAccepted"
    post_id: str
    mark: Literal["accepted", "helpful"]
    post_author_account_id: str


class ContentModerated(_ThreadEvent):
    """The agency held, hid or restored a thread or a post, with its reason (shown to the author)."""

    message_type: ClassVar[str] = "community.ContentModerated"
    target_kind: Literal["thread", "post"]
    target_id: str
    action: Literal["hold", "hide", "restore"]
    status: Literal["visible", "held", "hidden"]
    reason: str
    author_account_id: str


class AbuseReported(_ThreadEvent):
    """A signed-in person reported a thread or a post; the report waits in the moderation queue."""

    message_type: ClassVar[str] = "community.AbuseReported"
    report_id: str
    target_kind: Literal["thread", "post"]
    target_id: str
    reason: str


class ReportClosed(_ThreadEvent):
    """A report left the queue: resolved by a moderation of its target, or dismissed with a reason."""

    message_type: ClassVar[str] = "community.ReportClosed"
    report_id: str
    outcome: Literal["resolved", "dismissed"]
    reason: str


class _PostingEvent(Message):
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "posting_id"
    posting_id: str


class PostingPublished(_PostingEvent):
    """A need or an offer was published for matching (R-POR-03); searchable by kind, region and industry."""

    message_type: ClassVar[str] = "community.PostingPublished"
    direction: Literal["need", "offer"]
    kind: Literal["sales_channel", "partner", "successor", "expert_help"]
    region: str
    industry: str
    owner_kind: Literal["business", "expert"]
    owner_id: str = Field(description="the business id, or the expert's account id")
    title: str | None = Field(default=None, description="shown where the posting is recommended (never its contact)")


class PostingClosed(_PostingEvent):
    message_type: ClassVar[str] = "community.PostingClosed"


class InterestExpressed(_PostingEvent):
    """A party is interested in a posting; contact details stay hidden until both consent (R-POR-03)."""

    message_type: ClassVar[str] = "community.InterestExpressed"
    match_id: str
    owner_kind: Literal["business", "expert"]
    owner_id: str
    interested_kind: Literal["business", "expert"]
    interested_id: str


class MatchConsented(_PostingEvent):
    """One side of a match consented to share contact details."""

    message_type: ClassVar[str] = "community.MatchConsented"
    match_id: str
    side: Literal["owner", "interested"]


class MatchConnected(_PostingEvent):
    """Both sides consented: each now sees the other's contact details."""

    message_type: ClassVar[str] = "community.MatchConnected"
    match_id: str
    owner_kind: Literal["business", "expert"]
    owner_id: str
    interested_kind: Literal["business", "expert"]
    interested_id: str


class MatchWithdrawn(_PostingEvent):
    """A side withdrew before both consented; no contact details were shown."""

    message_type: ClassVar[str] = "community.MatchWithdrawn"
    match_id: str
    side: Literal["owner", "interested"]


# --- regional joint ordering (R-POR-04, 共同受発注): key the order id --------------------------------------------
class _OrderEvent(Message):
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "order_id"
    order_id: str


class JointOrderPosted(_OrderEvent):
    """A platform's member institution posted a joint order split into lots, open to businesses of its area."""

    message_type: ClassVar[str] = "community.JointOrderPosted"
    platform_id: str
    org_id: str = Field(description="the posting institution")
    area_prefectures: list[str] = Field(description="only businesses located here may apply")
    lot_ids: list[str]
    deadline: str = Field(description="ISO date: the last day to apply")


class JointOrderApplied(_OrderEvent):
    """A business of the area applied for a lot."""

    message_type: ClassVar[str] = "community.JointOrderApplied"
    lot_id: str
    business_id: str


class JointOrderAwarded(_OrderEvent):
    """The poster awarded the lots (a lot may stay unawarded) and closed the order; every applicant hears of it."""

    message_type: ClassVar[str] = "community.JointOrderAwarded"
    awards: dict[str, str] = Field(description="lot id -> the business awarded it")
    applicants: list[str] = Field(description="every business that applied")

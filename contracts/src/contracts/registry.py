"""Every topic of the platform: its key, partition count and the message types it carries.

This is the one place a newcomer looks up "what flows where". Keys are aggregate ids, so Kafka keeps
order per aggregate; each consumed topic has a dead-letter twin `<topic>.dlq`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from contracts.envelope import Message
from contracts.events import budget, community, dispatch, experts, history, identity, notifications, ratings, recommend


@dataclass(frozen=True)
class TopicSpec:
    name: str
    key: str
    partitions: int
    owner: str
    models: tuple[type[Message], ...] = field(default=())

    @property
    def dlq(self) -> str:
        return f"{self.name}.dlq"


TOPICS: dict[str, TopicSpec] = {
    t.name: t
    for t in (
        TopicSpec("identity.events", "account / business / organisation id", 6, "identity",
                  (identity.BusinessRegistered, identity.AccountRegistered, identity.AccountRevoked,
                   identity.ClientRegistered, identity.OrganisationRegistered, identity.PlatformRegistered,
                   identity.PlatformAreaChanged, identity.MembershipChanged, identity.BusinessProfileChanged, identity.ConsentGranted,
                   identity.ConsentWithdrawn, identity.BindingChanged, identity.DelegationGranted,
                   identity.DelegationRevoked, identity.TokenRevoked, identity.ClientRevoked,
                   identity.StaffLinked)),
        TopicSpec("experts.events", "expert id", 6, "experts", (experts.ExpertChanged,)),
        TopicSpec("dispatch.events", "dispatch id", 6, "dispatch",
                  (dispatch.DispatchStatusChanged, dispatch.DispatchCompleted, dispatch.FraudConfirmed,
                   dispatch.RefundSettled)),
        TopicSpec("dispatch.history", "business id", 6, "dispatch",
                  (history.ConsultationLogged, history.HistorySharingGranted, history.HistorySharingWithdrawn,
                   history.FollowUpDue)),
        TopicSpec("budget.commands", "frame id (single writer per frame)", 6, "budget",
                  (budget.ReserveBudget, budget.CommitBudget, budget.ReleaseBudget, budget.CreditRefund)),
        TopicSpec("budget.events", "frame id", 6, "budget",
                  (budget.FrameAllocated, budget.ShareChanged, budget.BudgetReserved, budget.BudgetRefused,
                   budget.BudgetCommitted, budget.BudgetReleased, budget.BudgetRefunded, budget.FrameClosed)),
        TopicSpec("ratings.events", "expert id", 6, "ratings",
                  (ratings.RatingOwed, ratings.RatingGiven, ratings.ExpertRadarUpdated, ratings.ExpertClassified)),
        TopicSpec("notifications.commands", "recipient id", 6, "notifications", (notifications.Notify,)),
        TopicSpec("recommend.events", "programme id", 6, "recommend", (recommend.ProgrammeAdded, recommend.InteractionRecorded,
                   recommend.ApplicationSubmitted, recommend.ApplicationReturned, recommend.ApplicationAccepted)),
        TopicSpec("community.events", "thread id (community) / posting id (matching) / order id (joint orders)", 6, "community",
                  (community.ThreadOpened, community.CommunityReplyPosted, community.AnswerAccepted,
                   community.ContentModerated, community.AbuseReported, community.ReportClosed,
                   community.PostingPublished, community.PostingClosed, community.InterestExpressed,
                   community.MatchConsented, community.MatchConnected, community.MatchWithdrawn,
                   community.JointOrderPosted, community.JointOrderApplied, community.JointOrderAwarded)),
    )
}


def message_types() -> dict[str, type[Message]]:
    """message_type -> model, over every topic."""
    return {m.message_type: m for spec in TOPICS.values() for m in spec.models}


def model_for(message_type: str) -> type[Message] | None:
    return message_types().get(message_type)


def topic_of(model: type[Message]) -> TopicSpec:
    spec = TOPICS[model.topic]
    if model not in spec.models:
        raise LookupError(f"{model.__name__} is not registered on {spec.name}")
    return spec

"""Commands to the notifications service on `notifications.commands` (key: recipient account id)."""
from typing import ClassVar, Literal

from pydantic import Field

from contracts.envelope import Message

TOPIC = "notifications.commands"


class Notify(Message):
    """Put a message in a user's inbox, or in the inbox of each person of a party (and send it on their channels)."""

    message_type: ClassVar[str] = "notifications.Notify"
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "recipient_id"

    notification_id: str = Field(description="idempotency key")
    recipient_id: str
    recipient_kind: Literal["account", "business", "expert", "organisation", "bureau"] = Field(
        default="account", description="what recipient_id names: an account, or a party whose people (R-NOT-03) "
                                       "notifications knows from identity's and experts' events")
    template: str = Field(description="template name, e.g. dispatch_status, programme_recommended")
    params: dict[str, str] = Field(default_factory=dict)

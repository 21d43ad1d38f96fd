"""Commands to the notifications service on `notifications.commands` (key: recipient account id)."""
from typing import ClassVar

from pydantic import Field

from contracts.envelope import Message

TOPIC = "notifications.commands"


class Notify(Message):
    """Put a message in a user's inbox (and e-mail it if they have an address and allow it)."""

    message_type: ClassVar[str] = "notifications.Notify"
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "recipient_id"

    notification_id: str = Field(description="idempotency key")
    recipient_id: str
    template: str = Field(description="template name, e.g. dispatch_status, programme_recommended")
    params: dict[str, str] = Field(default_factory=dict)

"""Events published by the identity service on `identity.events` (key: account / business / org id)."""
from typing import ClassVar

from pydantic import Field

from contracts.envelope import Message

TOPIC = "identity.events"


class BusinessRegistered(Message):
    """A business entered its once-only basic data (R-ID-03); corporate number checked per R-ID-02."""

    message_type: ClassVar[str] = "identity.BusinessRegistered"
    version: ClassVar[int] = 1
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "business_id"

    business_id: str
    corporate_number: str | None = Field(default=None, description="13 digits; None for sole proprietors and founders")
    name: str
    prefecture: str
    industry: str
    employees: int = Field(ge=0)


class AccountRevoked(Message):
    """Forced exit (R-ID-06): every service stops acting for this account."""

    message_type: ClassVar[str] = "identity.AccountRevoked"
    version: ClassVar[int] = 1
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "account_id"

    account_id: str
    reason: str


class AccountRegistered(Message):
    """A person registered under their real name (R-ID-01); one account for every service (SSO)."""

    message_type: ClassVar[str] = "identity.AccountRegistered"
    version: ClassVar[int] = 1
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "account_id"

    account_id: str
    kind: str = Field(description="business, founder, expert, institution, bureau, agency or operator")
    real_name: str


class ClientRegistered(Message):
    """An external private service joined as an OAuth client with these scopes (R-ID-05)."""

    message_type: ClassVar[str] = "identity.ClientRegistered"
    version: ClassVar[int] = 1
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "client_id"

    client_id: str
    name: str
    scopes: list[str]
    confidential: bool

"""Events published by the identity service on `identity.events` (key: account / business / org id)."""
from typing import ClassVar

from pydantic import BaseModel, Field

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
    email: str | None = Field(default=None, description="the address identity mails; notifications' default for "
                                                        "the account until its holder sets another (R-NOT-03)")
    bureau_id: str | None = Field(default=None, description="the block a bureau account acts for (R-PF-05)")


class StaffLinked(Message):
    """An institution-staff account now acts for this organisation (and no longer for the one it had before)."""

    message_type: ClassVar[str] = "identity.StaffLinked"
    version: ClassVar[int] = 1
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "account_id"

    account_id: str
    org_id: str
    previous_org_id: str | None = None


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


class OrganisationRegistered(Message):
    """A support institution, other body or individual joined the portal as an organisation."""

    message_type: ClassVar[str] = "identity.OrganisationRegistered"
    version: ClassVar[int] = 1
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "org_id"

    org_id: str
    name: str
    kind: str = Field(description="institution, body or individual")
    institution_type: int | None = Field(default=None, ge=1, le=12,
                                         description="①–⑫ when dispatch-capable (R-PF-01), else None")
    prefecture: str | None = None
    certified: bool | None = Field(default=None, description="a certified support institution (認定経営革新等支援機関, "
                                                             "R-POR-07); None from producers before the finder")
    specialities: list[str] = Field(default_factory=list, description="fields it supports (contracts.vocab.EXPERT_FIELDS)")


class PlatformMember(BaseModel):
    org_id: str
    member_role: str = Field(description="contracts.vocab.MemberRole: representative, dispatch_member, institution, body, individual")


class PlatformRegistered(Message):
    """A regional platform registered (or renewed) for a fiscal year (R-PF-01..03), with its members' roles."""

    message_type: ClassVar[str] = "identity.PlatformRegistered"
    version: ClassVar[int] = 1
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "platform_id"

    platform_id: str
    name: str
    fiscal_year: int
    bureau_id: str = Field(description="the regional bureau the platform belongs to")
    representative_id: str
    members: list[PlatformMember]
    area_prefectures: list[str] = Field(default_factory=list, description="the support area's prefectures (R-POR-07)")
    area_municipalities: list[str] = Field(default_factory=list,
                                           description="municipalities within them, if the area is narrower, "
                                                       "each written with its prefecture (e.g. 鳥取県米子市)")


class PlatformAreaChanged(Message):
    """A platform's support area was set or changed (R-POR-07: published in the directory; joint orders are open to
    the businesses of this area, R-POR-04)."""

    message_type: ClassVar[str] = "identity.PlatformAreaChanged"
    version: ClassVar[int] = 1
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "platform_id"

    platform_id: str
    prefectures: list[str]
    municipalities: list[str] = Field(default_factory=list)


class MembershipChanged(Message):
    """A member joined a platform, changed role, or left (R-PF-03/04); `member_role` None means it left."""

    message_type: ClassVar[str] = "identity.MembershipChanged"
    version: ClassVar[int] = 1
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "platform_id"

    platform_id: str
    org_id: str
    member_role: str | None


class FinancialPeriod(BaseModel):
    """One fiscal year's figures (R-ANC-04), in yen."""

    fiscal_year: int
    sales: int | None = None
    operating_profit: int | None = None
    ordinary_profit: int | None = None
    net_income: int | None = None
    total_assets: int | None = None


class BusinessProfileChanged(Message):
    """A business changed its once-only profile (R-ID-03); `version` counts the changes, `changed` names the fields."""

    message_type: ClassVar[str] = "identity.BusinessProfileChanged"
    version: ClassVar[int] = 1
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "business_id"

    business_id: str
    profile_version: int = Field(ge=1)
    changed: list[str]
    corporate_number: str | None = None
    name: str
    prefecture: str
    industry: str
    employees: int = Field(ge=0)
    capital: int | None = None
    financials: list[FinancialPeriod] = Field(default_factory=list)


class ConsentGranted(Message):
    """A business lets an external client read its profile for prefill (R-ID-04)."""

    message_type: ClassVar[str] = "identity.ConsentGranted"
    version: ClassVar[int] = 1
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "business_id"

    business_id: str
    client_id: str


class ConsentWithdrawn(Message):
    """A business withdrew a client's prefill consent (R-ID-04); the client gets nothing from now on."""

    message_type: ClassVar[str] = "identity.ConsentWithdrawn"
    version: ClassVar[int] = 1
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "business_id"

    business_id: str
    client_id: str


class BindingChanged(Message):
    """An account's binding to a business changed (R-ID-07): `role` prime (proven for the corporate number, or the
    registrant of a sole proprietor / founder), member (invited by the prime), or None when the binding ended."""

    message_type: ClassVar[str] = "identity.BindingChanged"
    version: ClassVar[int] = 1
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "business_id"

    business_id: str
    account_id: str
    role: str | None = Field(description="prime, member, or None: the account no longer acts for the business")


class DelegationGranted(Message):
    """A business let an institution's staff act for it (代行, R-ID-08) within `scopes` until `expires_at`."""

    message_type: ClassVar[str] = "identity.DelegationGranted"
    version: ClassVar[int] = 1
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "business_id"

    delegation_id: str
    business_id: str
    org_id: str
    scopes: list[str] = Field(description="contracts.vocab.DELEGATION_SCOPES")
    expires_at: int = Field(description="Unix time (seconds)")


class DelegationRevoked(Message):
    """The business (or an operator) ended a delegation before its expiry (R-ID-08, R-ID-09)."""

    message_type: ClassVar[str] = "identity.DelegationRevoked"
    version: ClassVar[int] = 1
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "business_id"

    delegation_id: str
    business_id: str
    org_id: str


class TokenRevoked(Message):
    """An access token stops working everywhere before its expiry (R-ID-09): revoked by its client (RFC 7009), or
    because its refresh family or authorization code was replayed."""

    message_type: ClassVar[str] = "identity.TokenRevoked"
    version: ClassVar[int] = 1
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "jti"

    jti: str
    expires_at: int = Field(description="Unix time after which the token is dead anyway (the deny entry may go)")
    reason: str


class ClientRevoked(Message):
    """An OAuth client was revoked (R-ID-05, R-ID-09): every token issued to it stops working everywhere."""

    message_type: ClassVar[str] = "identity.ClientRevoked"
    version: ClassVar[int] = 1
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "client_id"

    client_id: str
    reason: str

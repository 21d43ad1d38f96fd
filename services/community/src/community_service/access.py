"""Who the caller is in the community: the party it acts as (R-ID-07: a business from the token, never from what is
typed), whether it moderates, and which side of a match it is."""
from __future__ import annotations

from fastapi import Request

from community_service.domain import MODERATOR_ROLES, Party, is_party
from servicekit.auth import Principal
from servicekit.refusals import Rejected

ANYONE = ("business", "founder", "expert", "institution", "bureau", "agency", "operator")
MEMBERS = ("business", "founder", "expert")  # who asks and answers
MODERATORS = tuple(sorted(MODERATOR_ROLES))


def svc_of(request: Request):
    return request.app.state.service


def party_of(p: Principal, business_id: str | None = None) -> Party:
    """A business account takes part as its business; an expert or a founder as its own account."""
    if "business" in p.roles:
        return Party("business", p.own_business(business_id))
    if p.roles & {"expert", "founder"}:
        return Party("account", p.subject)
    raise Rejected("forbidden", "Not a community member", "Businesses, founders and experts take part.")


def is_moderator(p: Principal) -> bool:
    return bool(p.roles & MODERATOR_ROLES)


def acts_as(p: Principal, party: dict | Party | None) -> bool:
    if party is None:
        return False
    party = party if isinstance(party, Party) else Party.of(party)
    return is_party(party, p.subject, p.businesses)


def recipient(party: dict) -> tuple[str, str]:
    """Whom a notice about a party goes to: every person of a business (notifications knows them from identity), or
    the account itself."""
    return (party["id"], "business") if party["kind"] == "business" else (party["id"], "account")

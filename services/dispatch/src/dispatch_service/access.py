"""Who may see and act on a dispatch: the parties of a dispatch and the business a caller acts for (R-ID-07/08)."""
from __future__ import annotations

from datetime import datetime

from fastapi import Request

from dispatch_service.store import Store, now
from servicekit.auth import Principal
from servicekit.refusals import Rejected

ANY_PARTY = ("institution", "business", "founder", "expert", "agency", "operator")


def store_of(request: Request) -> Store:
    return request.app.state.store


def clock() -> datetime:
    return now()


def org_ids(p: Principal) -> set[str]:
    return {o.get("org_id") for o in p.orgs}


def is_agency(p: Principal) -> bool:
    return bool(p.roles & {"agency", "operator"})


def must(ok: bool, detail: str) -> None:
    if not ok:
        raise Rejected("forbidden", "Forbidden", detail)


def party(p: Principal, doc: dict) -> set[str]:
    """Which parties of the dispatch the caller is."""
    out = set()
    if "institution" in p.roles and (doc.get("institution_id") in org_ids(p)
                                     or p.delegation(doc.get("business_id"), "dispatch:read")):
        out.add("institution")
    if p.acts_for(doc.get("business_id")):  # its prime or a member account (R-ID-07); never by a typed-in id
        out.add("business")
    if p.subject == doc.get("expert_account_id"):
        out.add("expert")
    if is_agency(p):
        out.add("agency")
    return out


async def load(request: Request, dispatch_id: str, p: Principal, *as_party: str) -> dict:
    """The dispatch if the caller is one of its parties (404 otherwise: its existence is not disclosed), and, when
    `as_party` is given, one of those parties (403)."""
    doc = await store_of(request).get(dispatch_id)
    if doc is None or not party(p, doc):
        raise Rejected("not_found", "Not found", f"No dispatch request {dispatch_id} visible to you.")
    if as_party:
        must(bool(party(p, doc) & set(as_party)), f"Only the {' or the '.join(as_party)} may do this.")
    return doc


def public(doc: dict) -> dict:
    return {"dispatch_id": doc["_id"], **{k: v for k, v in doc.items() if k not in ("_id", "_outbox", "_seen")}}

"""HTTP handlers of matching (R-POR-03): needs and offers, interest, mutual consent before contact details show."""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from community_service import domain, store
from community_service.access import ANYONE, acts_as, party_of, recipient, svc_of
from contracts.events.community import (InterestExpressed, MatchConnected, MatchConsented, MatchWithdrawn,
                                        PostingClosed, PostingPublished)
from contracts.events.notifications import Notify
from servicekit.auth import Principal, require
from servicekit.refusals import Rejected

router = APIRouter(tags=["matching"])
NO_OUTBOX = {"_outbox": 0, "_seen": 0}
POSTERS = ("business", "expert")


class Contact(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    email: str = Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")
    phone: str | None = Field(default=None, max_length=30)


class PostingIn(BaseModel):
    direction: Literal["need", "offer"]
    kind: Literal["sales_channel", "partner", "successor", "expert_help"]
    title: str = Field(min_length=3, max_length=120)
    body: str = Field(min_length=1, max_length=5000)
    region: str = Field(min_length=1, max_length=40, description="e.g. a prefecture: 福岡県")
    industry: str = Field(min_length=1, max_length=40, description="e.g. 製造業")
    contact: Contact = Field(description="shown only to a party both sides consented to connect with")
    business_id: str | None = Field(default=None, description="only if you act for several businesses")


class PostingOut(BaseModel):
    posting_id: str
    direction: str
    kind: str
    title: str
    body: str
    region: str
    industry: str
    owner_kind: Literal["business", "expert"]
    status: Literal["open", "closed"]
    created_at: datetime
    mine: bool = False
    contact: Contact | None = Field(default=None, description="your own contact, on your own posting only")


class PostingPage(BaseModel):
    items: list[PostingOut]
    next_after: str | None = None


class InterestIn(BaseModel):
    message: str = Field(min_length=1, max_length=2000)
    contact: Contact = Field(description="shown to the posting's owner only once both sides consented")
    business_id: str | None = None


class MatchOut(BaseModel):
    match_id: str
    posting_id: str
    status: Literal["interested", "connected", "withdrawn"]
    side: Literal["owner", "interested"]
    message: str
    interested_kind: Literal["business", "expert"]
    consent: dict[str, bool]
    withdrawn_by: str | None = None
    created_at: datetime
    owner_contact: Contact | None = Field(default=None, description="only once both consented")
    interested_contact: Contact | None = Field(default=None, description="only once both consented")


class MatchPage(BaseModel):
    items: list[MatchOut]
    next_after: str | None = None


def _owner_kind(party: domain.Party) -> str:
    return "business" if party.kind == "business" else "expert"


def _posting_out(doc: dict, p: Principal) -> PostingOut:
    mine = acts_as(p, doc["owner"])
    return PostingOut(posting_id=doc["_id"], **{k: doc[k] for k in ("direction", "kind", "title", "body", "region",
                                                                     "industry", "owner_kind", "status", "created_at")},
                      mine=mine, contact=doc["contact"] if mine else None)


def _side(p: Principal, match: dict) -> str | None:
    if acts_as(p, match["owner"]):
        return "owner"
    if acts_as(p, match["interested"]):
        return "interested"
    return None


def _match_out(doc: dict, side: str) -> MatchOut:
    shown = domain.contacts_shown(doc, side)
    return MatchOut(match_id=doc["_id"], posting_id=doc["posting_id"], status=doc["status"], side=side,
                    message=doc["message"], interested_kind=doc["interested_kind"], consent=doc["consent"],
                    withdrawn_by=doc.get("withdrawn_by"), created_at=doc["created_at"],
                    owner_contact=doc["owner_contact"] if shown else None,
                    interested_contact=doc["interested_contact"] if shown else None)


def _notify(svc, nid: str, party: dict, template: str, params: dict[str, str], actor: str) -> dict:
    rid, kind = recipient(party)
    return svc.event(Notify(notification_id=nid, recipient_id=rid, recipient_kind=kind, template=template,
                            params=params), actor=actor)


def _mine(party: domain.Party, what: str) -> str:
    """The facet of a party's own postings or the matches it is interested in."""
    return f"{party.kind}={party.id};{what}"


async def _posting(svc, posting_id: str) -> dict:
    doc = await svc.db.postings.find_one({"_id": posting_id}, NO_OUTBOX)
    if doc is None:
        raise Rejected("not_found", "Not found", f"No posting {posting_id}.")
    return doc


async def _match(svc, p: Principal, match_id: str) -> tuple[dict, str]:
    """The match if the caller is one of its sides; "not found" to everyone else (it is not disclosed)."""
    doc = await svc.db.matches.find_one({"_id": match_id}, NO_OUTBOX)
    side = _side(p, doc) if doc else None
    if side is None:
        raise Rejected("not_found", "Not found", f"No match {match_id} of yours.")
    return doc, side


@router.post("/postings", response_model=PostingOut, status_code=201,
             summary="Post a need or an offer: sales channels, partners, successors (事業承継), expert help (R-POR-03)")
async def publish(body: PostingIn, request: Request, p: Principal = Depends(require(*POSTERS))) -> PostingOut:
    svc = svc_of(request)
    party = party_of(p, body.business_id)
    owner_kind = _owner_kind(party)
    region, industry = body.region.strip(), body.industry.strip()
    domain.check_posting(body.direction, body.kind, owner_kind, region, industry)
    at, pid = store.now(), store.new_id("pg")
    doc = {"_id": pid, "direction": body.direction, "kind": body.kind, "title": body.title.strip(),
           "body": body.body.strip(), "region": region, "industry": industry, "owner": party.doc(),
           "owner_kind": owner_kind, "owner_account_id": p.subject, "contact": body.contact.model_dump(),
           "status": domain.OPEN, "created_at": at, "list_key": domain.newest_first(at)}
    event = svc.event(PostingPublished(posting_id=pid, direction=body.direction, kind=body.kind, region=region,
                                       industry=industry, owner_kind=owner_kind, owner_id=party.id,
                                       title=doc["title"]), actor=p.subject)
    await svc.insert(svc.db.postings, doc, events=[event])
    await store.put_index(svc.db.posting_index, domain.index_ids(domain.posting_facets(doc), doc["list_key"], pid), pid)
    await store.put_index(svc.db.party_index, domain.index_ids([_mine(party, "postings")], doc["list_key"], pid), pid)
    return _posting_out(doc, p)


@router.get("/postings", response_model=PostingPage,
            summary="Search open needs and offers by direction, kind, region and industry, newest first (paged)")
async def search(request: Request, direction: Literal["need", "offer"] | None = None,
                 kind: Literal["sales_channel", "partner", "successor", "expert_help"] | None = None,
                 region: str | None = Query(default=None, max_length=40),
                 industry: str | None = Query(default=None, max_length=40),
                 after: str | None = Query(default=None, description="next_after of the previous page"),
                 limit: int = Query(default=20, ge=1, le=100),
                 p: Principal = Depends(require(*ANYONE))) -> PostingPage:
    svc = svc_of(request)
    prefix = domain.facet({"direction": direction, "kind": kind, "region": region, "industry": industry}) + "|"
    entries, nxt = await store.page(svc.db.posting_index, prefix, after=after, limit=limit)
    docs = await store.by_ids(svc.db.postings, [e["item"] for e in entries], NO_OUTBOX)
    return PostingPage(items=[_posting_out(d, p) for d in docs if d["status"] == domain.OPEN], next_after=nxt)


@router.get("/postings/{posting_id}", response_model=PostingOut, summary="A need or an offer (never its contact details)")
async def get_posting(posting_id: str, request: Request, p: Principal = Depends(require(*ANYONE))) -> PostingOut:
    return _posting_out(await _posting(svc_of(request), posting_id), p)


@router.post("/postings/{posting_id}/close", response_model=PostingOut, summary="The owner closes its posting")
async def close(posting_id: str, request: Request, p: Principal = Depends(require(*POSTERS))) -> PostingOut:
    svc = svc_of(request)
    doc = await _posting(svc, posting_id)
    if not acts_as(p, doc["owner"]):
        raise Rejected("forbidden", "Not your posting", "Only the posting's owner closes it.")
    if doc["status"] == domain.OPEN:
        await svc.write(svc.db.postings, {"_id": posting_id, "status": domain.OPEN}, {"$set": {"status": domain.CLOSED}},
                        events=[svc.event(PostingClosed(posting_id=posting_id), actor=p.subject)])
        await store.drop_index(svc.db.posting_index,
                               domain.index_ids(domain.posting_facets(doc), doc["list_key"], posting_id))
    return _posting_out({**doc, "status": domain.CLOSED}, p)


@router.post("/postings/{posting_id}/interests", response_model=MatchOut, status_code=201,
             summary="Express interest in a posting; contact details stay hidden until both sides consent")
async def interest(posting_id: str, body: InterestIn, request: Request,
                   p: Principal = Depends(require(*POSTERS))) -> MatchOut:
    svc = svc_of(request)
    posting = await _posting(svc, posting_id)
    party = party_of(p, body.business_id)
    owner = domain.Party.of(posting["owner"])
    fields = domain.express_interest(posting, owner, party)
    mid = domain.match_id(posting_id, party)
    at = store.now()
    existing = await svc.db.matches.find_one({"_id": mid}, NO_OUTBOX)
    if existing is not None and existing["status"] != domain.WITHDRAWN:
        raise Rejected("conflict", "Already interested", f"You already expressed interest: match {mid}.", match_id=mid)
    events = [svc.event(InterestExpressed(posting_id=posting_id, match_id=mid, owner_kind=posting["owner_kind"],
                                          owner_id=owner.id, interested_kind=_owner_kind(party),
                                          interested_id=party.id), actor=p.subject),
              _notify(svc, f"match-interest:{mid}:{at.timestamp()}", posting["owner"], "match_interest",
                      {"posting_id": posting_id, "title": posting["title"], "match_id": mid}, p.subject)]
    doc = {"_id": mid, "posting_id": posting_id, **fields, "owner": posting["owner"], "interested": party.doc(),
           "interested_kind": _owner_kind(party), "interested_account_id": p.subject, "message": body.message.strip(),
           "owner_contact": posting["contact"], "interested_contact": body.contact.model_dump(), "created_at": at,
           "list_key": existing["list_key"] if existing else domain.newest_first(at)}
    if existing is None:
        await svc.insert(svc.db.matches, doc, events=events)
        await store.put_index(svc.db.party_index, domain.index_ids([_mine(party, "matches")], doc["list_key"], mid), mid)
    else:  # interest again after a withdrawal: a fresh start, nobody has consented
        res = await svc.write(svc.db.matches, {"_id": mid, "status": domain.WITHDRAWN},
                              {"$set": {k: v for k, v in doc.items() if k != "_id"} | domain.again(existing)},
                              events=events)
        if res.modified_count != 1:
            raise Rejected("conflict", "Changed meanwhile", "This match just changed; reload it.")
    return _match_out(doc, "interested")


@router.get("/postings/{posting_id}/interests", response_model=MatchPage,
            summary="The owner's list of who is interested in its posting (paged; contacts only once connected)")
async def interests(posting_id: str, request: Request, after: str | None = Query(default=None),
                    limit: int = Query(default=50, ge=1, le=200),
                    p: Principal = Depends(require(*POSTERS))) -> MatchPage:
    svc = svc_of(request)
    posting = await _posting(svc, posting_id)
    if not acts_as(p, posting["owner"]):
        raise Rejected("forbidden", "Not your posting", "Only the posting's owner sees who is interested.")
    docs, nxt = await store.page(svc.db.matches, posting_id + ".", after=after, limit=limit, projection=NO_OUTBOX)
    return MatchPage(items=[_match_out(d, "owner") for d in docs], next_after=nxt)


@router.get("/matches/{match_id}", response_model=MatchOut,
            summary="A match, for its two sides only; contact details of both once both consented (R-POR-03)")
async def get_match(match_id: str, request: Request, p: Principal = Depends(require(*POSTERS))) -> MatchOut:
    doc, side = await _match(svc_of(request), p, match_id)
    return _match_out(doc, side)


@router.post("/matches/{match_id}/consent", response_model=MatchOut,
             summary="Consent to share contact details; once both sides have, each sees the other's")
async def consent(match_id: str, request: Request, p: Principal = Depends(require(*POSTERS))) -> MatchOut:
    svc = svc_of(request)
    doc, side = await _match(svc, p, match_id)
    fields, connected = domain.consent(doc, side)
    if not fields:
        return _match_out(doc, side)
    events = [svc.event(MatchConsented(posting_id=doc["posting_id"], match_id=match_id, side=side), actor=p.subject)]
    if connected:
        owner, other = doc["owner"], doc["interested"]
        events.append(svc.event(MatchConnected(posting_id=doc["posting_id"], match_id=match_id,
                                               owner_kind="business" if owner["kind"] == "business" else "expert",
                                               owner_id=owner["id"], interested_kind=doc["interested_kind"],
                                               interested_id=other["id"]), actor=p.subject))
        for who, party in (("owner", owner), ("interested", other)):
            events.append(_notify(svc, f"match-connected:{match_id}:{who}", party, "match_connected",
                                  {"posting_id": doc["posting_id"], "match_id": match_id}, p.subject))
    res = await svc.write(svc.db.matches, {"_id": match_id, "status": domain.INTERESTED, f"consent.{side}": False},
                          {"$set": fields}, events=events)
    if res.modified_count != 1:
        raise Rejected("conflict", "Changed meanwhile", "This match just changed; reload it.")
    consent_now = {**doc["consent"], side: True}
    return _match_out({**doc, "consent": consent_now, "status": fields.get("status", doc["status"])}, side)


@router.post("/matches/{match_id}/withdraw", response_model=MatchOut,
             summary="Withdraw before both sides consented; no contact details were shown")
async def withdraw(match_id: str, request: Request, p: Principal = Depends(require(*POSTERS))) -> MatchOut:
    svc = svc_of(request)
    doc, side = await _match(svc, p, match_id)
    fields = domain.withdraw(doc, side)
    res = await svc.write(svc.db.matches, {"_id": match_id, "status": domain.INTERESTED}, {"$set": fields},
                          events=[svc.event(MatchWithdrawn(posting_id=doc["posting_id"], match_id=match_id, side=side),
                                            actor=p.subject)])
    if res.modified_count != 1:
        raise Rejected("conflict", "Changed meanwhile", "This match just changed; reload it.")
    return _match_out({**doc, **fields}, side)


@router.get("/me/postings", response_model=PostingPage, summary="Your own needs and offers, newest first (paged)")
async def my_postings(request: Request, business_id: str | None = Query(default=None, max_length=100),
                      after: str | None = Query(default=None), limit: int = Query(default=20, ge=1, le=100),
                      p: Principal = Depends(require(*POSTERS))) -> PostingPage:
    svc = svc_of(request)
    prefix = _mine(party_of(p, business_id), "postings") + "|"
    entries, nxt = await store.page(svc.db.party_index, prefix, after=after, limit=limit)
    docs = await store.by_ids(svc.db.postings, [e["item"] for e in entries], NO_OUTBOX)
    return PostingPage(items=[_posting_out(d, p) for d in docs], next_after=nxt)


@router.get("/me/matches", response_model=MatchPage,
            summary="The postings you expressed interest in, as matches, newest first (paged)")
async def my_matches(request: Request, business_id: str | None = Query(default=None, max_length=100),
                     after: str | None = Query(default=None), limit: int = Query(default=20, ge=1, le=100),
                     p: Principal = Depends(require(*POSTERS))) -> MatchPage:
    svc = svc_of(request)
    prefix = _mine(party_of(p, business_id), "matches") + "|"
    entries, nxt = await store.page(svc.db.party_index, prefix, after=after, limit=limit)
    docs = await store.by_ids(svc.db.matches, [e["item"] for e in entries], NO_OUTBOX)
    return MatchPage(items=[_match_out(d, "interested") for d in docs], next_after=nxt)

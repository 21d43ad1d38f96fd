"""HTTP handlers of the community (R-POR-02): threads, answers, marks, mentors, moderation and abuse reports."""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from community_service import domain, store
from community_service.access import ANYONE, MEMBERS, MODERATORS, acts_as, is_moderator, party_of, recipient, svc_of
from contracts.events.community import (AbuseReported, AnswerAccepted, CommunityReplyPosted, ContentModerated,
                                        ReportClosed, ThreadOpened)
from contracts.events.notifications import Notify
from servicekit.auth import Principal, require
from servicekit.refusals import Rejected
from servicekit.store import record_audit

router = APIRouter(tags=["community"])
NO_OUTBOX = {"_outbox": 0, "_seen": 0}


class Moderation(BaseModel):
    status: Literal["visible", "held", "hidden"]
    action: Literal["hold", "hide", "restore"]
    reason: str
    at: datetime


class PartyOut(BaseModel):
    kind: Literal["business", "account"]
    id: str


class ThreadIn(BaseModel):
    category: str = Field(description=f"one of: {', '.join(domain.CATEGORIES)}")
    title: str = Field(max_length=domain.TITLE_MAX * 2)
    body: str = Field(max_length=domain.BODY_MAX * 2)
    business_id: str | None = Field(default=None, description="only if you act for several businesses")


class ThreadOut(BaseModel):
    thread_id: str
    category: str
    status: Literal["visible", "held", "hidden"]
    created_at: datetime
    title: str | None = Field(default=None, description="None when held or hidden (except for its author and the agency)")
    body: str | None = None
    author_kind: str | None = None
    author_account_id: str | None = None
    party: PartyOut | None = None
    accepted_post_id: str | None = None
    replies: int = 0
    moderation: Moderation | None = Field(default=None, description="the latest moderation, for its author and the agency")


class ThreadPage(BaseModel):
    items: list[ThreadOut]
    next_after: str | None = Field(default=None, description="cursor of the next page; None on the last")


class PostIn(BaseModel):
    body: str = Field(max_length=domain.BODY_MAX * 2)
    business_id: str | None = None


class PostOut(BaseModel):
    post_id: str
    thread_id: str
    status: Literal["visible", "held", "hidden"]
    created_at: datetime
    body: str | None = None
    author_kind: str | None = None
    author_account_id: str | None = None
    party: PartyOut | None = None
    mark: Literal["accepted", "helpful"] | None = None
    moderation: Moderation | None = None


class PostPage(BaseModel):
    items: list[PostOut]
    next_after: str | None = None


class MarkIn(BaseModel):
    mark: Literal["accepted", "helpful"]


class ModerationIn(BaseModel):
    action: Literal["hold", "hide", "restore"]
    reason: str = Field(max_length=domain.REASON_MAX * 2, description="always given; shown to the author")


class ReportIn(BaseModel):
    reason: str = Field(max_length=domain.REASON_MAX * 2)
    post_id: str | None = Field(default=None, description="the post reported; the thread itself if not given")


class ReportOut(BaseModel):
    report_id: str
    thread_id: str
    target_kind: Literal["thread", "post"]
    target_id: str
    reason: str
    status: Literal["open", "resolved", "dismissed"]
    at: datetime
    reporter_account_id: str | None = Field(default=None, description="for the agency only")


class ReportPage(BaseModel):
    items: list[ReportOut]
    next_after: str | None = None


class DismissIn(BaseModel):
    reason: str = Field(max_length=domain.REASON_MAX * 2)


class MentorIn(BaseModel):
    mentor: bool = Field(description="a business account offers to answer as a senior owner (先輩経営者)")
    introduction: str | None = Field(default=None, max_length=1000)


class MentorOut(BaseModel):
    account_id: str
    mentor: bool
    introduction: str | None = None


# --- helpers -----------------------------------------------------------------------------------------------------------
def _thread_out(doc: dict, p: Principal) -> ThreadOut:
    shown = domain.shown({**doc, "thread_id": doc["_id"]}, author=acts_as(p, doc.get("party")), moderator=is_moderator(p))
    return ThreadOut(**shown)


def _post_out(doc: dict, p: Principal) -> PostOut:
    shown = domain.shown({**doc, "post_id": doc["_id"]}, author=acts_as(p, doc.get("party")), moderator=is_moderator(p))
    return PostOut(**shown)


async def _thread(svc, thread_id: str) -> dict:
    doc = await svc.db.threads.find_one({"_id": thread_id}, NO_OUTBOX)
    if doc is None:
        raise Rejected("not_found", "Not found", f"No thread {thread_id}.")
    return doc


async def _post(svc, thread_id: str, post_id: str) -> dict:
    doc = await svc.db.posts.find_one({"_id": post_id}, NO_OUTBOX)
    if doc is None or doc["thread_id"] != thread_id:
        raise Rejected("not_found", "Not found", f"No post {post_id} in thread {thread_id}.")
    return doc


async def _is_mentor(svc, p: Principal) -> bool:
    doc = await svc.db.mentors.find_one({"_id": p.subject}, {"mentor": 1})
    return bool(doc and doc.get("mentor"))


def _notify(svc, notification_id: str, party: dict, template: str, params: dict[str, str], actor: str) -> dict:
    rid, kind = recipient(party)
    return svc.event(Notify(notification_id=notification_id, recipient_id=rid, recipient_kind=kind,
                            template=template, params=params), actor=actor)


# --- threads -----------------------------------------------------------------------------------------------------------
@router.post("/threads", response_model=ThreadOut, status_code=201,
             summary="Ask a question in a category (a business, a senior owner, an expert or a founder; R-POR-02)")
async def open_thread(body: ThreadIn, request: Request, p: Principal = Depends(require(*MEMBERS))) -> ThreadOut:
    svc = svc_of(request)
    party = party_of(p, body.business_id)
    fields = domain.new_thread(body.category, body.title, body.body)
    kind = domain.author_kind(p.roles, await _is_mentor(svc, p))
    at, tid = store.now(), store.new_id("th")
    doc = {"_id": tid, **fields, "author_kind": kind, "author_account_id": p.subject, "party": party.doc(),
           "created_at": at, "list_key": domain.newest_first(at), "accepted_post_id": None, "replies": 0, "moderation": None}
    event = svc.event(ThreadOpened(thread_id=tid, category=fields["category"], author_account_id=p.subject,
                                   author_kind=kind, party_kind=party.kind, party_id=party.id), actor=p.subject)
    await svc.insert(svc.db.threads, doc, events=[event])
    await store.put_index(svc.db.thread_index, domain.index_ids(domain.thread_facets(doc), doc["list_key"], tid), tid)
    return _thread_out(doc, p)


@router.get("/threads", response_model=ThreadPage, summary="Threads in view, newest first, by category (paged)")
async def list_threads(request: Request, category: str | None = Query(default=None),
                       after: str | None = Query(default=None, description="next_after of the previous page"),
                       limit: int = Query(default=20, ge=1, le=100),
                       p: Principal = Depends(require(*ANYONE))) -> ThreadPage:
    svc = svc_of(request)
    if category is not None and category not in domain.CATEGORIES:
        raise Rejected("invalid", "Unknown category", f"Category is one of: {', '.join(domain.CATEGORIES)}.")
    prefix = (f"category={category}" if category else "*") + "|"
    entries, nxt = await store.page(svc.db.thread_index, prefix, after=after, limit=limit)
    docs = await store.by_ids(svc.db.threads, [e["item"] for e in entries], NO_OUTBOX)
    return ThreadPage(items=[_thread_out(d, p) for d in docs if d["status"] == domain.VISIBLE], next_after=nxt)


@router.get("/threads/{thread_id}", response_model=ThreadOut, summary="A thread (held or hidden: its reason to its author)")
async def get_thread(thread_id: str, request: Request, p: Principal = Depends(require(*ANYONE))) -> ThreadOut:
    return _thread_out(await _thread(svc_of(request), thread_id), p)


@router.get("/threads/{thread_id}/posts", response_model=PostPage, summary="A thread's answers and replies, oldest first (paged)")
async def list_posts(thread_id: str, request: Request, after: str | None = Query(default=None),
                     limit: int = Query(default=50, ge=1, le=200),
                     p: Principal = Depends(require(*ANYONE))) -> PostPage:
    svc = svc_of(request)
    thread = await _thread(svc, thread_id)
    docs, nxt = await store.page(svc.db.posts, thread_id + ".", after=after, limit=limit, projection=NO_OUTBOX)
    if thread["status"] != domain.VISIBLE and not (acts_as(p, thread["party"]) or is_moderator(p)):
        docs = [d for d in docs if acts_as(p, d["party"])]  # a thread out of view: only one's own posts
    return PostPage(items=[_post_out(d, p) for d in docs], next_after=nxt)


@router.post("/threads/{thread_id}/posts", response_model=PostOut, status_code=201,
             summary="Answer a question or reply to peers; the thread's author hears of it (R-POR-02)")
async def reply(thread_id: str, body: PostIn, request: Request, p: Principal = Depends(require(*MEMBERS))) -> PostOut:
    svc = svc_of(request)
    thread = await _thread(svc, thread_id)
    party = party_of(p, body.business_id)
    fields = domain.new_post(thread, body.body)
    kind = domain.author_kind(p.roles, await _is_mentor(svc, p))
    at = store.now()
    pid = f"{thread_id}.{at.strftime('%Y%m%d%H%M%S%f')}.{store.new_id('p')[2:10]}"  # oldest first in the thread
    doc = {"_id": pid, "thread_id": thread_id, **fields, "author_kind": kind, "author_account_id": p.subject,
           "party": party.doc(), "created_at": at, "mark": None, "moderation": None}
    events = [svc.event(CommunityReplyPosted(
        thread_id=thread_id, post_id=pid, author_account_id=p.subject, author_kind=kind,
        thread_author_account_id=thread["author_account_id"], thread_party_kind=thread["party"]["kind"],
        thread_party_id=thread["party"]["id"]), actor=p.subject)]
    if domain.Party.of(thread["party"]) != party:  # the asker hears of answers, not of its own replies
        events.append(_notify(svc, f"community-reply:{pid}", thread["party"], "community_reply",
                              {"thread_id": thread_id, "title": thread["title"], "author_kind": kind}, p.subject))
    await svc.insert(svc.db.posts, doc, events=events)
    await svc.db.threads.update_one({"_id": thread_id}, {"$inc": {"replies": 1}})
    return _post_out(doc, p)


@router.post("/threads/{thread_id}/posts/{post_id}/mark", response_model=PostOut,
             summary="The asker marks an answer accepted or helpful (R-POR-02)")
async def mark(thread_id: str, post_id: str, body: MarkIn, request: Request,
               p: Principal = Depends(require(*MEMBERS))) -> PostOut:
    svc = svc_of(request)
    thread = await _thread(svc, thread_id)
    post = await _post(svc, thread_id, post_id)
    domain.may_mark(thread, post, acts_as(p, thread["party"]), body.mark)
    event = svc.event(AnswerAccepted(thread_id=thread_id, post_id=post_id, mark=body.mark,
                                     post_author_account_id=post["author_account_id"]), actor=p.subject)
    if body.mark == "accepted":
        previous = thread.get("accepted_post_id")
        if previous and previous != post_id:  # one accepted answer: the earlier one stays helpful
            await svc.db.posts.update_one({"_id": previous}, {"$set": {"mark": "helpful"}})
        await svc.db.threads.update_one({"_id": thread_id}, {"$set": {"accepted_post_id": post_id}})
    elif thread.get("accepted_post_id") == post_id:
        await svc.db.threads.update_one({"_id": thread_id}, {"$set": {"accepted_post_id": None}})
    await svc.write(svc.db.posts, {"_id": post_id}, {"$set": {"mark": body.mark}}, events=[event])
    return _post_out({**post, "mark": body.mark}, p)


# --- moderation (R-POR-02) ---------------------------------------------------------------------------------------------
async def _close_reports(svc, target_id: str, thread_id: str, outcome: str, reason: str, actor: str) -> None:
    """Every open report of a target leaves the queue once the agency acted on it."""
    async for r in svc.db.reports.find({"_id": {"$gt": target_id + ":r", "$lt": target_id + ":r" + store.UPPER}},
                                       {"status": 1, "queue_id": 1}):
        if r["status"] != "open":
            continue
        event = svc.event(ReportClosed(thread_id=thread_id, report_id=r["_id"], outcome=outcome, reason=reason),
                          actor=actor)
        res = await svc.write(svc.db.reports, {"_id": r["_id"], "status": "open"},
                              {"$set": {"status": outcome, "closed_reason": reason, "closed_at": store.now()}},
                              events=[event])
        if res.modified_count:
            await svc.db.report_queue.delete_one({"_id": r["queue_id"]})


async def _moderate(svc, p: Principal, doc: dict, col, kind: str, thread_id: str, body: ModerationIn) -> dict:
    status, reason = domain.moderate(doc["status"], body.action, body.reason)
    at = store.now()
    moderation = {"status": status, "action": body.action, "reason": reason, "at": at}
    event = svc.event(ContentModerated(thread_id=thread_id, target_kind=kind, target_id=doc["_id"], action=body.action,
                                       status=status, reason=reason, author_account_id=doc["author_account_id"]),
                      actor=p.subject)
    notice = _notify(svc, f"community-moderated:{doc['_id']}:{at.timestamp()}", {"kind": "account",
                     "id": doc["author_account_id"]}, "community_moderated",
                     {"thread_id": thread_id, "target_kind": kind, "action": body.action, "reason": reason}, p.subject)
    res = await svc.write(col, {"_id": doc["_id"], "status": doc["status"]},
                          {"$set": {"status": status, "moderation": moderation},
                           "$push": {"moderation_history": {**moderation, "by": p.subject}}}, events=[event, notice])
    if res.modified_count != 1:
        raise Rejected("conflict", "Changed meanwhile", "This content was just moderated by someone else; reload it.")
    if kind == "thread":
        ids = domain.index_ids(domain.thread_facets(doc), doc["list_key"], doc["_id"])
        if status == domain.VISIBLE:
            await store.put_index(svc.db.thread_index, ids, doc["_id"])
        else:
            await store.drop_index(svc.db.thread_index, ids)
    await _close_reports(svc, doc["_id"], thread_id, "resolved", f"{body.action}: {reason}", p.subject)
    return {**doc, "status": status, "moderation": moderation}


@router.post("/threads/{thread_id}/moderation", response_model=ThreadOut,
             summary="The agency holds, hides or restores a thread, with a reason shown to its author")
async def moderate_thread(thread_id: str, body: ModerationIn, request: Request,
                          p: Principal = Depends(require(*MODERATORS))) -> ThreadOut:
    svc = svc_of(request)
    doc = await _thread(svc, thread_id)
    return _thread_out(await _moderate(svc, p, doc, svc.db.threads, "thread", thread_id, body), p)


@router.post("/threads/{thread_id}/posts/{post_id}/moderation", response_model=PostOut,
             summary="The agency holds, hides or restores a post, with a reason shown to its author")
async def moderate_post(thread_id: str, post_id: str, body: ModerationIn, request: Request,
                        p: Principal = Depends(require(*MODERATORS))) -> PostOut:
    svc = svc_of(request)
    doc = await _post(svc, thread_id, post_id)
    return _post_out(await _moderate(svc, p, doc, svc.db.posts, "post", thread_id, body), p)


@router.post("/threads/{thread_id}/reports", response_model=ReportOut, status_code=201,
             summary="Report abuse in a thread or one of its posts, with a reason (anyone signed in)")
async def report(thread_id: str, body: ReportIn, request: Request, p: Principal = Depends(require(*ANYONE))) -> ReportOut:
    svc = svc_of(request)
    await _thread(svc, thread_id)
    target_kind, target_id = ("post", (await _post(svc, thread_id, body.post_id))["_id"]) if body.post_id \
        else ("thread", thread_id)
    reason = domain.reason_of(body.reason)
    at = store.now()
    rid = f"{target_id}:r{store.new_id('x')[2:14]}"
    queue_id = f"{at.strftime('%Y%m%dT%H%M%S%f')}|{rid}"  # oldest first
    doc = {"_id": rid, "thread_id": thread_id, "target_kind": target_kind, "target_id": target_id, "reason": reason,
           "status": "open", "at": at, "reporter_account_id": p.subject, "queue_id": queue_id}
    event = svc.event(AbuseReported(thread_id=thread_id, report_id=rid, target_kind=target_kind, target_id=target_id,
                                    reason=reason), actor=p.subject)
    await svc.insert(svc.db.reports, doc, events=[event])
    await svc.db.report_queue.insert_one({"_id": queue_id, "item": rid})
    return ReportOut(report_id=rid, **{k: doc[k] for k in ("thread_id", "target_kind", "target_id", "reason",
                                                           "status", "at")})


@router.get("/moderation/reports", response_model=ReportPage,
            summary="The agency's queue of open abuse reports, oldest first (paged)")
async def report_queue(request: Request, after: str | None = Query(default=None),
                       limit: int = Query(default=50, ge=1, le=200),
                       p: Principal = Depends(require(*MODERATORS))) -> ReportPage:
    svc = svc_of(request)
    entries, nxt = await store.page(svc.db.report_queue, "", after=after, limit=limit)
    docs = await store.by_ids(svc.db.reports, [e["item"] for e in entries], NO_OUTBOX)
    return ReportPage(items=[ReportOut(report_id=d["_id"], **{k: d[k] for k in ReportOut.model_fields if k in d})
                             for d in docs if d["status"] == "open"], next_after=nxt)


@router.post("/moderation/reports/{report_id}/dismiss", status_code=204,
             summary="The agency dismisses a report, with a reason")
async def dismiss(report_id: str, body: DismissIn, request: Request,
                  p: Principal = Depends(require(*MODERATORS))) -> Response:
    svc = svc_of(request)
    doc = await svc.db.reports.find_one({"_id": report_id}, NO_OUTBOX)
    if doc is None or doc["status"] != "open":
        raise Rejected("not_found", "No open report", f"No open report {report_id}.")
    reason = domain.reason_of(body.reason)
    event = svc.event(ReportClosed(thread_id=doc["thread_id"], report_id=report_id, outcome="dismissed", reason=reason),
                      actor=p.subject)
    res = await svc.write(svc.db.reports, {"_id": report_id, "status": "open"},
                          {"$set": {"status": "dismissed", "closed_reason": reason, "closed_at": store.now()}},
                          events=[event])
    if res.modified_count:
        await svc.db.report_queue.delete_one({"_id": doc["queue_id"]})
    return Response(status_code=204)


# --- senior owners (先輩経営者) --------------------------------------------------------------------------------------------
@router.get("/mentors/me", response_model=MentorOut, summary="Whether your account answers as a senior owner")
async def my_mentor(request: Request, p: Principal = Depends(require("business"))) -> MentorOut:
    doc = await svc_of(request).db.mentors.find_one({"_id": p.subject}) or {}
    return MentorOut(account_id=p.subject, mentor=bool(doc.get("mentor")), introduction=doc.get("introduction"))


@router.put("/mentors/me", response_model=MentorOut,
            summary="A business account opts in (or out) as a senior owner who answers others' questions")
async def set_mentor(body: MentorIn, request: Request, p: Principal = Depends(require("business"))) -> MentorOut:
    svc = svc_of(request)
    if not p.businesses:
        raise Rejected("forbidden", "No business", "A senior owner runs a business: register yours first.")
    await svc.db.mentors.update_one({"_id": p.subject}, {"$set": {"mentor": body.mentor, "introduction": body.introduction,
                                                                  "at": store.now()}}, upsert=True)
    await record_audit(svc.db, actor=p.subject, action="community.MentorChanged", key=p.subject,
                       payload={"mentor": body.mentor})
    return MentorOut(account_id=p.subject, mentor=body.mentor, introduction=body.introduction)

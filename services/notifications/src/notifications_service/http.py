"""HTTP handlers of the notifications service: inbox, login prompts, contact preferences, delivery status."""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from notifications_service import domain
from notifications_service.store import audit, contact_of, send_out, today_jst
from servicekit import paging
from servicekit.auth import Principal, require
from servicekit.problems import Problem

router = APIRouter()
ANYONE = ("business", "founder", "expert", "institution", "bureau", "agency", "operator")


def _svc(request: Request):
    return request.app.state.service


def _ids(p: Principal) -> list[str]:
    """Who the caller receives for: the account itself and the organisations it acts for."""
    return [p.subject, *[o["org_id"] for o in p.orgs if o.get("org_id")]]


class InboxItem(BaseModel):
    id: str
    recipient_id: str
    template: str
    subject: str
    body: str
    language: str
    at: datetime
    read: bool


@router.get("/inbox", response_model=list[InboxItem], tags=["inbox"],
            summary="The caller's messages, newest first; the header X-Next-Cursor pages on (R-OPS-01)")
async def inbox(request: Request, response: Response, limit: int = Query(50, ge=1, le=paging.MAX_PAGE),
                unread_only: bool = False, cursor: str | None = Query(None, max_length=300),
                p: Principal = Depends(require(*ANYONE))) -> list[InboxItem]:
    filt: dict = {"recipient_id": {"$in": _ids(p)}}
    if unread_only:
        filt["read"] = False
    docs, nxt = await paging.page(_svc(request).db.inbox, filt, limit=limit, cursor=cursor)
    if nxt:
        response.headers["X-Next-Cursor"] = nxt
    return [InboxItem(id=d["_id"], **{k: d[k] for k in InboxItem.model_fields if k != "id"}) for d in docs]


@router.post("/inbox/{item_id}/read", status_code=204, tags=["inbox"], summary="Mark a message read")
async def mark_read(item_id: str, request: Request, p: Principal = Depends(require(*ANYONE))) -> Response:
    res = await _svc(request).db.inbox.update_one({"_id": item_id, "recipient_id": {"$in": _ids(p)}}, {"$set": {"read": True}})
    if res.matched_count != 1:
        raise Problem(404, "No such message", f"You have no message {item_id}.")
    return Response(status_code=204)


class Prompt(BaseModel):
    owed_id: str
    dispatch_id: str
    expert_id: str
    rater_kind: str
    since: datetime
    message: str


@router.get("/prompts", response_model=list[Prompt], tags=["prompts"],
            summary="Pop-ups to show at login: 'please rate' until the rating is given (R-RAT-03, R-NOT-02)")
async def prompts(request: Request, p: Principal = Depends(require(*ANYONE))) -> list[Prompt]:
    svc = _svc(request)
    contact = await contact_of(svc.db, p.subject)
    out = []
    async for d in svc.db.prompts.find({"recipient_id": p.subject, "status": "open"}).sort("since", 1):
        params = {"dispatch_id": d["dispatch_id"], "expert_id": d["expert_id"]}
        _, body, _ = domain.render("rating_owed", params, contact.get("language"))
        out.append(Prompt(owed_id=d["_id"], dispatch_id=d["dispatch_id"], expert_id=d["expert_id"],
                          rater_kind=d["rater_kind"], since=d["since"], message=body))
        # The login is also the moment for the daily reminder e-mail; its key allows one per day.
        await send_out(svc, key=domain.prompt_email_key(d["_id"], today_jst()), recipient_id=p.subject,
                       template="rating_owed", params=params, owed_id=d["_id"], contact=contact)
    return out


class Contact(BaseModel):
    email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)
    language: Literal["ja", "en"] = "ja"
    email_enabled: bool = True


@router.put("/me/contact", response_model=Contact, tags=["preferences"], summary="The caller's e-mail address and language")
async def put_contact(body: Contact, request: Request, p: Principal = Depends(require(*ANYONE))) -> Contact:
    svc = _svc(request)
    update: dict = {"$set": body.model_dump()}
    update["$addToSet" if body.email_enabled else "$pullAll"] = {"channels": "email" if body.email_enabled else ["email"]}
    if body.email:  # a newly given (or confirmed) address resumes e-mail after a bounce (R-NOT-04)
        update["$unset"] = {"paused.email": ""}
    await svc.db.contacts.update_one({"_id": p.subject}, update, upsert=True)
    await audit(svc.db, "notifications.ContactChanged", p.subject, {"language": body.language,
                                                                     "email_enabled": body.email_enabled}, actor=p.subject)
    return body


@router.get("/me/contact", response_model=Contact, tags=["preferences"], summary="The caller's contact preferences")
async def get_contact(request: Request, p: Principal = Depends(require(*ANYONE))) -> Contact:
    doc = await _svc(request).db.contacts.find_one({"_id": p.subject})
    if doc is None:
        return Contact()
    return Contact(**{k: doc[k] for k in Contact.model_fields if k in doc})


class Delivery(BaseModel):
    id: str
    channel: Literal["email", "webpush", "line"] = "email"
    recipient_id: str
    to: str
    subject: str
    template: str
    status: Literal["queued", "sending", "sent", "failed", "cancelled", "bounced", "delayed"]
    next_at: datetime | None = Field(default=None, description="when it may go (quiet hours defer it)")
    attempts: int
    last_error: str | None = None
    created_at: datetime
    sent_at: datetime | None = None
    history: list[dict] = Field(default_factory=list)


@router.get("/deliveries", response_model=list[Delivery], tags=["deliveries"],
            summary="Delivery status per channel, with every attempt: the caller's own; operators may ask for anyone's")
async def deliveries(request: Request, recipient_id: str | None = None, status: str | None = None,
                     channel: Literal["email", "webpush", "line"] | None = None,
                     limit: int = Query(50, ge=1, le=500), p: Principal = Depends(require(*ANYONE))) -> list[Delivery]:
    if recipient_id and recipient_id not in _ids(p) and "operator" not in p.roles:
        raise Problem(403, "Forbidden", "Only operators may see other users' deliveries.")
    filt: dict = {"recipient_id": recipient_id} if recipient_id else ({} if "operator" in p.roles else {"recipient_id": {"$in": _ids(p)}})
    if status:
        filt["status"] = status
    if channel:
        filt["channel"] = channel
    cur = _svc(request).db.deliveries.find(filt).sort("created_at", -1).limit(limit)
    return [Delivery(id=d["_id"], **{k: d.get(k) for k in Delivery.model_fields if k != "id" and k in d}) async for d in cur]

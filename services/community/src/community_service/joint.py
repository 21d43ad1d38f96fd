"""HTTP handlers of regional joint ordering (R-POR-04, 共同受発注): a platform's member institution posts a joint order
split into lots for businesses of its support area; businesses of the area apply for lots; the institution awards
them and every applicant hears the result. The rules are in `domain` (joint ordering section)."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from community_service import domain, store
from community_service.access import ANYONE, svc_of
from contracts.events.community import JointOrderApplied, JointOrderAwarded, JointOrderPosted
from contracts.events.notifications import Notify
from contracts.vocab import Right
from servicekit.auth import Principal, require
from servicekit.refusals import Rejected

router = APIRouter(tags=["joint ordering"])
NO_OUTBOX = {"_outbox": 0, "_seen": 0}
JST = timezone(timedelta(hours=9))


class LotIn(BaseModel):
    title: str = Field(min_length=2, max_length=120)
    description: str = Field(default="", max_length=2000)
    quantity: str = Field(default="", max_length=100, description="e.g. 500 units, 3 months of work")


class OrderIn(BaseModel):
    platform_id: str = Field(min_length=1, max_length=100)
    org_id: str | None = Field(default=None, max_length=100,
                               description="your institution; only if you act for several in the platform")
    title: str = Field(min_length=3, max_length=120)
    description: str = Field(min_length=1, max_length=5000)
    deadline: date = Field(description="the last day (JST) to apply")
    lots: list[LotIn] = Field(min_length=1, max_length=domain.LOTS_MAX)
    area_prefectures: list[str] | None = Field(default=None, max_length=47,
                                               description="part of the platform's support area; omit for all of it")


class Lot(BaseModel):
    lot_id: str
    title: str
    description: str
    quantity: str
    applications: int = 0
    awarded_to: str | None = None


class OrderOut(BaseModel):
    order_id: str
    platform_id: str
    org_id: str
    title: str
    description: str
    deadline: date
    area_prefectures: list[str]
    status: str
    lots: list[Lot]
    created_at: datetime


class OrderPage(BaseModel):
    items: list[OrderOut]
    next_after: str | None = None


class ApplicationIn(BaseModel):
    lot_id: str = Field(min_length=1, max_length=20)
    note: str = Field(default="", max_length=2000, description="what the business offers for the lot")
    business_id: str | None = Field(default=None, description="only if you act for several businesses")


class ApplicationOut(BaseModel):
    application_id: str
    order_id: str
    lot_id: str
    business_id: str
    note: str
    status: str = Field(description="applied | awarded | not_awarded")
    applied_at: datetime


class ApplicationPage(BaseModel):
    items: list[ApplicationOut]
    next_after: str | None = None


class AwardIn(BaseModel):
    awards: dict[str, str] = Field(description="lot id -> the applicant business it goes to; lots left out stay "
                                               "unawarded")


def _today() -> str:
    return datetime.now(JST).date().isoformat()


def _out(doc: dict, counts: dict[str, int] | None = None) -> OrderOut:
    awards = doc.get("awards") or {}
    return OrderOut(order_id=doc["_id"], **{k: doc[k] for k in ("platform_id", "org_id", "title", "description",
                                                                 "deadline", "area_prefectures", "status",
                                                                 "created_at")},
                    lots=[Lot(**lot, applications=(counts or {}).get(lot["lot_id"], 0),
                              awarded_to=awards.get(lot["lot_id"])) for lot in doc["lots"]])


def _app_out(doc: dict, order: dict | None = None) -> ApplicationOut:
    status = "applied"
    if order is not None and order["status"] == domain.ORDER_AWARDED:
        status = "awarded" if (order.get("awards") or {}).get(doc["lot_id"]) == doc["business_id"] else "not_awarded"
    return ApplicationOut(application_id=doc["_id"], **{k: doc[k] for k in ("order_id", "lot_id", "business_id",
                                                                            "note")},
                          status=status, applied_at=doc["applied_at"])


def _posting_org(p: Principal, platform_id: str, asked: str | None) -> str:
    """R-PF-04: the institution acts for an organisation holding the joint-activities right in this platform."""
    orgs = p.orgs_with(Right.JOINT_ACTIVITIES, platform_id)
    if asked is not None:
        if asked not in orgs:
            raise Rejected("forbidden", "Forbidden", f"You do not act for organisation {asked} as a member of platform "
                           f"{platform_id} with the right to joint activities (R-PF-04).")
        return asked
    if len(orgs) == 1:
        return orgs[0]
    if not orgs:
        raise Rejected("forbidden", "Not a member", f"Your organisation is not a member of platform {platform_id} "
                       "with the right to joint activities (R-PF-04).")
    raise Rejected("invalid", "Which organisation?", f"You act for several members ({', '.join(orgs)}): name org_id.")


async def _order(svc, order_id: str) -> dict:
    doc = await svc.db.orders.find_one({"_id": order_id}, NO_OUTBOX)
    if doc is None:
        raise Rejected("not_found", "Not found", f"No joint order {order_id}.")
    return doc


def _must_be_poster(p: Principal, order: dict) -> None:
    if order["org_id"] not in p.orgs_with(Right.JOINT_ACTIVITIES, order["platform_id"]):
        raise Rejected("forbidden", "Not your joint order", "Only the institution that posted it does this.")


async def _applications(svc, order_id: str) -> list[dict]:
    """Every application of an order (one `_id` range: ids begin with the order id)."""
    out, after = [], None
    while True:
        docs, after = await store.page(svc.db.applications, order_id + ".", after=after, limit=500,
                                       projection=NO_OUTBOX)
        out += docs
        if after is None:
            return out


def _listing(order: dict) -> list[str]:
    return domain.index_ids(["*"] + [f"prefecture={pref}" for pref in order["area_prefectures"]], order["list_key"],
                            order["_id"])


@router.post("/joint-orders", response_model=OrderOut, status_code=201,
             summary="Post a joint order split into lots, open to businesses of the platform's area (R-POR-04)")
async def post_order(body: OrderIn, request: Request, p: Principal = Depends(require("institution"))) -> OrderOut:
    svc = svc_of(request)
    org_id = _posting_org(p, body.platform_id, body.org_id)
    platform = await svc.db.platform_areas.find_one({"_id": body.platform_id})
    area = domain.order_area(body.area_prefectures, (platform or {}).get("prefectures"))
    lot_ids = domain.check_lots([lot.title for lot in body.lots])
    if body.deadline.isoformat() < _today():
        raise Rejected("invalid", "Deadline passed", "The deadline to apply is in the past.")
    at, oid = store.now(), store.new_id("jo")
    doc = {"_id": oid, "platform_id": body.platform_id, "org_id": org_id, "title": body.title.strip(),
           "description": body.description.strip(), "deadline": body.deadline.isoformat(), "area_prefectures": area,
           "lots": [{"lot_id": i, **lot.model_dump()} for i, lot in zip(lot_ids, body.lots, strict=True)],
           "status": domain.ORDER_OPEN, "created_at": at, "posted_by": p.subject, "list_key": domain.newest_first(at)}
    event = svc.event(JointOrderPosted(order_id=oid, platform_id=body.platform_id, org_id=org_id,
                                       area_prefectures=area, lot_ids=lot_ids, deadline=doc["deadline"]),
                      actor=p.subject)
    await svc.insert(svc.db.orders, doc, events=[event])
    await store.put_index(svc.db.order_index, _listing(doc), oid)
    return _out(doc)


@router.get("/joint-orders", response_model=OrderPage,
            summary="Open joint orders, newest first, optionally those open to one prefecture (paged)")
async def list_orders(request: Request, prefecture: str | None = Query(default=None, max_length=10),
                      after: str | None = Query(default=None, description="next_after of the previous page"),
                      limit: int = Query(default=20, ge=1, le=100),
                      p: Principal = Depends(require(*ANYONE))) -> OrderPage:
    svc = svc_of(request)
    prefix = (f"prefecture={prefecture}" if prefecture else "*") + "|"
    entries, nxt = await store.page(svc.db.order_index, prefix, after=after, limit=limit)
    docs = await store.by_ids(svc.db.orders, [e["item"] for e in entries], NO_OUTBOX)
    return OrderPage(items=[_out(d) for d in docs if d["status"] == domain.ORDER_OPEN], next_after=nxt)


@router.get("/joint-orders/{order_id}", response_model=OrderOut,
            summary="A joint order with its lots, how many applied for each and, once awarded, to whom")
async def get_order(order_id: str, request: Request, p: Principal = Depends(require(*ANYONE))) -> OrderOut:
    svc = svc_of(request)
    doc = await _order(svc, order_id)
    counts: dict[str, int] = {}
    for a in await _applications(svc, order_id):
        counts[a["lot_id"]] = counts.get(a["lot_id"], 0) + 1
    return _out(doc, counts)


@router.post("/joint-orders/{order_id}/applications", response_model=ApplicationOut, status_code=201,
             summary="Apply for a lot; only businesses located in the order's area may (R-POR-04)")
async def apply(order_id: str, body: ApplicationIn, request: Request,
                p: Principal = Depends(require("business"))) -> ApplicationOut:
    svc = svc_of(request)
    business_id = p.own_business(body.business_id)
    order = await _order(svc, order_id)
    place = await svc.db.places.find_one({"_id": business_id})
    domain.may_apply(order, body.lot_id, (place or {}).get("prefecture"), _today())
    aid = f"{order_id}.{body.lot_id}.{business_id}"
    doc = {"_id": aid, "order_id": order_id, "lot_id": body.lot_id, "business_id": business_id,
           "note": body.note.strip(), "applied_by": p.subject, "applied_at": store.now()}
    mine = f"business={business_id};joint|{domain.newest_first(doc['applied_at'])}|{aid}"
    if await svc.db.applications.find_one({"_id": aid}, {"_id": 1}):
        raise Rejected("conflict", "Already applied", f"Business {business_id} applied for {body.lot_id} already.")
    await svc.insert(svc.db.applications, doc, events=[svc.event(JointOrderApplied(
        order_id=order_id, lot_id=body.lot_id, business_id=business_id), actor=p.subject)])
    await store.put_index(svc.db.party_index, [mine], aid)
    return _app_out(doc)


@router.get("/joint-orders/{order_id}/applications", response_model=ApplicationPage,
            summary="The posting institution's list of applications, by lot (paged)")
async def applications(order_id: str, request: Request, after: str | None = Query(default=None),
                       limit: int = Query(default=100, ge=1, le=500),
                       p: Principal = Depends(require("institution"))) -> ApplicationPage:
    svc = svc_of(request)
    order = await _order(svc, order_id)
    _must_be_poster(p, order)
    docs, nxt = await store.page(svc.db.applications, order_id + ".", after=after, limit=limit, projection=NO_OUTBOX)
    return ApplicationPage(items=[_app_out(d, order) for d in docs], next_after=nxt)


@router.post("/joint-orders/{order_id}/award", response_model=OrderOut,
             summary="Award the lots to applicants and close the order; every applicant is told the result")
async def award(order_id: str, body: AwardIn, request: Request,
                p: Principal = Depends(require("institution"))) -> OrderOut:
    svc = svc_of(request)
    order = await _order(svc, order_id)
    _must_be_poster(p, order)
    apps = await _applications(svc, order_id)
    applied: dict[str, set[str]] = {}
    for a in apps:
        applied.setdefault(a["lot_id"], set()).add(a["business_id"])
    awards = domain.award(order, body.awards, applied)
    applicants = sorted({a["business_id"] for a in apps})
    events = [svc.event(JointOrderAwarded(order_id=order_id, awards=awards, applicants=applicants), actor=p.subject)]
    for b in applicants:  # R-POR-04: notices to every bidder, won or not
        won = domain.result_for(b, awards)
        events.append(svc.event(Notify(
            notification_id=f"joint-order-result:{order_id}:{b}", recipient_id=b, recipient_kind="business",
            template="joint_order_result", params={"order_id": order_id, "title": order["title"],
                                                   "result": "awarded" if won else "not_awarded",
                                                   "lots": ", ".join(won) or "-"}), actor=p.subject))
    res = await svc.write(svc.db.orders, {"_id": order_id, "status": domain.ORDER_OPEN},
                          {"$set": {"status": domain.ORDER_AWARDED, "awards": awards, "awarded_at": store.now()}},
                          events=events)
    if res.modified_count != 1:
        raise Rejected("conflict", "Changed meanwhile", "This joint order was just awarded; reload it.")
    await store.drop_index(svc.db.order_index, _listing(order))
    counts = {lot: len(bs) for lot, bs in applied.items()}
    return _out({**order, "status": domain.ORDER_AWARDED, "awards": awards}, counts)


@router.get("/me/joint-applications", response_model=ApplicationPage,
            summary="Your business's applications to joint orders and their results, newest first (paged)")
async def my_applications(request: Request, business_id: str | None = Query(default=None, max_length=100),
                          after: str | None = Query(default=None), limit: int = Query(default=20, ge=1, le=100),
                          p: Principal = Depends(require("business"))) -> ApplicationPage:
    svc = svc_of(request)
    prefix = f"business={p.own_business(business_id)};joint|"
    entries, nxt = await store.page(svc.db.party_index, prefix, after=after, limit=limit)
    docs = await store.by_ids(svc.db.applications, [e["item"] for e in entries], NO_OUTBOX)
    orders = {o["_id"]: o for o in await store.by_ids(svc.db.orders, sorted({d["order_id"] for d in docs}), NO_OUTBOX)}
    return ApplicationPage(items=[_app_out(d, orders.get(d["order_id"])) for d in docs], next_after=nxt)

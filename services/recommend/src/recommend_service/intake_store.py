"""MongoDB access of application intake (R-POR-05).

Collections (every request-path read is a lookup by `_id`; the reviewers' list reads `applications` in `_id` order):
- `applications` {_id: "app-<hash of business and programme>"}: one per business × programme; `status`, `fields`
  ({name: {value, source}}), `version` (autosave), `attachments` ({doc_id: upload id}), `submissions`,
  `receipt_number`, `accepted_at`, `first_submitted_at`, `history`; status changes carry their events and the
  business's Notify through the outbox in the same write.
- `review_queue` {_id: "<status>|<application id>"}: the reviewers' lists as `_id` ranges (R-OPS-03: no request
  reads a whole collection). The entry of the new status is written BEFORE the status change and the old one removed
  after it: a crash in between leaves a stale entry (the list drops it on reading), never a missing one.
- `uploads` {_id: "upl-<hex>"}: a resumable upload: `size`, `sha256`, `chunk_size`, `chunks` ({n: sha256}), `status`.
"""
from __future__ import annotations

import hashlib
import uuid
from datetime import datetime

from contracts.events.notifications import Notify
from contracts.events.recommend import ApplicationAccepted, ApplicationReturned, ApplicationSubmitted
from recommend_service import intake
from servicekit import aggregate
from servicekit.refusals import Rejected

BUSY = Rejected("conflict", "Busy", "The application changed concurrently; try again.")
STATUS_JA = {"draft": "下書き", "submitted": "受付済み", "returned": "差し戻し", "accepted": "採択受理"}


def application_id(business_id: str, programme_id: str) -> str:
    return "app-" + hashlib.sha256(f"{business_id}|{programme_id}".encode()).hexdigest()[:20]


def _notify(svc, app: dict, status: str, reason: str = "", actor: str | None = None) -> dict:
    """R-POR-05: the business hears of every status change (its people: recipient kind business, R-NOT-03)."""
    return svc.event(Notify(
        notification_id=f"application:{app['_id']}:{status}:{app.get('submissions', 0)}", recipient_id=app["business_id"],
        recipient_kind="business", template="application_status",
        params={"title": app["programme_name"], "status": status, "status_ja": STATUS_JA[status],
                "application_id": app["_id"], "receipt_number": app.get("receipt_number") or "-",
                "reason_ja": f"理由: {reason}" if reason else "", "reason_en": f"Reason: {reason}" if reason else ""}),
        actor=actor)


async def open_draft(svc, programme: dict, profile: dict, business_id: str, actor: str, now: datetime) -> tuple[dict, bool]:
    """The business's application to the programme: the existing one, or a new draft pre-filled from its profile."""
    aid = application_id(business_id, programme["programme_id"])
    doc = await svc.db.applications.find_one({"_id": aid}, {"_outbox": 0})
    if doc:
        return doc, False
    doc = {"_id": aid, "programme_id": programme["programme_id"], "programme_name": programme["name"],
           "business_id": business_id, "status": "draft", "fields": intake.prefill(programme["form"], profile),
           "version": 1, "attachments": {}, "submissions": 0, "receipt_number": None, "accepted_at": None,
           "first_submitted_at": None, "history": [{"status": "draft", "at": now, "by": actor}],
           "created_at": now, "created_by": actor}
    try:
        await svc.insert(svc.db.applications, doc)
    except Exception:  # noqa: BLE001 - opened at the same moment by another request: answer that one
        existing = await svc.db.applications.find_one({"_id": aid}, {"_outbox": 0})
        if existing is None:
            raise
        return existing, False
    return doc, True


async def application(db, aid: str) -> dict | None:
    return await db.applications.find_one({"_id": aid}, {"_outbox": 0})


async def save(db, app: dict, fields: dict, version: int) -> bool:
    """Compare-and-set on the version the change was made on (last write wins by version)."""
    res = await db.applications.update_one({"_id": app["_id"], "version": app["version"], "status": app["status"]},
                                           {"$set": {"fields": fields, "version": version}})
    return res.modified_count == 1


async def _enqueue(db, aid: str, status: str) -> None:
    await db.review_queue.update_one({"_id": f"{status}|{aid}"}, {"$set": {"application_id": aid}}, upsert=True)


async def _dequeue(db, aid: str, status: str) -> None:
    await db.review_queue.delete_one({"_id": f"{status}|{aid}"})


async def submit(svc, application_id: str, arrived_at: datetime, actor: str, check) -> dict:
    """Submits the application as it is when written (`servicekit.aggregate.update`: compare-and-set on `version` and
    the status read; `await check(app)` refuses what may not be submitted, asked again after a concurrent change).
    A submitted or accepted application is left as it is: a retried submission gets the same receipt. Returns the
    application after."""
    was: dict = {}

    async def decide(app: dict) -> aggregate.Change | None:
        if app["status"] in ("submitted", "accepted"):
            return None
        await check(app)
        await _enqueue(svc.db, app["_id"], "submitted")
        was["status"] = app["status"]
        n = app.get("submissions", 0) + 1
        receipt = intake.receipt_number(app["_id"], n)
        after = {**app, "submissions": n, "receipt_number": receipt}
        events = [svc.event(ApplicationSubmitted(application_id=app["_id"], programme_id=app["programme_id"],
                                                 business_id=app["business_id"], receipt_number=receipt, submission=n,
                                                 accepted_at=arrived_at, attachments=app.get("attachments") or {},
                                                 pending_uploads=app.get("pending") or {}),
                            actor=actor),
                  _notify(svc, after, "submitted", actor=actor)]
        return aggregate.Change(set={"status": "submitted", "submissions": n, "receipt_number": receipt,
                                     "accepted_at": arrived_at,
                                     "first_submitted_at": app.get("first_submitted_at") or arrived_at},
                                push={"history": {"status": "submitted", "at": arrived_at, "by": actor}},
                                events=events, where={"status": app["status"]})

    out = await aggregate.update(svc, svc.db.applications, application_id, decide, actor=actor,
                                 action="recommend.ApplicationSubmitted", attempts=3, reload=True, busy=BUSY)
    if out.changed and was["status"] != "draft":
        await _dequeue(svc.db, application_id, was["status"])
    return out.doc


async def review(svc, application_id: str, decision: str, reason: str, actor: str, now: datetime) -> dict:
    """Returns or accepts a submitted application (one compare-and-set; a concurrent change refuses: reload it).
    Returns the application after."""
    status = "returned" if decision == "return" else "accepted"

    async def decide(app: dict) -> aggregate.Change:
        intake.check_review(app["status"], app.get("pending") or {})
        await _enqueue(svc.db, app["_id"], status)
        common = {"application_id": app["_id"], "programme_id": app["programme_id"], "business_id": app["business_id"],
                  "reviewer": actor}
        event = (ApplicationReturned(**common, reason=reason) if status == "returned"
                 else ApplicationAccepted(**common, receipt_number=app["receipt_number"]))
        return aggregate.Change(set={"status": status, "return_reason": reason if status == "returned" else None},
                                push={"history": {"status": status, "at": now, "by": actor, "reason": reason}},
                                events=[svc.event(event, actor=actor), _notify(svc, app, status, reason, actor)],
                                where={"status": "submitted"})

    out = await aggregate.update(svc, svc.db.applications, application_id, decide, actor=actor,
                                 action="recommend.ApplicationReviewed", attempts=1, reload=True,
                                 busy=Rejected("conflict", "Busy", "The application changed concurrently; reload it."))
    await _dequeue(svc.db, application_id, "submitted")
    return out.doc


async def queue_page(db, status: str, after: str, limit: int) -> tuple[list[dict], str | None]:
    """A page of the applications in `status`, in application-id order: an `_id` range of the queue, then the
    applications by `_id`; entries left stale by a crash (the application moved on) are skipped."""
    entries = [e["application_id"] async for e in db.review_queue.find(
        {"_id": {"$gt": f"{status}|{after}", "$lt": f"{status}|~"}}).sort("_id").limit(limit)]
    apps = {d["_id"]: d async for d in db.applications.find({"_id": {"$in": entries}}, {"_outbox": 0, "history": 0})}
    page = [apps[a] for a in entries if a in apps and apps[a]["status"] == status]
    return page, entries[-1] if len(entries) == limit else None


# --- uploads --------------------------------------------------------------------------------------------------------
async def new_upload(db, app: dict, body: dict, chunk_size: int, actor: str, now: datetime) -> dict:
    """A new upload, and the application's `pending` upload of its document (the latest started wins)."""
    doc = {"_id": f"upl-{uuid.uuid4().hex}", "application_id": app["_id"], "business_id": app["business_id"],
           **body, "chunk_size": chunk_size, "chunks": {}, "status": "open", "created_by": actor, "created_at": now}
    await db.uploads.insert_one(doc)
    res = await db.applications.update_one({"_id": app["_id"], "status": {"$in": list(intake.EDITABLE)}},
                                           {"$set": {f"pending.{body['document']}": doc["_id"]}})
    if res.matched_count == 0:
        raise Rejected("conflict", "Not editable", "The application is no longer editable.", code="not_editable")
    return doc


async def upload(db, upload_id: str) -> dict | None:
    return await db.uploads.find_one({"_id": upload_id})


async def record_chunk(db, upload_id: str, n: int, digest: str) -> None:
    await db.uploads.update_one({"_id": upload_id}, {"$set": {f"chunks.{n}": digest}})


async def complete(db, up: dict) -> None:
    """The upload is whole; it becomes the application's attachment for its document (while still editable, or after
    the submission it was pending in), and is no longer pending."""
    app = await db.applications.find_one({"_id": up["application_id"]}, {"status": 1, "pending": 1})
    if app is None or not intake.may_attach(app["status"], app.get("pending") or {}, up["document"], up["_id"]):
        raise Rejected("conflict", "Not editable", "The application is no longer editable; the file was kept but not "
                       "attached.", code="not_editable")
    await db.uploads.update_one({"_id": up["_id"]}, {"$set": {"status": "complete"}})
    doc = up["document"]
    res = await db.applications.update_one(
        {"_id": up["application_id"], "$or": [{"status": {"$in": list(intake.EDITABLE)}}, {f"pending.{doc}": up["_id"]}]},
        {"$set": {f"attachments.{doc}": up["_id"]}, "$unset": {f"pending.{doc}": ""}})
    if res.matched_count == 0:
        raise Rejected("conflict", "Not editable", "The application is no longer editable; the file was kept but not "
                       "attached.", code="not_editable")

"""HTTP handlers of application intake (R-POR-05): drafts pre-filled from the profile, autosave, submission with a
receipt (deadline judged by arrival time), resumable attachments, review by the programme's administering agency.

Who may do what: the business itself (R-ID-07: bound in its token, `Principal.acts_for`) opens, edits, uploads to and
submits its application; the agency's staff (and operators) — the programme's administering body (中小機構 /
事務局), the role that already reads uptake analytics — list and review submitted applications. Anyone else gets 404
for an application (it is not visible to them)."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from recommend_service import intake, intake_store, store
from servicekit.auth import Principal, require
from servicekit.problems import Problem
from servicekit.refusals import Rejected
from servicekit.store import now, record_audit

router = APIRouter(tags=["applications"])
REVIEWERS = ("agency", "operator")
APPLICANTS = ("business", "founder")


def _svc(request: Request):
    return request.app.state.service


def arrived_at(request: Request) -> datetime:
    """When the request arrived at the API: the gateway's stamp (X-Arrived-At, set by the gateway, never the
    client's), else the service's middleware's, taken before anything else runs (R-POR-05, `intake.arrival`)."""
    return intake.arrival(request.headers.get(intake.ARRIVAL_HEADER),
                          getattr(request.state, "arrived_at", None) or now())


class FieldValue(BaseModel):
    value: Any = None
    source: str = Field(description='where the value came from: "profile v3 (identity)" or "typed"')


class Application(BaseModel):
    application_id: str
    programme_id: str
    programme_name: str
    business_id: str
    status: Literal["draft", "submitted", "returned", "accepted"]
    version: int = Field(description="pass back in PATCH (last write wins by version)")
    fields: dict[str, FieldValue]
    form: dict = Field(default_factory=dict, description="the programme's form: fields, documents, deadline")
    attachments: dict[str, str] = Field(description="required document id -> completed upload id")
    pending_uploads: dict[str, str] = Field(default_factory=dict, description="document id -> upload started, "
                                                                               "bytes still arriving")
    receipt_number: str | None = None
    accepted_at: datetime | None = Field(default=None, description="arrival time of the last submission at the API")
    return_reason: str | None = None


def _view(app: dict, form: dict | None = None) -> Application:
    return Application(application_id=app["_id"], form=form or {}, **{k: app.get(k) for k in (
        "programme_id", "programme_name", "business_id", "status", "version", "fields", "attachments",
        "receipt_number", "accepted_at", "return_reason")}, pending_uploads=app.get("pending") or {})


async def _form(db, programme_id: str) -> dict:
    p = await store.programme(db, programme_id)
    if p is None:
        raise Problem(404, "Not found", f"No programme {programme_id} in the catalogue.")
    if not p.get("form"):
        raise Problem(409, "No application form", f"Programme {programme_id} takes no applications through the portal.")
    return p


async def _mine(request: Request, aid: str, who: Principal, *, edit: bool) -> dict:
    """The application if the caller acts for its business (or, to read, reviews); 404 for anyone else."""
    app = await intake_store.application(_svc(request).db, aid)
    sees = app is not None and (who.acts_for(app["business_id"]) or (not edit and bool(who.roles & set(REVIEWERS))))
    if not sees:
        raise Problem(404, "Not found", f"No application {aid} of yours.")
    return app


class OpenIn(BaseModel):
    business_id: str | None = Field(default=None, description="the business you act for; needed only when your "
                                                              "account acts for several")


@router.post("/programmes/{programme_id}/applications", response_model=Application, status_code=201,
             summary="Open (or reopen) the business's application: a draft pre-filled from its profile, each field "
                     "with its source (R-POR-05, R-ID-03)")
async def open_application(programme_id: str, request: Request, body: OpenIn = Body(default_factory=OpenIn),
                           who: Principal = Depends(require(*APPLICANTS))) -> Application:
    svc = _svc(request)
    bid = who.own_business(body.business_id)  # R-ID-07: from the token, never typed in
    programme = await _form(svc.db, programme_id)
    profile = await svc.db.business_profiles.find_one({"_id": bid}, {"_outbox": 0, "_seen": 0})
    if profile is None:
        raise Problem(404, "Not found", f"No profile for business {bid} yet.")
    app, new = await intake_store.open_draft(svc, programme, profile, bid, who.subject, arrived_at(request))
    if new:
        await record_audit(svc.db, actor=who.subject, action="recommend.ApplicationOpened", key=app["_id"],
                           payload={"programme_id": programme_id, "business_id": bid})
    return _view(app, programme["form"])


@router.get("/applications/{application_id}", response_model=Application,
            summary="One application with its form (its business, or a reviewer)")
async def get_application(application_id: str, request: Request,
                          who: Principal = Depends(require(*APPLICANTS, *REVIEWERS))) -> Application:
    app = await _mine(request, application_id, who, edit=False)
    return _view(app, (await store.programme(_svc(request).db, app["programme_id"]) or {}).get("form"))


Value = Annotated[str, Field(max_length=10_000)] | Annotated[int, Field(ge=-10**15, le=10**15)] | bool | None


class PatchIn(BaseModel):
    version: int = Field(ge=1, le=2**31, description="the version your edits were made on")
    values: dict[Annotated[str, Field(max_length=80)], Value] = Field(max_length=100,
                                                                      description="field name -> value (text, integer, "
                                                                                  "yes/no, or null to clear)")


@router.patch("/applications/{application_id}", response_model=Application,
              summary="Autosave the draft: last write wins by version; a stale version gets 409 with the current "
                      "draft (R-POR-05)")
async def patch_application(application_id: str, body: PatchIn, request: Request,
                            who: Principal = Depends(require(*APPLICANTS))) -> Application:
    db = _svc(request).db
    app = await _mine(request, application_id, who, edit=True)
    form = (await _form(db, app["programme_id"]))["form"]
    intake.check_editable(app["status"])
    try:
        fields, version, changed = intake.apply_patch(form, app["fields"], app["version"], body.version, body.values)
    except Rejected as e:
        if e.extra.get("code") == "stale_version":
            e.extra["current"] = _view(app).model_dump(mode="json")
        raise
    if changed:
        if not await intake_store.save(db, app, fields, version):
            current = await intake_store.application(db, application_id)
            raise Rejected("conflict", "Stale draft", "The draft changed meanwhile; reload it.", code="stale_version",
                           current_version=current["version"], current=_view(current).model_dump(mode="json"))
        app = {**app, "fields": fields, "version": version}
        await record_audit(db, actor=who.subject, action="recommend.ApplicationSaved", key=application_id,
                           payload={"version": version, "fields": sorted(body.values)})
    return _view(app, form)


class Receipt(BaseModel):
    application_id: str
    receipt_number: str
    accepted_at: datetime = Field(description="when the submission arrived at the API: the time the deadline is "
                                              "judged by (R-POR-05)")
    submission: int
    status: str
    pending_uploads: dict[str, str] = Field(default_factory=dict, description="document id -> upload still arriving: "
                                                                               "finish it (resumable) after the receipt")


@router.post("/applications/{application_id}/submit", response_model=Receipt,
             summary="Submit: required fields and documents checked; a receipt with the arrival time. In time is "
                     "judged by arrival, never by when processing ends (R-POR-05)")
async def submit_application(application_id: str, request: Request,
                             who: Principal = Depends(require(*APPLICANTS))) -> Receipt:
    svc, arrived = _svc(request), arrived_at(request)
    await _mine(request, application_id, who, edit=True)

    async def check(app: dict) -> None:
        form = (await _form(svc.db, app["programme_id"]))["form"]
        intake.check_submission(form, app["status"], app["fields"], app.get("attachments") or {}, arrived,
                                app.get("first_submitted_at"), app.get("pending") or {})

    app = await intake_store.submit(svc, application_id, arrived, who.subject, check)
    return Receipt(application_id=application_id, receipt_number=app["receipt_number"],
                   accepted_at=app["accepted_at"].replace(tzinfo=app["accepted_at"].tzinfo or UTC),
                   submission=app["submissions"], status=app["status"], pending_uploads=app.get("pending") or {})


class ApplicationPage(BaseModel):
    items: list[Application]
    next_after: str | None = Field(description="pass as `after` for the next page; None on the last page")


@router.get("/applications", response_model=ApplicationPage,
            summary="Applications to review, a page at a time (the administering agency's staff)")
async def list_applications(request: Request, status: Literal["submitted", "returned", "accepted"] = "submitted",
                            after: str = Query("", max_length=200, description="cursor: `next_after` of the last page"),
                            limit: int = Query(50, ge=1, le=200),
                            who: Principal = Depends(require(*REVIEWERS))) -> ApplicationPage:
    page, nxt = await intake_store.queue_page(_svc(request).db, status, after, limit)
    return ApplicationPage(items=[_view(a) for a in page], next_after=nxt)


class ReviewIn(BaseModel):
    decision: Literal["return", "accept"]
    reason: str = Field(default="", max_length=2000, description="required to return: what the business must fix")


@router.post("/applications/{application_id}/review", response_model=Application,
             summary="Return a submitted application with a reason, or accept it; the business is notified")
async def review_application(application_id: str, body: ReviewIn, request: Request,
                             who: Principal = Depends(require(*REVIEWERS))) -> Application:
    svc = _svc(request)
    app = await _mine(request, application_id, who, edit=False)
    intake.check_review(app["status"], app.get("pending") or {})
    if body.decision == "return" and not body.reason.strip():
        raise Rejected("invalid", "Reason needed", "Say what the business must fix when returning an application.",
                       code="reason_required")
    return _view(await intake_store.review(svc, application_id, body.decision, body.reason, who.subject, now()))


# --- resumable uploads ----------------------------------------------------------------------------------------------
class UploadIn(BaseModel):
    document: str = Field(min_length=1, max_length=80, description="the form's document id this file is for")
    name: str = Field(min_length=1, max_length=200)
    size: int = Field(ge=1, le=10**12, description="bytes; the service's limit is checked too (INTAKE_MAX_UPLOAD_BYTES)")
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$")
    content_type: str = Field(max_length=100)
    chunk_size: int = Field(default=intake.CHUNK_SIZE, ge=1024, le=8 * 1024 * 1024)


class Upload(BaseModel):
    upload_id: str
    application_id: str
    document: str
    name: str
    size: int
    chunk_size: int
    chunks: int
    present: list[int]
    missing: list[int] = Field(description="the chunks still to send: a client resumes with these")
    status: Literal["open", "complete"]


def _upload_view(up: dict) -> Upload:
    present = up.get("chunks") or {}
    return Upload(upload_id=up["_id"], application_id=up["application_id"], document=up["document"], name=up["name"],
                  size=up["size"], chunk_size=up["chunk_size"], chunks=intake.chunk_count(up["size"], up["chunk_size"]),
                  present=sorted(int(n) for n in present),
                  missing=intake.missing_chunks(up["size"], present, up["chunk_size"]), status=up["status"])


async def _my_upload(request: Request, upload_id: str, who: Principal) -> dict:
    up = await intake_store.upload(_svc(request).db, upload_id)
    if up is None or not who.acts_for(up["business_id"]):
        raise Problem(404, "Not found", f"No upload {upload_id} of yours.")
    return up


@router.post("/applications/{application_id}/uploads", response_model=Upload, status_code=201,
             summary="Start a resumable upload of an attachment (size, sha256, type checked)")
async def start_upload(application_id: str, body: UploadIn, request: Request,
                       who: Principal = Depends(require(*APPLICANTS))) -> Upload:
    db = _svc(request).db
    app = await _mine(request, application_id, who, edit=True)
    intake.check_editable(app["status"])
    form = (await _form(db, app["programme_id"]))["form"]
    if body.document not in {d["doc_id"] for d in form.get("documents", [])}:
        raise Rejected("invalid", "Unknown document", f"The form asks for no document {body.document}.",
                       code="unknown_document")
    intake.check_upload(body.size, body.content_type, request.app.state.settings.intake_max_upload_bytes)
    up = await intake_store.new_upload(db, app, body.model_dump(exclude={"chunk_size"}) | {"sha256": body.sha256.lower()},
                                       body.chunk_size, who.subject, arrived_at(request))
    await record_audit(db, actor=who.subject, action="recommend.UploadStarted", key=up["_id"],
                       payload={"application_id": application_id, "document": body.document, "size": body.size})
    return _upload_view(up)


@router.get("/uploads/{upload_id}", response_model=Upload, summary="Which chunks are present, which to send")
async def get_upload(upload_id: str, request: Request, who: Principal = Depends(require(*APPLICANTS))) -> Upload:
    return _upload_view(await _my_upload(request, upload_id, who))


@router.put("/uploads/{upload_id}/chunks/{n}", response_model=Upload,
            openapi_extra={"requestBody": {"required": True,
                                           "content": {"application/octet-stream": {"schema": {"type": "string",
                                                                                                "format": "binary"}}}}},
            summary="Send chunk n (raw bytes, X-Chunk-SHA256 its checksum); sending it again is idempotent")
async def put_chunk(upload_id: str, request: Request, n: int = Path(ge=0, le=1_000_000),
                    x_chunk_sha256: str | None = Header(None, max_length=64, description="sha256 of the chunk (required)"),
                    who: Principal = Depends(require(*APPLICANTS))) -> Upload:
    svc = _svc(request)
    up = await _my_upload(request, upload_id, who)
    if up["status"] == "complete":
        return _upload_view(up)
    data = await request.body()
    digest, new = intake.check_chunk(up["size"], n, data, x_chunk_sha256, up.get("chunks") or {}, up["chunk_size"])
    if new:
        await run_in_threadpool(request.app.state.blobs.put_chunk, upload_id, n, data)
        await intake_store.record_chunk(svc.db, upload_id, n, digest)
        up = {**up, "chunks": {**(up.get("chunks") or {}), str(n): digest}}
    return _upload_view(up)


@router.post("/uploads/{upload_id}/complete", response_model=Upload,
             summary="Assemble the chunks, verify the whole file's sha256, attach it to the application")
async def complete_upload(upload_id: str, request: Request, who: Principal = Depends(require(*APPLICANTS))) -> Upload:
    svc = _svc(request)
    up = await _my_upload(request, upload_id, who)
    if up["status"] != "complete":
        present = up.get("chunks") or {}
        gaps = intake.missing_chunks(up["size"], present, up["chunk_size"])
        assembled = "" if gaps else await run_in_threadpool(request.app.state.blobs.assemble, upload_id,
                                                            intake.chunk_count(up["size"], up["chunk_size"]))
        intake.check_complete(up["size"], present, up["sha256"], assembled, up["chunk_size"])
        await intake_store.complete(svc.db, up)
        await record_audit(svc.db, actor=who.subject, action="recommend.UploadCompleted", key=upload_id,
                           payload={"application_id": up["application_id"], "document": up["document"],
                                    "sha256": up["sha256"]})
        up = {**up, "status": "complete"}
    return _upload_view(up)

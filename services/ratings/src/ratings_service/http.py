"""HTTP handlers of the ratings service: give ratings, owed ratings, radar, evaluations, classification."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from pymongo.errors import DuplicateKeyError

from contracts.events.ratings import ExpertClassified, RatingGiven
from contracts.vocab import RATING_AXES
from ratings_service import domain, radar_svg
from ratings_service.domain import PARAMS, Radar
from ratings_service.store import apply_rating, now, today, update_radar
from servicekit.auth import Principal, require
from servicekit.problems import Problem
from servicekit.store import record_audit

router = APIRouter()
ANYONE = ("business", "founder", "expert", "institution", "bureau", "agency", "operator")


def _svc(request: Request):
    return request.app.state.service


# --- ratings (R-RAT-01/03) ------------------------------------------------------------------------
def _mine(p: Principal) -> dict:
    """Ratings the caller owes: as the named rater, or as any account bound to the rated business (R-ID-07: the
    business's prime and members; a delegated institution never rates for it, R-ID-08)."""
    own = [{"rater_account_id": p.subject}]
    if p.businesses:
        own.append({"rater_kind": "business", "business_id": {"$in": sorted(p.businesses)}})
    return {"$or": own}


class RatingIn(BaseModel):
    dispatch_id: str = Field(min_length=1)
    scores: dict[str, object] = Field(description=f"one whole number 1..5 for each axis: {', '.join(RATING_AXES)}")
    comment: str | None = Field(default=None, description="optional; published only after moderation")


class Owed(BaseModel):
    owed_id: str
    dispatch_id: str
    expert_id: str
    business_id: str
    rater_kind: Literal["business", "institution"]
    status: Literal["owed", "given"]
    since: datetime
    scores: dict[str, int] | None = None
    comment_moderation: str | None = None
    given_at: datetime | None = None
    correctable_until: datetime | None = None


def _owed_view(d: dict) -> Owed:
    until = d["given_at"] + timedelta(days=PARAMS.correction_days) if d.get("given_at") else None
    return Owed(owed_id=d["_id"], dispatch_id=d["dispatch_id"], expert_id=d["expert_id"], business_id=d["business_id"],
                rater_kind=d["rater_kind"], status=d["status"], since=d["since"], scores=d.get("scores"),
                comment_moderation=d.get("moderation"), given_at=d.get("given_at"), correctable_until=until)


@router.post("/ratings", response_model=Owed, status_code=201, tags=["ratings"],
             summary="Give (or, within the correction period, correct) the rating you owe for a dispatch",
             responses={200: {"description": "an earlier rating was corrected"}})
async def give_rating(body: RatingIn, request: Request, response: Response,
                      p: Principal = Depends(require("business", "founder", "institution"))) -> Owed:
    svc = _svc(request)
    owed = await svc.db.owed.find_one({"dispatch_id": body.dispatch_id, **_mine(p)}, {"_outbox": 0})
    if owed is None or (owed["rater_kind"] == "institution") != ("institution" in p.roles):
        if owed is None and not await svc.db.owed.find_one({"dispatch_id": body.dispatch_id}, {"_id": 1}):
            raise Problem(404, "No rating is owed for this dispatch",
                          f"Dispatch {body.dispatch_id} is not completed yet or unknown here.")
        raise Problem(403, "Not your rating", f"You do not owe a rating for dispatch {body.dispatch_id}; "
                      "only the business (and, via a platform, the requesting institution) rates.")
    scores = domain.validate_scores(body.scores)
    comment = domain.validate_comment(body.comment)
    at = now()
    if owed["status"] == "owed":
        given = RatingGiven(expert_id=owed["expert_id"], owed_id=owed["_id"], dispatch_id=owed["dispatch_id"],
                            business_id=owed["business_id"], rater_account_id=p.subject, rater_kind=owed["rater_kind"])
        res = await svc.write(svc.db.owed, {"_id": owed["_id"], "status": "owed"}, {"$set": {
            "status": "given", "scores": scores, "comment": comment, "moderation": domain.comment_moderation(comment),
            "given_at": at, "rev": 0, "radar_applied": False}}, events=[svc.event(given, actor=p.subject)])
        if res.modified_count != 1:
            raise Problem(409, "Already rated", "This rating was just given from another session.")
    else:
        if not domain.may_correct(owed["given_at"], at):
            raise Problem(409, "The correction period has ended",
                          f"A rating can be corrected within {PARAMS.correction_days} days of giving it.")
        if not owed.get("radar_applied", False):
            raise Problem(409, "Rating still being processed", "Please try the correction again in a moment.")
        res = await svc.db.owed.update_one({"_id": owed["_id"], "rev": owed["rev"]}, {"$set": {
            "scores": scores, "prev_scores": owed["scores"], "comment": comment,
            "moderation": domain.comment_moderation(comment), "corrected_at": at, "radar_applied": False},
            "$inc": {"rev": 1}})
        if res.modified_count != 1:
            raise Problem(409, "Correction conflict", "This rating was just corrected from another session.")
        await record_audit(svc.db, actor=p.subject, action="ratings.RatingCorrected", key=owed["expert_id"],
                           payload={"owed_id": owed["_id"], "scores": scores})
        response.status_code = 200
    owed = await svc.db.owed.find_one({"_id": owed["_id"]}, {"_outbox": 0})
    await apply_rating(svc, owed, actor=p.subject)
    return _owed_view(owed)


@router.get("/pending", response_model=list[Owed], tags=["ratings"],
            summary="The ratings the caller still owes (R-RAT-03: the portal prompts until they are given)")
async def pending(request: Request, p: Principal = Depends(require(*ANYONE))) -> list[Owed]:
    cur = _svc(request).db.owed.find({**_mine(p), "status": "owed"}, {"_outbox": 0}).sort("since", 1)
    return [_owed_view(d) async for d in cur]


# --- radar (R-RAT-02) ---------------------------------------------------------------------------
class RadarOut(BaseModel):
    expert_id: str
    axes: list[str]
    averages: dict[str, float]
    count: int
    window_days: int
    as_of: datetime


async def _radar(request: Request, expert_id: str) -> RadarOut:
    svc = _svc(request)
    doc = await svc.db.radars.find_one({"_id": expert_id}, {"days": 1})
    radar = Radar.unpack(doc["days"] if doc else None)
    if radar.expired_days(today()):
        await update_radar(svc, expert_id)  # on-read expiry: the radar changed, publish it now
    avg, n = radar.summary(today())
    return RadarOut(expert_id=expert_id, axes=list(RATING_AXES), averages=avg, count=n,
                    window_days=PARAMS.window_days, as_of=now())


@router.get("/experts/{expert_id}/radar", response_model=RadarOut, tags=["radar"],
            summary="Per-axis averages over the recent window (R-RAT-02)")
async def radar(expert_id: str, request: Request, _: Principal = Depends(require(*ANYONE))) -> RadarOut:
    return await _radar(request, expert_id)


@router.get("/experts/{expert_id}/radar.svg", tags=["radar"], response_class=Response,
            summary="The radar chart as SVG (R-RAT-02)",
            responses={200: {"content": {"image/svg+xml": {}}}})
async def radar_image(expert_id: str, request: Request, _: Principal = Depends(require(*ANYONE))) -> Response:
    r = await _radar(request, expert_id)
    return Response(radar_svg.render(expert_id, r.averages, r.count, r.window_days), media_type="image/svg+xml")


# --- comments: never public before moderation (R-RAT-01) ------------------------------------------
class Comment(BaseModel):
    owed_id: str
    comment: str
    given_at: datetime


class Moderation(BaseModel):
    decision: Literal["approved", "rejected"]


@router.get("/experts/{expert_id}/comments", response_model=list[Comment], tags=["comments"],
            summary="Approved comments only")
async def comments(expert_id: str, request: Request, _: Principal = Depends(require(*ANYONE))) -> list[Comment]:
    cur = _svc(request).db.owed.find({"expert_id": expert_id, "moderation": "approved"}, {"_outbox": 0})
    return [Comment(owed_id=d["_id"], comment=d["comment"], given_at=d["given_at"]) async for d in cur]


@router.get("/moderation", response_model=list[Comment], tags=["comments"], summary="Comments waiting for moderation")
async def moderation_queue(request: Request, _: Principal = Depends(require("operator", "agency"))) -> list[Comment]:
    cur = _svc(request).db.owed.find({"moderation": "pending"}, {"_outbox": 0}).limit(200)
    return [Comment(owed_id=d["_id"], comment=d["comment"], given_at=d["given_at"]) async for d in cur]


@router.post("/comments/{owed_id}/moderation", status_code=204, tags=["comments"], summary="Approve or reject a comment")
async def moderate(owed_id: str, body: Moderation, request: Request,
                   p: Principal = Depends(require("operator", "agency"))) -> Response:
    svc = _svc(request)
    res = await svc.db.owed.update_one({"_id": owed_id, "moderation": "pending"}, {"$set": {"moderation": body.decision}})
    if res.matched_count != 1:
        raise Problem(404, "No comment waiting", f"Rating {owed_id} has no comment waiting for moderation.")
    await record_audit(svc.db, actor=p.subject, action="ratings.CommentModerated", key=owed_id,
                       payload={"decision": body.decision})
    return Response(status_code=204)


# --- institution evaluations and year-end classification (R-RAT-04) --------------------------------
class EvaluationIn(BaseModel):
    dispatch_id: str = Field(min_length=1)
    items: dict[str, object] = Field(description="issue_handling, strategy_building, knowledge, execution_capability: 1..5")


class Evaluation(BaseModel):
    dispatch_id: str
    expert_id: str
    fiscal_year: int
    institution_account_id: str
    items: dict[str, int]
    at: datetime


class EvaluationsOut(BaseModel):
    expert_id: str
    fiscal_year: int
    count: int
    averages: dict[str, float]
    evaluations: list[Evaluation] | None = Field(default=None, description="individual evaluations: agency/operator only")


@router.post("/evaluations", response_model=Evaluation, status_code=201, tags=["evaluations"],
             summary="An institution evaluates the expert of a route-A dispatch on four items (private until year end)")
async def evaluate(body: EvaluationIn, request: Request, p: Principal = Depends(require("institution"))) -> Evaluation:
    svc = _svc(request)
    owed = await svc.db.owed.find_one({"dispatch_id": body.dispatch_id, "rater_account_id": p.subject,
                                       "rater_kind": "institution"}, {"_outbox": 0})
    if owed is None:
        raise Problem(403, "Not your evaluation", f"You are not the requesting institution of dispatch {body.dispatch_id}.")
    items = domain.validate_evaluation(body.items)
    fy = owed["fiscal_year"]
    if await svc.db.classifications.find_one({"fiscal_year": fy}, {"_id": 1}):
        raise Problem(409, "Fiscal year closed", f"Fiscal year {fy} has already been classified.")
    at = now()
    doc = {"dispatch_id": body.dispatch_id, "expert_id": owed["expert_id"], "fiscal_year": fy,
           "institution_account_id": p.subject, "items": items, "at": at}
    await svc.db.evaluations.update_one({"_id": owed["_id"]}, {"$set": doc}, upsert=True)
    await record_audit(svc.db, actor=p.subject, action="ratings.EvaluationRecorded", key=owed["expert_id"],
                       payload={"dispatch_id": body.dispatch_id, "fiscal_year": fy})
    return Evaluation(**doc)


@router.get("/experts/{expert_id}/evaluations", response_model=EvaluationsOut, tags=["evaluations"],
            summary="Institution evaluations of a fiscal year: the agency only until the year has ended")
async def evaluations(expert_id: str, request: Request, fiscal_year: int = Query(ge=2000, le=2100),
                      p: Principal = Depends(require(*ANYONE))) -> EvaluationsOut:
    if not domain.evaluations_visible(fiscal_year, today(), p.roles):
        raise Problem(403, "Not published yet", f"Evaluations of fiscal year {fiscal_year} stay private until it ends.")
    docs = [d async for d in _svc(request).db.evaluations.find({"expert_id": expert_id, "fiscal_year": fiscal_year})]
    avg = domain.item_averages([d["items"] for d in docs]) if docs else {}
    detail = None
    if p.roles & {"agency", "operator"}:
        detail = [Evaluation(**{k: d[k] for k in Evaluation.model_fields}) for d in docs]
    return EvaluationsOut(expert_id=expert_id, fiscal_year=fiscal_year, count=len(docs),
                          averages={k: round(v, 3) for k, v in avg.items()}, evaluations=detail)


class Classification(BaseModel):
    expert_id: str
    fiscal_year: int
    type: Literal["I", "II", "III", "IV"]
    level: Literal["L1", "L2", "L3", "L4"]
    evaluations: int


@router.post("/classification/{fiscal_year}", response_model=list[Classification], tags=["evaluations"],
             summary="Year-end job: classify every evaluated expert of the fiscal year and publish it (R-RAT-04)")
async def classify_year(request: Request, fiscal_year: int = Path(ge=2000, le=2100),
                        p: Principal = Depends(require("agency", "operator"))) -> list[Classification]:
    if not domain.fiscal_year_ended(fiscal_year, today()):
        raise Problem(409, "Fiscal year not ended", f"Fiscal year {fiscal_year} runs until 31 March {fiscal_year + 1}; "
                      "classification happens after it ends.")
    svc = _svc(request)
    by_expert: dict[str, list[dict]] = {}
    async for d in svc.db.evaluations.find({"fiscal_year": fiscal_year}, {"expert_id": 1, "items": 1}):
        by_expert.setdefault(d["expert_id"], []).append(d["items"])
    out = []
    for expert_id, evs in sorted(by_expert.items()):
        kind, level = domain.classify(evs)
        out.append(Classification(expert_id=expert_id, fiscal_year=fiscal_year, type=kind, level=level, evaluations=len(evs)))
        cid = f"{expert_id}:{fiscal_year}"
        fields = {"expert_id": expert_id, "fiscal_year": fiscal_year, "type": kind, "level": level, "evaluations": len(evs)}
        event = svc.event(ExpertClassified(expert_id=expert_id, fiscal_year=fiscal_year, type=kind, level=level),
                          actor=p.subject)
        # Re-running the job publishes only what changed.
        existing = await svc.db.classifications.find_one({"_id": cid}, {"type": 1, "level": 1})
        if existing is None:
            try:
                await svc.insert(svc.db.classifications, {"_id": cid, **fields}, events=[event])
            except DuplicateKeyError:  # a concurrent run inserted it: same result
                pass
        elif (existing["type"], existing["level"]) != (kind, level):
            await svc.write(svc.db.classifications, {"_id": cid}, {"$set": fields}, events=[event])
    return out


@router.get("/experts/{expert_id}/classification", response_model=list[Classification], tags=["evaluations"],
            summary="Published year-end classifications of an expert (R-RAT-04)")
async def classification(expert_id: str, request: Request, _: Principal = Depends(require(*ANYONE))) -> list[Classification]:
    cur = _svc(request).db.classifications.find({"expert_id": expert_id}).sort("fiscal_year", -1)
    return [Classification(**{k: d[k] for k in Classification.model_fields}) async for d in cur]

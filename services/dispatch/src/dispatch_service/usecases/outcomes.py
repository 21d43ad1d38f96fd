"""Use case: outcomes (R-REC-08) — the business answers its follow-up survey; the agency, bureaus and operators read
the KPI (share of supported businesses reporting results) per fiscal year, block, field or expert, small groups
suppressed (R-REC-07)."""
from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from dispatch_service.access import load, store_of
from dispatch_service.domain.outcomes import kpi_of_counts, reports_results
from servicekit.auth import Principal, require
from servicekit.refusals import Rejected

router = APIRouter(tags=["outcomes"])
ACTIONS = ("new_sales_channel", "new_product", "cost_reduction", "financing", "succession_plan", "digitalisation",
           "hiring_or_training", "other")


class OutcomeIn(BaseModel):
    results_achieved: bool = Field(description="the support led to a concrete result")
    actions_taken: list[Literal[ACTIONS]] = Field(default_factory=list, max_length=8)  # type: ignore[valid-type]
    sales_change_pct: float | None = Field(default=None, ge=-100, le=1000, description="change of sales since, %")
    comment: str = Field(default="", max_length=2000)


@router.post("/requests/{dispatch_id}/outcomes/{months}", summary="The business answers its follow-up survey "
             "(R-REC-08)")
async def answer(dispatch_id: str, body: OutcomeIn, request: Request, months: int = Path(ge=0, le=60),
                 p: Principal = Depends(require("business", "founder"))) -> dict:
    await load(request, dispatch_id, p, "business")
    store = store_of(request)
    answer_doc = body.model_dump()
    if not await request.app.state.outcomes.answer(f"{dispatch_id}:{months}", by=p.subject, answer=answer_doc,
                                                   results=reports_results(answer_doc), wait=False):
        s = await store.db.outcome_surveys.find_one({"_id": f"{dispatch_id}:{months}"}, {"_id": 1})
        if s is None:
            raise Rejected("conflict", "No such survey", f"Dispatch {dispatch_id} has no {months}-month survey (surveys "
                           "are scheduled once a dispatch is paid).")
        raise Rejected("conflict", "Already answered", "This survey has been answered already; thank you.")
    await store.audit(p.subject, "dispatch.OutcomeAnswered", f"{dispatch_id}:{months}", {"months": months})
    return {"dispatch_id": dispatch_id, "months": months, "answer": answer_doc}


@router.get("/outcomes/kpi", summary="Share of supported businesses reporting results, by fiscal year, block, field "
            "or expert; groups under 5 businesses suppressed (R-REC-08, R-REC-07)")
async def outcome_kpi(request: Request, by: Literal["fiscal_year", "block", "field", "expert_id"] = "fiscal_year",
                      fiscal_year: int | None = Query(default=None, ge=2000, le=2100),
                      p: Principal = Depends(require("agency", "operator", "bureau"))) -> dict:
    outcomes = request.app.state.outcomes
    bureau = "bureau" in p.roles and not p.is_staff  # a bureau sees its own block only (R-PF-05)
    counts = [] if bureau and not p.bureau_id else await outcomes.counts(by, fiscal_year, p.bureau_id if bureau else None)
    return {"by": by, "fiscal_year": fiscal_year, "target": outcomes.p.kpi_target,
            "groups": kpi_of_counts(counts, by, outcomes.p)}

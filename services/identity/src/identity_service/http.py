"""HTTP handlers of the identity service (thin: validate, call the domain, store, emit)."""
from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field, field_validator
from pymongo.errors import DuplicateKeyError

from contracts.events.identity import BusinessRegistered
from identity_service import domain
from servicekit.auth import Principal, require
from servicekit.problems import Problem

router = APIRouter(tags=["businesses"])


class BusinessIn(BaseModel):
    """Once-only basic data of a business (R-ID-03)."""

    corporate_number: str | None = Field(default=None, description="法人番号, 13 digits; omit for sole proprietors")
    name: str = Field(min_length=1, max_length=200)
    prefecture: str = Field(min_length=1, max_length=20)
    industry: str = Field(min_length=1, max_length=100)
    employees: int = Field(ge=0, le=10_000_000)

    @field_validator("corporate_number")
    @classmethod
    def _valid_corporate_number(cls, v: str | None) -> str | None:
        if v is not None and (problem := domain.corporate_number_problem(v)):
            raise ValueError(problem)
        return v


class BusinessOut(BusinessIn):
    business_id: str
    owner: str


@router.post("/businesses", status_code=201, response_model=BusinessOut,
             summary="Register a business's once-only basic data")
async def register_business(body: BusinessIn, request: Request,
                            who: Principal = Depends(require("business", "operator"))) -> BusinessOut:
    svc = request.app.state.service
    business_id = domain.business_id_for(body.corporate_number, uuid.uuid4().hex)
    out = BusinessOut(business_id=business_id, owner=who.subject, **body.model_dump())
    event = svc.event(BusinessRegistered(**body.model_dump(), business_id=business_id), actor=who.subject)
    try:
        await svc.insert(svc.db.businesses, {"_id": business_id, **out.model_dump(), "version": 1}, events=[event])
    except DuplicateKeyError:
        raise Problem(409, "Already registered", f"Business {business_id} is already registered.") from None
    return out


@router.get("/businesses/{business_id}", response_model=BusinessOut, summary="Read a business's basic data")
async def get_business(business_id: str, request: Request,
                       who: Principal = Depends(require("business", "operator"))) -> BusinessOut:
    doc = await request.app.state.service.db.businesses.find_one({"_id": business_id})
    if doc is None or ("operator" not in who.roles and doc["owner"] != who.subject):
        raise Problem(404, "Not found", f"No business {business_id} visible to you.")
    return BusinessOut(**doc)

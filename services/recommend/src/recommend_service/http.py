"""HTTP handlers of the recommend service."""
from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from servicekit.auth import Principal, require
from servicekit.problems import Problem

router = APIRouter(tags=["businesses"])


class BusinessProfile(BaseModel):
    business_id: str
    name: str
    prefecture: str
    industry: str
    employees: int
    registered_at: datetime


@router.get("/businesses/{business_id}", response_model=BusinessProfile,
            summary="The attributes recommendations are matched on, as learnt from identity events")
async def get_profile(business_id: str, request: Request,
                      _: Principal = Depends(require("business", "operator", "institution"))) -> BusinessProfile:
    doc = await request.app.state.service.db.business_profiles.find_one({"_id": business_id})
    if doc is None:
        raise Problem(404, "Not found", f"No profile for business {business_id} yet.")
    return BusinessProfile(business_id=doc["_id"], **{k: doc[k] for k in BusinessProfile.model_fields if k != "business_id"})

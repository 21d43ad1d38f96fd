"""HTTP API of the dispatch service: one router per use case (dispatch_service.usecases), each handler a few lines."""
from fastapi import APIRouter

from dispatch_service.usecases import (consultations, cosign, followup, history, integrity, outcomes, request,
                                       response, settle, visits)

router = APIRouter()
for use_case in (request, cosign, response, visits, settle, followup, history, consultations, integrity, outcomes):
    router.include_router(use_case.router)

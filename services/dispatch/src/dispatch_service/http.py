"""HTTP API of the dispatch service: one router per use case (dispatch_service.usecases), each handler a few lines."""
from fastapi import APIRouter

from dispatch_service.usecases import consultations, cosign, followup, request, settle, visits

router = APIRouter()
for use_case in (request, cosign, visits, settle, followup, consultations):
    router.include_router(use_case.router)

"""Pure rules of the dispatch service (no I/O): programmes, screening, fees, lifecycle."""
from dispatch_service.domain.eligibility import (COUNTING_STATUSES, RECEIVED_STATUSES, Application, ExpertState,
                                                 History, PlannedVisit, Refusal, refusal, screen)
from dispatch_service.domain.fees import Fee, VisitTime, compute_fee, estimate_fee, fee_exemption
from dispatch_service.domain.lifecycle import (BEFORE_APPROVAL, RESERVED_STATUSES, InvalidTransition, can, sources,
                                               transition)
from dispatch_service.domain.programmes import Programme, default_programme

__all__ = ["Application", "BEFORE_APPROVAL", "COUNTING_STATUSES", "ExpertState", "Fee", "History",
           "InvalidTransition", "PlannedVisit", "Programme", "RECEIVED_STATUSES", "RESERVED_STATUSES", "Refusal",
           "VisitTime", "can", "compute_fee", "default_programme", "estimate_fee", "fee_exemption", "refusal",
           "screen", "sources", "transition"]

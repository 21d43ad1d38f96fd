"""Wiring of the dispatch service: HTTP API, saga consumers of budget answers, read models."""
import os
from datetime import datetime

from contracts.events.dispatch import DispatchStatusChanged
from contracts.events.ratings import RatingGiven
from contracts.vocab import fiscal_year
from dispatch_service import history, integrity, outcomes, saga, worklists
from dispatch_service.consumers import budget_handlers, read_model_handlers
from dispatch_service.domain.dispatch import JST
from dispatch_service.http import router
from dispatch_service.ebpm_reports import router as ebpm_router
from dispatch_service.metrics import SagaStates
from dispatch_service.store import Store
from servicekit.service import Service


def in_turn(*handlers):
    """One message type, several idempotent reactions, in order."""
    async def handle(env, e) -> None:
        for h in handlers:
            await h(env, e)
    return handle


svc = Service("dispatch", title="Expert dispatch", outbox=["dispatches", "outcome_surveys", *history.OUTBOX],
              produces=["dispatch.events", "dispatch.history", "budget.commands", "notifications.commands"])
store = Store(svc)
svc.app.state.store = store
experts, ratings, identity = read_model_handlers(store)
signals = integrity.Integrity(store, integrity.params_from_env())   # R-DSP-15, from dispatch's own events and others'
own, rated, businesses = signals.handlers()
surveys = outcomes.Outcomes(store, outcomes.params_from_env())    # R-REC-08
svc.consume("budget.events", budget_handlers(store))
svc.consume("experts.events", experts)
svc.consume("ratings.events", {**ratings, RatingGiven: in_turn(ratings[RatingGiven], rated[RatingGiven])})
svc.consume("identity.events", {**identity, **businesses})
svc.consume("dispatch.events", {DispatchStatusChanged: in_turn(own[DispatchStatusChanged], surveys.on_status)})
svc.app.include_router(router)
svc.app.include_router(worklists.router)
svc.app.include_router(ebpm_router)  # R-REC-07
svc.consume("dispatch.events", worklists.handlers(svc))
svc.app.state.saga_params = saga.params_from_env()
svc.background("budget-saga-clock")(lambda: saga.run(store, svc.app.state.saga_params))
svc.app.state.outcomes = surveys
support = history.SupportHistory(store, history.params_from_env())  # R-POR-06, R-DSP-05
svc.app.state.history = support
svc.background("follow-up-reminders")(lambda: history.run(support, float(os.environ.get("FOLLOW_UP_SWEEP_SECONDS", "3600"))))
svc.background("outcome-surveys")(lambda: outcomes.run(surveys, float(os.environ.get("OUTCOME_SWEEP_SECONDS", "60"))))
svc.background("saga-state-counts")(SagaStates(store).run)
svc.background("expert-response-clock")(lambda: signals.run(float(os.environ.get("INTEGRITY_SWEEP_SECONDS", "60"))))


@svc.on_startup
async def _setup() -> None:
    fy = fiscal_year(datetime.now(JST).date())
    await store.setup([fy - 1, fy, fy + 1])
    await signals.setup()
    await surveys.setup()
    await support.setup()
    await store.dispatches.create_index("status")
    await worklists.ensure_indexes(svc.db)


app = svc.app

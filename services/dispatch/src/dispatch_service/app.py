"""Wiring of the dispatch service: HTTP API, saga consumers of budget answers, read models."""
from datetime import datetime

from contracts.vocab import fiscal_year
from dispatch_service import saga, worklists
from dispatch_service.consumers import budget_handlers, read_model_handlers
from dispatch_service.domain import InvalidTransition
from dispatch_service.http import JST, router
from dispatch_service.store import Store
from servicekit.problems import problem_response
from servicekit.service import Service

svc = Service("dispatch", title="Expert dispatch", outbox=["dispatches"],
              produces=["dispatch.events", "budget.commands"])
store = Store(svc)
svc.app.state.store = store
experts, ratings, identity = read_model_handlers(store)
svc.consume("budget.events", budget_handlers(store))
svc.consume("experts.events", experts)
svc.consume("ratings.events", ratings)
svc.consume("identity.events", identity)
svc.app.include_router(router)
svc.app.include_router(worklists.router)
svc.consume("dispatch.events", worklists.handlers(svc))
svc.app.state.saga_params = saga.params_from_env()
svc.background("budget-saga-clock")(lambda: saga.run(store, svc.app.state.saga_params))


@svc.app.exception_handler(InvalidTransition)
async def _invalid_transition(_, exc: InvalidTransition):
    # R-DSP-14: a lifecycle step out of order is a conflict with the dispatch's current state.
    return problem_response(409, "Not possible in the dispatch's current state", str(exc),
                            current_status=exc.current, requested_status=exc.wanted)


@svc.on_startup
async def _setup() -> None:
    fy = fiscal_year(datetime.now(JST).date())
    await store.setup([fy - 1, fy, fy + 1])
    await store.dispatches.create_index("status")
    await worklists.ensure_indexes(svc.db)


app = svc.app

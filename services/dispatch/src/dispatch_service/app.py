"""Wiring of the dispatch service: HTTP API, saga consumers of budget answers, read models."""
from datetime import datetime

from contracts.vocab import fiscal_year
from dispatch_service import saga
from dispatch_service.consumers import budget_handlers, read_model_handlers
from dispatch_service.domain.dispatch import JST
from dispatch_service.http import router
from dispatch_service.store import Store
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
svc.app.state.saga_params = saga.params_from_env()
svc.background("budget-saga-clock")(lambda: saga.run(store, svc.app.state.saga_params))


@svc.on_startup
async def _setup() -> None:
    fy = fiscal_year(datetime.now(JST).date())
    await store.setup([fy - 1, fy, fy + 1])
    await store.dispatches.create_index("status")


app = svc.app

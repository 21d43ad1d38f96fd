"""Wiring of the dispatch service: HTTP API, saga consumers of budget answers, read models.

    uvicorn --factory dispatch_service.app:create_app
"""
from datetime import datetime

from fastapi import FastAPI

from contracts.events.dispatch import DispatchStatus, DispatchStatusChanged
from contracts.events.identity import BusinessProfileChanged, BusinessRegistered, PlatformRegistered
from contracts.events.ratings import RatingGiven
from contracts.vocab import fiscal_year
from dispatch_service import ebpm_counters, history, integrity, outcomes, saga, worklists
from dispatch_service.consumers import budget_handlers, read_model_handlers
from dispatch_service.domain.dispatch import JST
from dispatch_service.http import router
from dispatch_service.ebpm_reports import router as ebpm_router
from dispatch_service.metrics import SagaStates
from dispatch_service.settings import DispatchSettings
from dispatch_service.store import Store
from servicekit import ebpm_keys
from servicekit.bus import processing
from servicekit.service import Service
from servicekit.settings import Settings, settings_for


def in_turn(*handlers):
    """One message type, several idempotent reactions, in order."""
    async def handle(env, e) -> None:
        for h in handlers:
            await h(env, e)
    return handle


def create_app(settings: Settings | None = None) -> FastAPI:
    """The dispatch service's app, built from `settings` (default: the environment's, read now)."""
    settings = settings_for(DispatchSettings, "dispatch", settings)
    svc = Service("dispatch", title="Expert dispatch", outbox=["dispatches", "outcome_surveys", *history.OUTBOX],
                  produces=["dispatch.events", "dispatch.history", "budget.commands", "notifications.commands"],
                  settings=settings)
    store = Store(svc)
    svc.app.state.store = store
    experts, ratings, identity = read_model_handlers(store)
    signals = integrity.Integrity(store, settings.integrity_params())  # R-DSP-15, from dispatch's own events and others'
    own, rated, businesses = signals.handlers()
    surveys = outcomes.Outcomes(store, settings.outcome_params())    # R-REC-08
    ebpm = ebpm_counters.Counters(svc.db, lambda: ebpm_keys.params(svc.db, settings))  # R-REC-07, R-OPS-03
    svc.app.state.ebpm_counters = ebpm
    surveys.on_counted = ebpm.on_survey   # a survey scheduled or answered: its business's outcome cells
    budget_single, budget_batch = budget_handlers(store)
    svc.consume("budget.events", budget_single, batch=budget_batch)
    svc.consume("experts.events", experts)
    svc.consume("ratings.events", {**ratings, RatingGiven: in_turn(ratings[RatingGiven], rated[RatingGiven])})
    svc.consume("identity.events", {
        **identity, **businesses,
        PlatformRegistered: in_turn(identity[PlatformRegistered], ebpm.on_platform),
        BusinessRegistered: in_turn(businesses[BusinessRegistered], ebpm.on_business),
        BusinessProfileChanged: in_turn(businesses[BusinessProfileChanged], ebpm.on_business)})
    svc.app.include_router(router)
    svc.app.include_router(worklists.router)
    svc.app.include_router(ebpm_router)  # R-REC-07
    worklist = worklists.handlers(svc)

    async def statuses(items) -> None:
        """Dispatch's own status events in a batch: integrity (the accepted ones' pairs together) and surveys per event,
        the worklist and the EBPM rows once per dispatch and business (the same reactions as one at a time; `in_turn`
        below for single messages)."""
        for env, e in items:
            with processing(env):
                if e.status != DispatchStatus.ACCEPTED:
                    await own[DispatchStatusChanged](env, e)
                await surveys.on_status(env, e)
        if accepted := [(env, e) for env, e in items if e.status == DispatchStatus.ACCEPTED]:
            await signals.on_accepted(accepted)  # the pairs of the batch indexed and read together
        await worklists.on_statuses(svc.db, items)
        await ebpm.on_dispatches(items)

    svc.consume("dispatch.events", {DispatchStatusChanged: in_turn(own[DispatchStatusChanged], surveys.on_status,
                                                                   worklist[DispatchStatusChanged], ebpm.on_dispatch)},
                batch={DispatchStatusChanged: statuses})
    svc.app.state.saga_params = settings.saga_params()
    svc.background("budget-saga-clock")(lambda: saga.run(store, svc.app.state.saga_params))
    svc.app.state.outcomes = surveys
    support = history.SupportHistory(store, settings.follow_up_params())  # R-POR-06, R-DSP-05
    svc.app.state.history = support
    svc.background("follow-up-reminders")(lambda: history.run(support, settings.follow_up_sweep_seconds))
    svc.background("outcome-surveys")(lambda: outcomes.run(surveys, settings.outcome_sweep_seconds))
    svc.background("ebpm-counters")(lambda: ebpm_counters.run(ebpm, settings.ebpm_sweep_seconds))
    svc.background("saga-state-counts")(SagaStates(store).run)
    svc.background("expert-response-clock")(lambda: signals.run(settings.integrity_sweep_seconds))

    @svc.on_startup
    async def _setup() -> None:
        fy = fiscal_year(datetime.now(JST).date())
        await store.setup([fy - 1, fy, fy + 1])
        await signals.setup()
        await surveys.setup()
        await support.setup()
        await store.dispatches.create_index("status")
        await worklists.ensure_indexes(svc.db)
        await ebpm.setup()   # after the worklist's indexes; marks existing businesses for counting once

    return svc.app

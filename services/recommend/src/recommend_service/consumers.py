"""Kafka handlers of the recommend service: learn business profiles and push matching programmes (R-NOT-01)."""
from __future__ import annotations

from contracts import Envelope
from contracts.events.identity import BusinessProfileChanged, BusinessRegistered
from contracts.events.recommend import ProgrammeAdded
from recommend_service import store


def _profile(e, env: Envelope) -> dict:
    return {"name": e.name, "prefecture": e.prefecture, "industry": e.industry, "employees": e.employees,
            "corporate_number": e.corporate_number, "updated_at": env.occurred_at}


def identity_handlers(svc):
    async def on_business_registered(env: Envelope, e: BusinessRegistered) -> None:
        # identity publishes the registration with the registering account as actor: that account owns it.
        await store.learn_profile(svc, e.business_id, {**_profile(e, env), "registered_at": env.occurred_at},
                                  env.actor, env)

    async def on_profile_changed(env: Envelope, e: BusinessProfileChanged) -> None:
        await store.learn_profile(svc, e.business_id, {**_profile(e, env), "profile_version": e.profile_version,
                                                      "financials": [f.model_dump() for f in e.financials]},
                                  env.actor, env)

    return {BusinessRegistered: on_business_registered, BusinessProfileChanged: on_profile_changed}


def own_handlers(svc):
    async def on_programme_added(env: Envelope, e: ProgrammeAdded) -> None:
        await store.push_programme(svc, e.model_dump(mode="json"), env)

    return {ProgrammeAdded: on_programme_added}

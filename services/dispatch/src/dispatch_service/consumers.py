"""Kafka handlers of the dispatch service: the budget answers of the saga, and read models of experts,
pending ratings and platform memberships. Idempotent: saga answers match only the command id the
dispatch is waiting for in the status that waits for it; read models apply each event id once."""
from __future__ import annotations

import logging

from contracts import Envelope
from contracts.events.budget import BudgetCommitted, BudgetRefunded, BudgetRefused, BudgetReleased, BudgetReserved
from contracts.events.experts import ExpertChanged
from contracts.events.identity import BindingChanged, MembershipChanged, OrganisationRegistered, PlatformRegistered
from contracts.events.ratings import RatingGiven, RatingOwed
from dispatch_service.domain.dispatch import Dispatch
from dispatch_service.store import Store, now
from servicekit.refusals import Rejected
from servicekit.store import apply_once

log = logging.getLogger("dispatch.consumers")


def budget_handlers(store: Store):
    """The saga's reaction table: each budget answer is a method of the aggregate (domain.dispatch)."""

    def react(name: str, env: Envelope, e):
        return lambda d: {
            "reserved": lambda a: a.on_reserved(e, env.event_id),
            "refused": lambda a: a.on_budget_refused(e),
            "committed": lambda a: a.on_committed(e, env.event_id),
            "released": lambda a: a.on_released(e),
            "refunded": lambda a: a.on_refunded(e),
        }[name](Dispatch(d, now()))

    def handler(name: str):
        async def handle(env: Envelope, e) -> None:
            try:
                await store.change(e.dispatch_id, react(name, env, e), actor="budget", cause=env, reload=False)
            except Rejected as r:
                if r.kind != "not_found":
                    raise
                log.warning("budget answer for an unknown dispatch", extra={"fields": {"dispatch_id": e.dispatch_id}})
        return handle

    return {BudgetReserved: handler("reserved"), BudgetRefused: handler("refused"),
            BudgetCommitted: handler("committed"), BudgetReleased: handler("released"),
            BudgetRefunded: handler("refunded")}


def read_model_handlers(store: Store):
    db = store.db

    async def on_expert(env: Envelope, e: ExpertChanged) -> None:
        # Event-carried state: the latest event is the expert's whole dispatch-relevant state.
        await apply_once(db.experts, e.expert_id, env.event_id, {"$set": {
            "account_id": e.account_id, "status": e.status, "registered_fiscal_year": e.registered_fiscal_year,
            "name": e.name, "employer_org_id": e.employer_org_id,
            "personnel_cost_subsidised": e.personnel_cost_subsidised,
            "related_business_ids": e.related_business_ids,
            "unavailable": [{"start": u.start.isoformat(), "end": u.end.isoformat(), "note": u.note}
                            for u in e.unavailable],
            "paused": e.paused, "open_cap": e.open_cap, "weekdays": list(e.weekdays), "updated_at": env.occurred_at}})

    async def on_owed(env: Envelope, e: RatingOwed) -> None:
        await apply_once(db.pending_ratings, e.owed_id, env.event_id, {
            "$set": {"business_id": e.business_id, "dispatch_id": e.dispatch_id, "expert_id": e.expert_id,
                     "rater_kind": e.rater_kind, "rater_account_id": e.rater_account_id, "since": e.since},
            "$setOnInsert": {"given": False}})

    async def on_given(env: Envelope, e: RatingGiven) -> None:
        await apply_once(db.pending_ratings, e.owed_id, env.event_id, {
            "$set": {"business_id": e.business_id, "dispatch_id": e.dispatch_id, "expert_id": e.expert_id,
                     "rater_kind": e.rater_kind, "rater_account_id": e.rater_account_id, "given": True,
                     "given_at": env.occurred_at}})

    async def on_platform(env: Envelope, e: PlatformRegistered) -> None:
        await apply_once(db.platforms, e.platform_id, env.event_id, {"$set": {"bureau_id": e.bureau_id,
                                                                             "fiscal_year": e.fiscal_year}})
        for m in e.members:
            await apply_once(db.memberships, f"{e.platform_id}:{m.org_id}", env.event_id, {"$set": {
                "platform_id": e.platform_id, "org_id": m.org_id, "member_role": m.member_role,
                "fiscal_year": e.fiscal_year}})

    async def on_membership(env: Envelope, e: MembershipChanged) -> None:
        await apply_once(db.memberships, f"{e.platform_id}:{e.org_id}", env.event_id, {"$set": {
            "platform_id": e.platform_id, "org_id": e.org_id, "member_role": e.member_role}})

    async def on_binding(env: Envelope, e: BindingChanged) -> None:
        """R-ID-07: who the business's people are (route A names the prime account as the one who rates)."""
        if e.role == "prime":
            update = {"$set": {"prime": e.account_id}}
        elif e.role == "member":
            update = {"$addToSet": {"members": e.account_id}}
        else:
            update = {"$pullAll": {"members": [e.account_id]}}
        await apply_once(db.business_people, e.business_id, env.event_id, update)

    async def on_organisation(env: Envelope, e: OrganisationRegistered) -> None:
        """R-POR-06: the institutions a business may share its support history with, by name."""
        await apply_once(db.organisations, e.org_id, env.event_id, {"$set": {
            "name": e.name, "kind": e.kind, "institution_type": e.institution_type, "prefecture": e.prefecture}})

    return ({ExpertChanged: on_expert}, {RatingOwed: on_owed, RatingGiven: on_given},
            {PlatformRegistered: on_platform, MembershipChanged: on_membership, BindingChanged: on_binding,
             OrganisationRegistered: on_organisation})

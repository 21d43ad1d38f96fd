"""Kafka handlers of the dispatch service: the budget answers of the saga, and read models of experts,
pending ratings and platform memberships. Idempotent: saga answers match only the command id the
dispatch is waiting for in the status that waits for it; read models apply each event id once."""
from __future__ import annotations

import logging

from contracts import Envelope
from contracts.events.budget import (BudgetCommitted, BudgetRefused, BudgetReleased, BudgetReserved, ReleaseBudget)
from contracts.events.experts import ExpertChanged
from contracts.events.identity import BindingChanged, MembershipChanged, PlatformRegistered
from contracts.events.ratings import RatingGiven, RatingOwed
from dispatch_service.domain.saga import waiting_for
from dispatch_service.domain.slots import gives_back
from dispatch_service.store import Store, new_id, now
from servicekit.problems import Problem
from servicekit.store import apply_once

log = logging.getLogger("dispatch.consumers")


def budget_handlers(store: Store):
    async def on_reserved(env: Envelope, e: BudgetReserved) -> None:
        def decide(d: dict):
            if (d.get("reserve") or {}).get("command_id") != e.command_id or d.get("reserved"):
                return None  # not the answer we wait for, or a duplicate
            held = {"amount": e.amount, "at": now(), "event_id": env.event_id}
            if waiting_for(d) == "reserve":
                # Saga step 3: reserved, then approved (the request was screened before reserving); also late.
                upd = Store.step(d, "reserved", "approved", actor="budget")
                upd["$set"]["reserved"] = held
                return upd, [store.status_event(d, "reserved", cause=env), store.status_event(d, "approved", cause=env)]
            if d["status"] in ("cancelled", "refused") and not d.get("release"):
                # Cancelled (or refused by the desk) while the reservation was on its way: release it.
                rel = ReleaseBudget(command_id=new_id("release"), frame_id=e.frame_id, dispatch_id=d["_id"],
                                    reason="cancelled before the reservation was answered")
                return ({"$set": {"reserved": held, "release": {"command_id": rel.command_id, "sent_at": now()}}},
                        [store.svc.event(rel, cause=env)])
            return None

        await _apply(store, e.dispatch_id, decide, "dispatch.BudgetReservedIgnored")

    async def on_refused(env: Envelope, e: BudgetRefused) -> None:
        def decide(d: dict):
            if (d.get("reserve") or {}).get("command_id") != e.command_id or waiting_for(d) != "reserve":
                return None
            code = f"budget_{e.reason_code}"
            upd = Store.step(d, "refused", actor="budget", reason_code=code)
            upd["$set"].update(reason_code=code, reason=e.reason, **gives_back(),
                               refusals=[{"code": code, "rule": "R-DSP-08", "message": e.reason}])
            return upd, [store.status_event(d, "refused", cause=env, reason_code=code, reason=e.reason)]

        doc = await _apply(store, e.dispatch_id, decide, "dispatch.BudgetRefused")
        if doc is not None and doc.get("_changed"):  # refused now: the free dispatch is given back (R-DSP-03)
            await store.release_slot(doc["business_id"], doc["fiscal_year"], doc["_id"])

    async def on_committed(env: Envelope, e: BudgetCommitted) -> None:
        def decide(d: dict):
            if (d.get("commit") or {}).get("command_id") != e.command_id or waiting_for(d) != "commit":
                return None
            upd = Store.step(d, "paid", actor="budget")
            upd["$set"]["payment"] = {"spent": e.spent, "returned": e.returned, "uncovered": e.uncovered, "at": now(),
                                      "command_id": e.command_id, "event_id": env.event_id}
            code = reason = None
            if e.uncovered:  # never a silent shortfall: the agency decides (R-BUD-03, R-DSP-10)
                code, reason = "fee_above_reservation", (f"{e.uncovered} yen of the fee and travel were not covered "
                                                         "by the frame; the agency decides how they are settled.")
                upd["$set"]["shortfall"] = {"amount": e.uncovered, "status": "open", "at": now()}
            return upd, [store.status_event(d, "paid", cause=env, fee=d.get("fee"), travel=d.get("travel"),
                                            reason_code=code, reason=reason)]

        await _apply(store, e.dispatch_id, decide, "dispatch.BudgetCommitted")

    async def on_released(env: Envelope, e: BudgetReleased) -> None:
        def decide(d: dict):
            rel = d.get("release") or {}
            if rel.get("command_id") != e.command_id or rel.get("confirmed_at"):
                return None
            return {"$set": {"release.confirmed_at": now(), "release.amount": e.amount}}, []

        await _apply(store, e.dispatch_id, decide, "dispatch.BudgetReleased")

    return {BudgetReserved: on_reserved, BudgetRefused: on_refused, BudgetCommitted: on_committed,
            BudgetReleased: on_released}


async def _apply(store: Store, dispatch_id: str, decide, action: str) -> dict | None:
    """Applies a budget answer; returns the dispatch as it was before, with `_changed` if the answer changed it."""
    try:
        return await store.mutate(dispatch_id, decide, actor="budget", action=action, reload=False)
    except Problem as p:
        if p.status != 404:
            raise
        log.warning("budget answer for an unknown dispatch", extra={"fields": {"dispatch_id": dispatch_id}})
        return None


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
            "updated_at": env.occurred_at}})

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

    return ({ExpertChanged: on_expert}, {RatingOwed: on_owed, RatingGiven: on_given},
            {PlatformRegistered: on_platform, MembershipChanged: on_membership, BindingChanged: on_binding})

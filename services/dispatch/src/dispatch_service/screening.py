"""Gathers what screening needs from the store and turns a request into an accepted or refused
dispatch, with its events (the first half of the dispatch saga; rules live in `domain`)."""
from __future__ import annotations

import asyncio
import os
from datetime import date, datetime

from contracts.events.budget import ReserveBudget, frame_id
from dispatch_service.domain import (RECEIVED_STATUSES, Application, History, PlannedVisit, estimate_fee,
                                     fee_exemption, refusal, screen)
from dispatch_service.domain.dispatch import JST, Change, Dispatch
from dispatch_service.domain.fees import VisitTime
from dispatch_service.store import SLOT_NUMBERS, Store, new_id


def planned(doc: dict) -> tuple[PlannedVisit, ...]:
    return tuple(PlannedVisit(date.fromisoformat(v["day"]), v["hours"], v["mode"]) for v in doc["planned_visits"])


async def prior_platform_dispatch(store: Store, business_id: str) -> dict | None:
    """R-DSP-02(a): the latest route-A dispatch this business has received."""
    cur = store.dispatches.find({"business_id": business_id, "route": "A", "status": {"$in": sorted(RECEIVED_STATUSES)}},
                                {"platform_id": 1, "institution_id": 1, "created_at": 1}).sort("created_at", -1).limit(1)
    async for d in cur:
        return d
    return None


async def _none() -> None:
    return None


async def held_consultation(store: Store, business_id: str, expert_id: str) -> dict | None:
    return await store.db.consultations.find_one({"business_id": business_id, "expert_id": expert_id, "held": True},
                                                 {"_id": 1})


async def screen_request(store: Store, doc: dict, *, token_rights: frozenset[str] = frozenset(), actor: str,
                         now: datetime) -> Change:
    """Screens `doc` (status `requested`): the accepted dispatch holds one of the business's free dispatches (its slot
    claimed here; the reconciler frees it if the write never comes) and carries its ReserveBudget command (R-DSP-08),
    the refused one its reasons. The caller writes the Change in ONE write."""
    # the reads are independent of each other: asked at once (the request waits for the slowest, not their sum)
    route_b = doc["route"] == "B"
    p, (expert_doc, expert), held, pending, member, prior, consultation = await asyncio.gather(
        store.programme(doc["fiscal_year"]), store.expert(doc["expert_id"]),
        store.used_free_by_id(doc["business_id"], doc["fiscal_year"]), store.pending_ratings(doc["business_id"]),
        store.membership(doc.get("platform_id"), doc.get("institution_id") or ""),
        prior_platform_dispatch(store, doc["business_id"]) if route_b else _none(),
        held_consultation(store, doc["business_id"], doc["expert_id"]) if route_b else _none())
    if max(p.free_dispatches, p.free_dispatches_extended) > SLOT_NUMBERS:  # a programme with more free dispatches
        held = await store.used_free_by_id(doc["business_id"], doc["fiscal_year"], p)
    used = [d for d in held if d != doc["_id"]]
    history = History(used_free=len(used), pending_ratings=pending)
    extra: dict = {}
    if prior:  # route B is paid from the frame of the platform that served the business before
        extra.update(platform_id=prior.get("platform_id"), institution_id=prior.get("institution_id"))
    d = doc.get("declarations", {})
    a = Application(
        route=doc["route"], business_id=doc["business_id"], fiscal_year=doc["fiscal_year"], issue=doc["issue"],
        issue_kind=doc.get("issue_kind"), beyond_self_help=doc["beyond_self_help"],
        needs_specialist=doc["needs_specialist"], support_kinds=frozenset(doc["support_kinds"]),
        advisory_contract=d.get("advisory_contract", False), solicited_by_expert=d.get("solicited_by_expert", False),
        dates_fixed_without_desk=d.get("dates_fixed_without_desk", False), planned=planned(doc),
        token_rights=token_rights, member_role=member.get("member_role") if member else None,
        member_left=bool(member and member.get("member_role") is None),
        prior_platform_dispatch=prior is not None, consultation_held=consultation is not None,
        cosigned=bool(doc.get("cosigned_at")),
        requested_on=doc["created_at"].astimezone(JST).date(), screened_on=now.astimezone(JST).date())
    refusals = screen(a, expert, history, p)
    if expert_doc is not None:
        extra["expert_account_id"] = expert_doc["account_id"]
    merged = {**doc, **extra}
    aggregate = Dispatch(merged, now)
    if not refusals and not await store.claim_slot(doc["business_id"], doc["fiscal_year"], doc["_id"],
                                                   p.free_cap(doc.get("issue_kind")), used=held):
        refusals = [refusal("free_cap_reached")]  # a concurrent request took the last free dispatch
    if not refusals and store.svc.settings.fault_crash_after_slot_claim == "true":
        os._exit(137)  # test hook: die between the slot claim and the request's write (the reconciler's case)
    if refusals:
        return aggregate.refuse_screened(refusals, actor=actor, extra=extra)
    exemption = fee_exemption(expert_employer_id=expert_doc.get("employer_org_id"),
                              requesting_institution_id=merged.get("institution_id"),
                              personnel_cost_subsidised=bool(expert_doc.get("personnel_cost_subsidised")))
    est = estimate_fee([VisitTime(v.day, round(v.hours * 60), v.mode) for v in a.planned], p,
                       travel=doc.get("travel_estimate", 0), exemption=exemption)
    command = ReserveBudget(command_id=new_id("reserve"), frame_id=frame_id(doc["fiscal_year"], merged["platform_id"]),
                            dispatch_id=doc["_id"], member_id=merged["institution_id"], fee=est.fee, travel=est.travel)
    return aggregate.accept(reserve=command, exemption=exemption, actor=actor, extra=extra)

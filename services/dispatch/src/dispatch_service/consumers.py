"""Kafka handlers of the dispatch service: the budget answers of the saga, and read models of experts,
pending ratings and platform memberships. Idempotent: saga answers match only the command id the
dispatch is waiting for in the status that waits for it; read models apply each event id once."""
from __future__ import annotations

import logging

from pymongo import UpdateOne

from contracts import Envelope
from contracts.events.budget import BudgetCommitted, BudgetRefunded, BudgetRefused, BudgetReleased, BudgetReserved
from contracts.events.experts import ExpertChanged
from contracts.events.identity import BindingChanged, MembershipChanged, OrganisationRegistered, PlatformRegistered
from contracts.events.ratings import RatingGiven, RatingOwed
from dispatch_service.domain.dispatch import Dispatch
from dispatch_service.store import Store, now
from servicekit import aggregate
from servicekit.bus import processing
from servicekit.refusals import Rejected
from servicekit.store import apply_once, with_outbox

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

    single = {BudgetReserved: handler("reserved"), BudgetRefused: handler("refused"),
              BudgetCommitted: handler("committed"), BudgetReleased: handler("released"),
              BudgetRefunded: handler("refunded")}
    names = {BudgetReserved: "reserved", BudgetRefused: "refused", BudgetCommitted: "committed",
             BudgetReleased: "released", BudgetRefunded: "refunded"}

    async def on_answers(items: list[tuple[Envelope, object]]) -> None:
        """A batch of budget answers (what one poll returned). Each dispatch is its own aggregate: the first answer of
        each dispatch in the batch is decided by the same method of the aggregate as one at a time, on the dispatches
        read with one `_id: {$in}`, and all of them are written with ONE bulk write of per-dispatch updates guarded by
        the version read, each with its events (outbox `$push`). A dispatch's later answers in the same batch (e.g. a
        duplicate), and every dispatch of a bulk write in which some guard did not match (changed concurrently), go
        through the single-message path afterwards, in order: the aggregate's methods ignore an answer already
        applied, so nothing is applied twice."""
        first: dict[str, tuple[Envelope, object]] = {}
        later: list[tuple[Envelope, object]] = []
        for env, e in items:
            if e.dispatch_id in first:
                later.append((env, e))
            else:
                first[e.dispatch_id] = (env, e)
        docs = {d["_id"]: d async for d in store.dispatches.find({"_id": {"$in": list(first)}}, {"_seen": 0})}
        ops, written, released, handed, afters = [], [], [], {}, []
        for dispatch_id, (env, e) in first.items():
            doc = docs.get(dispatch_id)
            outbox_was_empty = doc is not None and store.svc.nothing_to_publish(doc.pop("_outbox", None))
            if doc is None:
                log.warning("budget answer for an unknown dispatch", extra={"fields": {"dispatch_id": dispatch_id}})
                continue
            with processing(env):  # the answer's own trace goes on through the events it causes
                ch = react(names[type(e)], env, e)(doc)
                if ch is None:
                    continue  # not the answer the dispatch waits for, or one already applied
                update, events = store.written(doc, ch, actor="budget", cause=env)
            if not events:  # a change that publishes nothing gets its audit entry on the single path (rare)
                later.insert(0, (env, e))
                continue
            filter_, version_set, drop = aggregate.guard(doc)
            change = aggregate.Change(set=update["$set"], push=update.get("$push", {}), events=events)
            ops.append(UpdateOne(filter_, with_outbox(aggregate.update_document(change, version_set, drop), events)))
            written.append(dispatch_id)
            afters.append(aggregate.after(doc, change, version_set, drop))
            if outbox_was_empty:  # guarded by the version read: matched, the outbox holds just these (Service.write)
                handed[dispatch_id] = events
            if ch.gives_back_slot:
                released.append(dispatch_id)
        if ops:
            res = await store.dispatches.bulk_write(ops, ordered=False)
            all_matched = res.matched_count == len(ops)  # else which did is unknown: the relay reads them all
            for dispatch_id in written:
                store.svc.relay.kick(store.dispatches, dispatch_id, handed.get(dispatch_id) if all_matched else None)
            for after in afters if all_matched else ():
                store.watched(after)  # answered: the re-send clock need not read it again
            if not all_matched:  # some dispatch changed meanwhile: decided again, one by one
                later = [first[d] for d in written] + later
        for env, e in later:
            await single[type(e)](env, e)
        if released:  # R-DSP-03: the free dispatch goes back for each refusal written (as Store.change does)
            async for d in store.dispatches.find({"_id": {"$in": released}, "slot_release": "pending"},
                                                 {"business_id": 1, "fiscal_year": 1}):
                await store.release_slot(d["business_id"], d["fiscal_year"], d["_id"])

    return single, {t: on_answers for t in single}


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
        if e.rater_kind == "business":  # indexed first: a crash in between leaves an id with no rating (counts none)
            await store.index_owed(e.business_id, e.owed_id)
        await apply_once(db.pending_ratings, e.owed_id, env.event_id, {
            "$set": {"business_id": e.business_id, "dispatch_id": e.dispatch_id, "expert_id": e.expert_id,
                     "rater_kind": e.rater_kind, "rater_account_id": e.rater_account_id, "since": e.since},
            "$setOnInsert": {"given": False}})

    async def on_given(env: Envelope, e: RatingGiven) -> None:
        if e.rater_kind == "business":
            await store.index_owed(e.business_id, e.owed_id)
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

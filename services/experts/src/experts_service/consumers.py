"""Kafka handlers of the experts service: platform members (identity), ratings summaries, dispatch
record, and forced exits. Each is idempotent (event ids, or newest-wins by `as_of`)."""
from __future__ import annotations

from contracts import Envelope
from contracts.events.dispatch import DispatchCompleted, DispatchStatusChanged
from contracts.events.experts import ExpertChanged
from contracts.events.identity import AccountRevoked, MembershipChanged, OrganisationRegistered, PlatformRegistered
from contracts.events.ratings import ExpertRadarUpdated
from experts_service import domain
from experts_service.store import REV, Store, now_iso
from servicekit.store import apply_once


def identity_handlers(svc, st: Store) -> dict:
    orgs = svc.db.orgs

    async def on_org(env: Envelope, e: OrganisationRegistered) -> None:
        await apply_once(orgs, e.org_id, env.event_id, {"$set": {"name": e.name, "kind": e.kind}})

    async def on_platform(env: Envelope, e: PlatformRegistered) -> None:
        # R-PF-04: each member's role in this platform decides whether it may recommend
        for m in e.members:
            await apply_once(orgs, m.org_id, env.event_id, {"$set": {f"memberships.{e.platform_id}": m.member_role}})

    async def on_membership(env: Envelope, e: MembershipChanged) -> None:
        key = f"memberships.{e.platform_id}"
        update = {"$unset": {key: ""}} if e.member_role is None else {"$set": {key: e.member_role}}
        await apply_once(orgs, e.org_id, env.event_id, update)

    return {OrganisationRegistered: on_org, PlatformRegistered: on_platform, MembershipChanged: on_membership}


def add_revocation_handler(svc, st: Store, consumer) -> None:
    """R-ID-06 forced exit: besides refusing the account's tokens (servicekit's handler, kept), the
    expert whose account was revoked leaves the programme and is never offered for dispatch again."""
    async def on_revoked(env: Envelope, e: AccountRevoked) -> None:  # added after servicekit's handler (Consumer.add)
        st.revoked.add(e.account_id)
        doc = await st.experts.find_one({"account_id": e.account_id}, {"_id": 1})
        if doc is not None:  # force_exit is idempotent: a redelivery changes nothing
            await st.mutate(doc["_id"], lambda s: domain.force_exit(s, f"account revoked: {e.reason}",
                                                                    by="identity", at=now_iso()),
                            actor=env.actor or "identity", cause=env)

    consumer.add({AccountRevoked: on_revoked})


def ratings_handlers(svc, st: Store) -> dict:
    async def on_radar(env: Envelope, e: ExpertRadarUpdated) -> None:
        # stored for the page and for replicas starting later; each replica's index applies it itself
        await st.save_radar(e.expert_id, {"averages": e.averages, "count": e.count, "window_days": e.window_days,
                                          "as_of": e.as_of.isoformat()})

    return {ExpertRadarUpdated: on_radar}


def own_event_handlers() -> dict:
    """Every replica's index feed applies `experts.events` (store.IndexFeed); this group consumer only validates
    them, so a record that breaks the contracts goes to the dead-letter topic once, not once per replica."""
    async def validated(env: Envelope, e: ExpertChanged) -> None:
        return None

    return {ExpertChanged: validated}


def dispatch_handlers(svc, st: Store) -> dict:
    async def on_completed(env: Envelope, e: DispatchCompleted) -> None:
        # R-EX-04: the record the renewal review sees
        await apply_once(st.experts, e.expert_id, env.event_id, {"$inc": {
            "record.dispatches": 1, f"record.by_fiscal_year.{e.fiscal_year}": 1, REV: 1}}, upsert=False)

    async def on_status(env: Envelope, e: DispatchStatusChanged) -> None:
        # R-EX-06: the expert's open dispatches decide whether matching still offers the expert
        if await st.experts.find_one({"_id": e.expert_id}, {"_id": 1}) is None:
            return
        await st.mutate(e.expert_id, lambda s: domain.track_dispatch(s, e.dispatch_id, e.status,
                                                                     env.occurred_at.isoformat()),
                        actor=env.actor or "dispatch", cause=env, action="experts.OpenDispatchesTracked")

    return {DispatchCompleted: on_completed, DispatchStatusChanged: on_status}

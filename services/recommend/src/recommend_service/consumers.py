"""Kafka handlers of the recommend service: learn business profiles, push matching programmes (R-NOT-01) and keep
the read models of interactions (R-REC-02, R-REC-05, R-OPS-03)."""
from __future__ import annotations

from contracts import Envelope
from contracts.events.community import PostingClosed, PostingPublished
from contracts.events.identity import BusinessProfileChanged, BusinessRegistered
from contracts.events.recommend import InteractionRecorded, ProgrammeAdded
from recommend_service import domain, store


def _profile(e, env: Envelope) -> dict:
    return {"name": e.name, "prefecture": e.prefecture, "industry": e.industry, "employees": e.employees,
            "corporate_number": e.corporate_number, "updated_at": env.occurred_at}


def _learnt(env: Envelope, e) -> tuple[str, dict, str | None, Envelope]:
    """(business, profile, owner, envelope) of a registration or a profile change; identity publishes the
    registration with the registering account as actor: that account owns the business."""
    if isinstance(e, BusinessRegistered):
        return e.business_id, {**_profile(e, env), "registered_at": env.occurred_at}, env.actor, env
    return e.business_id, {**_profile(e, env), "profile_version": e.profile_version,
                           "financials": [f.model_dump() for f in e.financials]}, env.actor, env


def identity_handlers(svc):
    """One event at a time: the consumer's way for a message of a batch that failed (so it alone is dead-lettered)."""
    async def on_profile(env: Envelope, e) -> None:
        await store.learn_profile(svc, *_learnt(env, e))

    return {BusinessRegistered: on_profile, BusinessProfileChanged: on_profile}


def identity_batch_handlers(svc):
    """What one poll returned (issue 22 item 1): registrations and profile changes of many businesses learnt with one
    write per profile, one per segment-index chunk and one merged `$inc` per peer group (store.learn_profiles)."""
    async def on_profiles(items: list[tuple[Envelope, object]]) -> None:
        await store.learn_profiles(svc, [_learnt(env, e) for env, e in items])

    return {BusinessRegistered: on_profiles, BusinessProfileChanged: on_profiles}


def own_handlers(svc):
    async def on_programme_added(env: Envelope, e: ProgrammeAdded) -> None:
        await store.push_programme(svc, e.model_dump(mode="json"), env)

    async def on_interaction(env: Envelope, e: InteractionRecorded) -> None:
        await store.count_interaction(svc.db, env.event_id, e.business_id, e.programme_id, e.kind, e.before,
                                      e.new_programme, domain.cell_key(e.prefecture, e.industry))

    return {ProgrammeAdded: on_programme_added, InteractionRecorded: on_interaction}


def community_handlers(svc):
    """R-POR-03 with R-REC-01: the community's open needs and offers, to recommend them like programmes."""
    async def on_posting(env: Envelope, e: PostingPublished) -> None:
        key = f"{10**17 - int(env.occurred_at.timestamp() * 1_000_000):017d}"  # newest first
        await store.learn_posting(svc.db, {"_id": e.posting_id, "title": e.title, "direction": e.direction,
                                           "kind": e.kind, "region": e.region, "industry": e.industry,
                                           "owner_kind": e.owner_kind, "owner_id": e.owner_id, "status": "open",
                                           "key": key, "at": env.occurred_at})

    async def on_closed(env: Envelope, e: PostingClosed) -> None:
        await store.close_posting(svc.db, e.posting_id)

    return {PostingPublished: on_posting, PostingClosed: on_closed}

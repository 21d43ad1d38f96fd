"""Kafka handlers of the community service: what joint ordering (R-POR-04) needs to know from identity — where each
business is and which prefectures each platform supports. Idempotent: each keeps the fact of the latest event it saw
(by occurrence time), so a redelivered or older event changes nothing."""
from __future__ import annotations

from pymongo.errors import DuplicateKeyError

from contracts import Envelope
from contracts.events.identity import (BusinessProfileChanged, BusinessRegistered, PlatformAreaChanged,
                                       PlatformRegistered)


async def _keep(col, key: str, fields: dict, env: Envelope) -> None:
    """Sets `fields` on `key` unless a later event already did."""
    at = env.occurred_at
    res = await col.update_one({"_id": key, "at": {"$lte": at}}, {"$set": {**fields, "at": at}})
    if res.matched_count == 0:
        try:
            await col.insert_one({"_id": key, **fields, "at": at})
        except DuplicateKeyError:
            pass  # a later event set it already


def identity_handlers(svc):
    async def on_business(env: Envelope, e: BusinessRegistered | BusinessProfileChanged) -> None:
        await _keep(svc.db.places, e.business_id, {"prefecture": e.prefecture}, env)

    async def on_platform(env: Envelope, e: PlatformRegistered) -> None:
        await _keep(svc.db.platform_areas, e.platform_id, {"prefectures": sorted(set(e.area_prefectures)),
                                                          "name": e.name}, env)

    async def on_area(env: Envelope, e: PlatformAreaChanged) -> None:
        await _keep(svc.db.platform_areas, e.platform_id, {"prefectures": sorted(set(e.prefectures))}, env)

    return {BusinessRegistered: on_business, BusinessProfileChanged: on_business, PlatformRegistered: on_platform,
            PlatformAreaChanged: on_area}

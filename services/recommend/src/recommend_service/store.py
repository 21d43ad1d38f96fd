"""MongoDB access of the recommend service: catalogue seeding, push bookkeeping (R-NOT-01)."""
from __future__ import annotations

from pymongo.errors import DuplicateKeyError

from contracts import Envelope
from contracts.events.notifications import Notify
from recommend_service import domain


async def seed_catalogue(db, catalogue: list[dict]) -> None:
    """R-REC-04: loads the seeded programmes; idempotent by programme id (an operator's edits are kept)."""
    for p in catalogue:
        await db.programmes.update_one({"_id": p["programme_id"]},
                                       {"$setOnInsert": {k: v for k, v in p.items() if k != "programme_id"}}, upsert=True)
    await db.interactions.create_index("business_id")
    await db.business_profiles.create_index("owner")


async def programmes(db) -> list[dict]:
    return [{"programme_id": d["_id"], **{k: v for k, v in d.items() if k not in ("_id", "_outbox")}}
            async for d in db.programmes.find({}, {"_outbox": 0}).sort("_id")]


def notify_events(svc, business_id: str, owner: str | None, picked: list[dict], cause: Envelope | None) -> list[dict]:
    """R-NOT-01: one Notify per newly matching programme, with an id that never changes for the pair."""
    if not owner:
        return []
    return [svc.event(Notify(notification_id=domain.notification_id(business_id, p["programme_id"]), recipient_id=owner,
                             template="programme_recommended",
                             params={"title": p["name"], "url": f"/programmes/{p['programme_id']}",
                                     "business_id": business_id, "programme_id": p["programme_id"]}),
                      cause=cause) for p in picked]


async def learn_profile(svc, business_id: str, profile: dict, owner: str | None, env: Envelope) -> bool:
    """Stores the profile and pushes the programmes that now match and were never pushed, in ONE write
    guarded by the event id: a redelivered event changes nothing and notifies nobody twice."""
    db = svc.db
    old = await db.business_profiles.find_one({"_id": business_id}, {"notified": 1, "owner": 1, "_seen": 1})
    if old and env.event_id in (old.get("_seen") or []):
        return False
    owner = (old or {}).get("owner") or owner
    catalogue = await programmes(db)
    ids = set(domain.to_push(catalogue, profile, set((old or {}).get("notified") or [])))
    picked = [p for p in catalogue if p["programme_id"] in ids] if owner else []
    update = {"$set": {**profile, "owner": owner, "size": domain.size_class(profile["industry"], profile["employees"])},
              "$push": {"_seen": {"$each": [env.event_id], "$slice": -50}}}
    if picked:
        update["$addToSet"] = {"notified": {"$each": [p["programme_id"] for p in picked]}}
    try:
        res = await svc.write(db.business_profiles, {"_id": business_id, "_seen": {"$ne": env.event_id}}, update,
                              events=notify_events(svc, business_id, owner, picked, env), upsert=True)
    except DuplicateKeyError:
        return False
    return res.matched_count == 1 or res.upserted_id is not None


async def push_programme(svc, programme: dict, env: Envelope) -> int:
    """R-NOT-01: a new programme is pushed to every business it matches that has not had it yet."""
    n = 0
    async for b in svc.db.business_profiles.find({"notified": {"$ne": programme["programme_id"]}},
                                                  {"_outbox": 0, "_seen": 0}):
        profile = {k: b.get(k) for k in ("industry", "prefecture", "employees")}
        if None in profile.values() or not domain.to_push([programme], profile, set()):
            continue
        res = await svc.write(svc.db.business_profiles, {"_id": b["_id"], "notified": {"$ne": programme["programme_id"]}},
                              {"$addToSet": {"notified": programme["programme_id"]}},
                              events=notify_events(svc, b["_id"], b.get("owner"), [programme], env))
        n += res.modified_count
    return n

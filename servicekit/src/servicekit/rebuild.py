"""Rebuilds a read model from its topic (R-OPS-02): empties its collections and replays the topic from the
beginning through the service's own handlers.

    python -m servicekit.rebuild SERVICE            lists the service's read models
    python -m servicekit.rebuild SERVICE NAME       rebuilds one, e.g. `budget memberships`, `ratings deny-list`

A read model is what a service declared with `Service.read_model(name, topic, types, collections)`: collections
kept only by its handlers of those message types, each idempotent by event id. Run it with the same environment
as the service (MONGO_URI, MONGO_DB, KAFKA_BOOTSTRAP, TOPIC_PREFIX) and with the service stopped, so no live
event lands between emptying and replaying (the deny list, for one, would let a revoked token through
meanwhile). The service's consumer group offsets are not touched: started again, it goes on where it was and
drops what the replay already applied. Records that break the contracts are counted and skipped (they are on
the dead-letter topic already). An audit entry `ops.ReadModelRebuilt` records who rebuilt what.
"""
from __future__ import annotations

import asyncio
import importlib
import json
import os
import sys

from servicekit.bus import Undeliverable, decode
from servicekit.deadletters import read_to_end
from servicekit.faults import backoff, is_transient
from servicekit.store import record_audit


async def rebuild(svc, name: str, actor: str) -> dict:
    topic, types, collections = svc.read_models[name]
    consumer = svc._consumers[topic]
    models = {m.message_type: m for m in types}
    counts = {"records": 0, "applied": 0, "skipped": 0}
    for c in collections:
        await svc.db[c].delete_many({})  # emptied, not dropped: the indexes stay

    async def on_record(rec) -> None:
        try:
            decoded = decode(rec.value, models) if rec.key is not None else None
        except Undeliverable:
            counts["skipped"] += 1
            return
        if decoded is None:
            return
        env, msg = decoded
        _, handler = consumer.handlers[env.event_type]
        attempt = 0
        while True:
            try:
                await handler(env, msg)
                break
            except Exception as e:
                if not is_transient(e):
                    raise
                await asyncio.sleep(backoff(attempt))
                attempt += 1
        counts["applied"] += 1

    async for rec in read_to_end(svc.settings.kafka_bootstrap, [svc.settings.topic(topic)]):
        await on_record(rec)
        counts["records"] += 1
    await record_audit(svc.db, actor=actor, action="ops.ReadModelRebuilt", key=name,
                       payload={"topic": topic, "collections": list(collections), **counts})
    return counts


async def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    svc = importlib.import_module(f"{argv[0]}_service.app").create_app().state.service  # settings from the environment
    try:
        if len(argv) == 1:
            for name, (topic, types, collections) in svc.read_models.items():
                print(json.dumps({"read_model": name, "topic": topic, "collections": list(collections),
                                  "types": [t.message_type for t in types]}))
            return 0
        if argv[1] not in svc.read_models:
            print(f"{argv[0]} has no read model {argv[1]!r}; it has: {', '.join(svc.read_models)}", file=sys.stderr)
            return 2
        actor = os.environ.get("OPERATOR") or f"operator:{os.environ.get('USER', 'unknown')}"
        counts = await rebuild(svc, argv[1], actor)
        print(json.dumps({"read_model": argv[1], **counts}))
        return 0
    finally:
        await svc.mongo.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))

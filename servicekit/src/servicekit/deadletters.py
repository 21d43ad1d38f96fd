"""Dead-letter tooling for operators (R-OPS-02): list, inspect and replay dead letters after a fix.

    python -m servicekit.deadletters list   [--topic T] [--reason TEXT] [--key K]
    python -m servicekit.deadletters show   ID                         (ID = <dlq topic>/<partition>/<offset>)
    python -m servicekit.deadletters replay (--topic T | --reason TEXT | --key K | --id ID ... | --all) [--force]

A dead letter is the original record's bytes on `<topic>.dlq`, with its original headers and `x-dlq-reason`,
`x-dlq-consumer`, `x-dlq-source` (`<topic>/<partition>/<offset>` of the original). Replay publishes the same
bytes with the same key and headers back to the original topic, so every consumer sees the same event id and
the ones that applied it already drop it (their dedupe keeps replay idempotent). A record dead-lettered by
several consumers is replayed once. Each replay writes an audit entry (`ops.DeadLetterReplayed`, id
`replay:<source>`) in the operators' database; a source already replayed is skipped unless `--force`.

Environment: KAFKA_BOOTSTRAP, TOPIC_PREFIX, MONGO_URI, OPS_DB (default `smeportal_ops`), OPERATOR (the actor).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pymongo import AsyncMongoClient
from pymongo.errors import DuplicateKeyError

from contracts import TOPICS


@dataclass
class DeadLetter:
    id: str  # <dlq topic>/<partition>/<offset>
    key: str | None
    value: bytes
    headers: dict[str, str]

    @property
    def source(self) -> str:
        return self.headers.get("x-dlq-source", "")

    @property
    def source_topic(self) -> str:
        return self.source.rsplit("/", 2)[0]

    @property
    def reason(self) -> str:
        return self.headers.get("x-dlq-reason", "")

    @property
    def envelope(self) -> dict:
        try:
            doc = json.loads(self.value)
            return doc if isinstance(doc, dict) else {}
        except ValueError:
            return {}

    def summary(self) -> dict:
        env = self.envelope
        return {"id": self.id, "source": self.source, "consumer": self.headers.get("x-dlq-consumer"),
                "event_type": env.get("event_type"), "event_id": env.get("event_id"), "key": self.key,
                "reason": self.reason}


def dlq_topics(prefix: str, topic: str | None) -> list[str]:
    """The physical dead-letter topics to read: one logical topic (`dispatch.events` or `dispatch.events.dlq`)
    or every registered one."""
    if topic:
        logical = topic.removeprefix(prefix).removesuffix(".dlq")
        if logical not in TOPICS:
            raise SystemExit(f"unknown topic {topic!r}; known: {', '.join(sorted(TOPICS))}")
        return [prefix + TOPICS[logical].dlq]
    return [prefix + spec.dlq for spec in TOPICS.values()]


def matches(d: DeadLetter, *, reason: str | None = None, key: str | None = None, ids: list[str] | None = None) -> bool:
    return ((reason is None or reason.lower() in d.reason.lower()) and (key is None or d.key == key)
            and (not ids or d.id in ids))


async def read_to_end(bootstrap: str, topics: list[str]):
    """Yields every record now on `topics`, from the beginning to the end they have at the start (no consumer
    group: reading changes nothing). Topics that do not exist yield nothing."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(topics) if topics else []
    finally:
        await admin.close()
    tps = [TopicPartition(t["topic"], p["partition"]) for t in described if t["error_code"] == 0
           for p in t["partitions"]]
    if not tps:
        return
    # earliest: a fresh assignment starts there; with "latest" its reset raced the seek and sometimes won
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        todo = {tp for tp in tps if ends[tp] > await consumer.position(tp)}
        while todo:
            for tp, records in (await consumer.getmany(*todo, timeout_ms=1000)).items():
                for r in records:
                    if r.offset < ends[tp]:
                        yield r
                if await consumer.position(tp) >= ends[tp]:
                    todo.discard(tp)
    finally:
        await consumer.stop()


async def read_all(bootstrap: str, topics: list[str]) -> list[DeadLetter]:
    out = []
    async for r in read_to_end(bootstrap, topics):
        headers = {k: v.decode(errors="replace") for k, v in r.headers or ()}
        out.append(DeadLetter(f"{r.topic}/{r.partition}/{r.offset}",
                              r.key.decode(errors="replace") if r.key is not None else None, r.value, headers))
    return sorted(out, key=lambda d: (d.id.rsplit("/", 2)[0], int(d.id.rsplit("/", 2)[1]), int(d.id.rsplit("/", 1)[1])))


async def replay(letters: list[DeadLetter], *, bootstrap: str, audit, actor: str, force: bool = False) -> dict:
    """Publishes each dead letter's original record again (once per source record); returns counts."""
    counts = {"replayed": 0, "already_replayed": 0, "duplicates": 0, "no_source": 0}
    seen: set[str] = set()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for d in letters:
            if not d.source:
                counts["no_source"] += 1
                continue
            if d.source in seen:
                counts["duplicates"] += 1  # the same record, dead-lettered by another consumer too
                continue
            seen.add(d.source)
            audit_id = f"replay:{d.source}"
            if not force and await audit.find_one({"_id": audit_id}, {"_id": 1}):
                counts["already_replayed"] += 1
                continue
            headers = [(k, v.encode()) for k, v in d.headers.items() if not k.startswith("x-dlq-")]
            headers.append(("x-replayed-from", d.id.encode()))
            await producer.send_and_wait(d.source_topic, d.value, key=d.key.encode() if d.key is not None else None,
                                         headers=headers)
            env = d.envelope
            entry = {"at": datetime.now(UTC), "actor": actor, "action": "ops.DeadLetterReplayed", "key": d.key,
                     "topic": d.source_topic, "payload": {**d.summary(), "replayed_at": datetime.now(UTC).isoformat()}}
            try:
                await audit.insert_one({"_id": audit_id, **entry})
            except DuplicateKeyError:  # --force: a later replay of the same record gets its own entry
                await audit.insert_one({"_id": f"{audit_id}:{datetime.now(UTC).isoformat()}", **entry})
            counts["replayed"] += 1
            print(json.dumps({"replayed": d.id, "to": d.source, "event_id": env.get("event_id")}))
    finally:
        await producer.stop()
    return counts


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m servicekit.deadletters", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("list", "replay"):
        s = sub.add_parser(name)
        s.add_argument("--topic", help="the original topic, e.g. dispatch.events (default: every topic)")
        s.add_argument("--reason", help="text the dead-letter reason contains (case-insensitive)")
        s.add_argument("--key", help="the record's key (the aggregate id)")
        s.add_argument("--id", action="append", dest="ids", help="a dead letter's id (repeatable)")
        if name == "replay":
            s.add_argument("--all", action="store_true", help="replay every dead letter (needed without a filter)")
            s.add_argument("--force", action="store_true", help="replay sources already replayed once")
    s = sub.add_parser("show")
    s.add_argument("id", help="<dlq topic>/<partition>/<offset>")
    return p.parse_args(argv)


async def main(argv: list[str] | None = None) -> int:
    a = _args(argv)
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    prefix = os.environ.get("TOPIC_PREFIX", "")
    if a.command == "show":
        topic = a.id.rsplit("/", 2)[0]
        found = [d for d in await read_all(bootstrap, [topic]) if d.id == a.id]
        if not found:
            print(f"no dead letter {a.id}", file=sys.stderr)
            return 1
        d = found[0]
        print(json.dumps({**d.summary(), "headers": d.headers, "envelope": d.envelope or d.value.decode(errors="replace")},
                         indent=2, ensure_ascii=False, default=str))
        return 0
    letters = [d for d in await read_all(bootstrap, dlq_topics(prefix, a.topic))
               if matches(d, reason=a.reason, key=a.key, ids=a.ids)]
    if a.command == "list":
        for d in letters:
            print(json.dumps(d.summary(), ensure_ascii=False))
        print(json.dumps({"dead_letters": len(letters)}), file=sys.stderr)
        return 0
    if not (a.all or a.topic or a.reason or a.key or a.ids):
        print("replay needs a filter (--topic, --reason, --key, --id) or --all", file=sys.stderr)
        return 2
    mongo = AsyncMongoClient(os.environ.get("MONGO_URI", "mongodb://127.0.0.1:27017"), tz_aware=True)
    try:
        audit = mongo[os.environ.get("OPS_DB", "smeportal_ops")].audit
        actor = os.environ.get("OPERATOR") or f"operator:{os.environ.get('USER', 'unknown')}"
        counts = await replay(letters, bootstrap=bootstrap, audit=audit, actor=actor, force=a.force)
    finally:
        await mongo.close()
    print(json.dumps(counts), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

"""Bulk onboarding (R-OPS-03): the runner every service's operator import command shares.

A service supplies `convert(row) -> (document, [Envelope]) | reason`: the document and events its single-registration
route would write, or why the row is refused. The runner reads the file (JSON Lines, or CSV through the service's
`csv_row`), and per batch writes the documents with one `insert_many`, publishes their events as one pipelined batch
(acks=all, idempotent producer) and records their audit entries as the outbox relay does.

Why not through the outbox: clearing a million documents' `_outbox` one update at a time is the slowest write the
local server has. The import is instead the relay of its own writes: documents first, then their events with ids
derived from the row (the service's `convert` must make them stable), so a kill between the two loses nothing and a
redone batch republishes the very same events, which consumers drop by event id.

Idempotent: a document's `_id` comes from its row, so a row imported twice is a duplicate key, counted, not written.
Resumable: `FILE.progress` records the line reached after each finished batch; a killed import started again goes on
from there and redoes at most the batch in flight. Refused rows go to `FILE.rejected.jsonl` (line, reason, row),
never dropped silently, and the summary counts reasons.
"""
from __future__ import annotations

import asyncio
import csv
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable

from aiokafka import AIOKafkaProducer
from pymongo.errors import BulkWriteError

from contracts import Envelope
from servicekit.bus import ensure_topics
from servicekit.settings import Settings
from servicekit.store import connect


def rows(path: Path, csv_row: Callable[[dict], dict] = dict, after: int = 0):
    """(line number, row) of a JSON Lines file, or of a CSV file with a header row (`csv_row` shapes a record;
    empty cells are left out), from the line after `after` on (the lines before are skipped unread, so a resumed
    import starts at once). A line that is not JSON yields {"_unreadable": reason}."""
    with path.open(encoding="utf-8", newline="") as f:
        if path.suffix.lower() == ".csv":
            for n, rec in enumerate(csv.DictReader(f), start=2):
                if n <= after:
                    continue
                try:
                    yield n, csv_row({k: v for k, v in rec.items() if v not in (None, "")})
                except ValueError as e:
                    yield n, {"_unreadable": f"unreadable cell: {e}"}
        else:
            for n, line in enumerate(f, start=1):
                if n > after and line.strip():
                    try:
                        yield n, json.loads(line)
                    except json.JSONDecodeError as e:
                        yield n, {"_unreadable": f"not JSON: {e.msg}"}


def audit_entry(env: dict, topic: str) -> dict:
    """The audit entry of a published event, in the shape the outbox relay records."""
    return {"_id": env["event_id"], "at": env["occurred_at"], "actor": env.get("actor"), "action": env["event_type"],
            "key": env["key"], "topic": topic, "payload": env["payload"]}


async def _insert_new(col, docs: list[dict]) -> set:
    """Inserts the documents; returns the `_id`s that were already there."""
    if not docs:
        return set()
    try:
        await col.insert_many(docs, ordered=False)
    except BulkWriteError as e:
        if any(w["code"] != 11000 for w in e.details["writeErrors"]):
            raise
        return {docs[w["index"]]["_id"] for w in e.details["writeErrors"]}
    return set()


class Progress:
    """FILE.progress: the line reached and the counts so far, written atomically after each finished batch."""

    def __init__(self, path: Path):
        self.path = path
        self.state = json.loads(path.read_text()) if path.exists() else {
            "line": 0, "imported": 0, "duplicates": 0, "rejected": 0, "rejected_bytes": 0, "reasons": {}}

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, ensure_ascii=False))
        os.replace(tmp, self.path)


async def run_import(path: Path, *, settings: Settings, collection: str, topic: str,
                     convert: Callable[[dict], "tuple[dict, list[Envelope]] | str"],
                     csv_row: Callable[[dict], dict] = dict, batch: int = 1000, what: str = "rows", out=sys.stderr) -> dict:
    await ensure_topics(settings, {topic})
    mongo = connect(settings.mongo_uri)
    db = mongo[settings.database]
    physical = settings.topic(topic)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True,
                                linger_ms=5, max_batch_size=262144)
    await producer.start()
    progress = Progress(path.with_name(path.name + ".progress"))
    st = progress.state
    rejected_path = path.with_name(path.name + ".rejected.jsonl")
    with rejected_path.open("a", encoding="utf-8") as rej:
        rej.truncate(st["rejected_bytes"])  # what a killed run wrote after its last checkpoint goes
    total = sum(1 for _ in path.open(encoding="utf-8")) - (1 if path.suffix.lower() == ".csv" else 0)
    t0, start_line = time.perf_counter(), st["line"]
    resumed = [st["line"] > 0]  # the first batch of a resumed run republishes its duplicates' events too

    async def flush(items: list[tuple[dict, list[Envelope]]], refused: list[tuple[int, str, dict]], repeats: int,
                    last_line: int) -> None:
        dupes = await _insert_new(db[collection], [doc for doc, _ in items])
        envs = [env for doc, evs in items if doc["_id"] not in dupes or resumed[0] for env in evs]
        resumed[0] = False
        sent = [await producer.send(physical, env.model_dump_json().encode(), key=env.key.encode()) for env in envs]
        entries = [audit_entry(env.model_dump(mode="json"), physical) for env in envs]
        await asyncio.gather(asyncio.gather(*sent), _insert_new(db.audit, entries))
        with rejected_path.open("a", encoding="utf-8") as rej:
            for n, reason, row in refused:
                rej.write(json.dumps({"line": n, "reason": reason, "row": row}, ensure_ascii=False, default=str) + "\n")
                key = reason.split(":")[0]
                st["reasons"][key] = st["reasons"].get(key, 0) + 1
        st.update(line=last_line, imported=st["imported"] + len(items) - len(dupes),
                  duplicates=st["duplicates"] + len(dupes) + repeats, rejected=st["rejected"] + len(refused),
                  rejected_bytes=rejected_path.stat().st_size)
        progress.save()
        rate = (last_line - start_line) / max(time.perf_counter() - t0, 1e-9)
        filled = int(30 * last_line / max(total, 1))
        print(f"\r[{'#' * filled}{'.' * (30 - filled)}] {last_line:,}/{total:,} rows  {rate:,.0f} rows/s  "
              f"imported {st['imported']:,}  rejected {st['rejected']:,}  duplicates {st['duplicates']:,}  "
              f"eta {(total - last_line) / max(rate, 1e-9):,.0f} s", end="", file=out, flush=True)

    try:
        items, refused, seen, repeats, last = [], [], set(), 0, st["line"]
        for n, row in rows(path, csv_row, after=st["line"]):
            got = row["_unreadable"] if "_unreadable" in row else convert(row)
            if isinstance(got, str):
                refused.append((n, got, row))
            elif got[0]["_id"] in seen:
                repeats += 1  # the same record twice in one batch: a duplicate, like one imported before
            else:
                seen.add(got[0]["_id"])
                items.append(got)
            last = n
            if len(items) + len(refused) + repeats >= batch:
                await flush(items, refused, repeats, last)
                items, refused, seen, repeats = [], [], set(), 0
        if items or refused or repeats or last > st["line"]:
            await flush(items, refused, repeats, last)
    finally:
        await producer.stop()
        await mongo.close()
    elapsed = time.perf_counter() - t0
    print(f"\nimported {st['imported']:,} {what} ({st['duplicates']:,} already there), rejected {st['rejected']:,} rows; "
          f"this run {st['line'] - start_line:,} rows in {elapsed:.1f} s ({(st['line'] - start_line) / max(elapsed, 1e-9):,.0f} rows/s)",
          file=out)
    for reason, n in sorted(st["reasons"].items(), key=lambda x: -x[1]):
        print(f"  rejected {n:>7,}  {reason}", file=out)
    if st["rejected"]:
        print(f"  rows and reasons: {rejected_path}", file=out)
    return st

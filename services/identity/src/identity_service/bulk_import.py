"""Bulk onboarding (R-OPS-03): an operator imports businesses (profile + financial periods) from a JSON Lines or CSV
file through the same events as single registrations, idempotently and resumably.

    uv run python -m identity_service.bulk_import businesses FILE --operator op-1 [--batch 1000]

Each row becomes what `POST /businesses` by an operator makes (a business bound to nobody; the prime account later
proves itself by letter, R-ID-07), and its events: `BusinessRegistered`, and
`BusinessProfileChanged` (version 1, the registered profile with its financials) so the services that learn
financials (recommend's diagnosis) have them. Rows are validated by the same models and rules as the HTTP route;
a row that fails is never dropped silently: it goes to `FILE.rejected.jsonl` with its line number and reason,
and the summary counts reasons.

Idempotent: a business's id comes from its row (`corp-<corporate number>`, or `biz-imp-<hash of external_id>` for a
sole proprietor), so a row imported twice is a duplicate key, not a second business. Resumable: after each batch is
written and published, `FILE.progress` records the line reached; a killed import started again continues there,
redoes at most the batch in flight: its documents are skipped as duplicates and its events published again with the
same ids (derived from the business), which consumers drop by event id. Per batch: one `insert_many`, one pipelined
batch of Kafka sends, one `insert_many` of audit entries (the same entries the outbox relay writes).
"""
from __future__ import annotations

import argparse
import asyncio
import csv
import hashlib
import json
import os
import re
import sys
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

from aiokafka import AIOKafkaProducer
from pydantic import ValidationError
from pymongo.errors import BulkWriteError

from contracts import Envelope
from contracts.events.identity import BusinessProfileChanged, BusinessRegistered
from contracts.vocab import fiscal_year
from identity_service import domain
from identity_service.bindings import REGISTERED_FIELDS
from identity_service.http import BusinessIn
from servicekit.bus import ensure_topics
from servicekit.settings import Settings
from servicekit.store import connect


IMPORT_NS = uuid.UUID("6f1d1c52-8a52-4a4e-9d0b-22b0a1c0e001")  # event ids of imported registrations
PERIOD_COLUMN = re.compile(r"^(sales|operating_profit|ordinary_profit|net_income|total_assets)_(\d{4})$")


def rows(path: Path):
    """(line number, row) from a JSON Lines file, or from a CSV file (header row; financials as `<figure>_<year>`
    columns, e.g. `sales_2024`; empty cells are absent)."""
    with path.open(encoding="utf-8", newline="") as f:
        if path.suffix.lower() == ".csv":
            for n, rec in enumerate(csv.DictReader(f), start=2):
                row, periods = {}, {}
                for k, v in rec.items():
                    if v in (None, ""):
                        continue
                    if m := PERIOD_COLUMN.match(k):
                        periods.setdefault(int(m.group(2)), {"fiscal_year": int(m.group(2))})[m.group(1)] = int(v)
                    else:
                        row[k] = int(v) if k in ("employees", "capital") and v.lstrip("-").isdigit() else v
                row["financials"] = [periods[y] for y in sorted(periods)]
                yield n, row
        else:
            for n, line in enumerate(f, start=1):
                if line.strip():
                    try:
                        yield n, json.loads(line)
                    except json.JSONDecodeError as e:
                        yield n, {"_unreadable": f"not JSON: {e.msg}"}


def business_id(row: dict) -> str:
    if row.get("corporate_number"):
        return domain.business_id_for(row["corporate_number"], "")
    return f"biz-imp-{hashlib.sha256(row['external_id'].encode()).hexdigest()[:20]}"


def check(row: dict, today_fy: int) -> tuple[dict | None, str | None]:
    """The validated registration data of a row, or why it is refused (the route's rules)."""
    if "_unreadable" in row:
        return None, row["_unreadable"]
    if not row.get("corporate_number") and not row.get("external_id"):
        return None, "neither corporate_number nor external_id: the row cannot be imported idempotently"
    try:
        body = BusinessIn(**{k: v for k, v in row.items() if k != "external_id"})
    except ValidationError as e:
        err = e.errors()[0]
        return None, f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}"
    data = body.model_dump()
    data["financials"] = domain.merge_financials([], data["financials"] or [])
    if problem := domain.financials_problem(data["financials"], today_fy):
        return None, f"financials: {problem}"
    return data, None


def document(business: str, data: dict, operator: str, now: datetime) -> dict:
    """The business as `POST /businesses` by an operator stores it."""
    profile = {f: data.get(f) for f in domain.PROFILE_FIELDS}
    return {"_id": business, "owner": operator, **data, "version": 1, "created_at": now, "status": "active",
            "prime_id": None, "member_ids": [], "imported": True,
            "history": [{"version": 1, "at": now, "by": operator, "changed": list(domain.PROFILE_FIELDS), "profile": profile}]}


def events(doc: dict, operator: str) -> list[Envelope]:
    """The registration's events, with ids derived from the business: a redone batch republishes the very same
    events, which every consumer drops by event id."""
    data = doc
    registered = Envelope.wrap(BusinessRegistered(business_id=doc["_id"], **{k: data[k] for k in REGISTERED_FIELDS}),
                               producer="identity", actor=operator)
    profiled = Envelope.wrap(BusinessProfileChanged(
        business_id=doc["_id"], profile_version=1, changed=list(domain.PROFILE_FIELDS),
        corporate_number=data.get("corporate_number"),
        **{k: data[k] for k in ("name", "prefecture", "industry", "employees", "capital", "financials")}),
        producer="identity", actor=operator)
    return [e.model_copy(update={"event_id": str(uuid.uuid5(IMPORT_NS, f"{doc['_id']}:{e.event_type}")),
                                 "occurred_at": doc["created_at"]}) for e in (registered, profiled)]


def audit_entry(env: dict, topic: str) -> dict:
    """The audit entry of a published event, in the shape the outbox relay records."""
    return {"_id": env["event_id"], "at": env["occurred_at"], "actor": env.get("actor"), "action": env["event_type"],
            "key": env["key"], "topic": topic, "payload": env["payload"]}


async def write_audit(db, entries: list[dict]) -> None:
    if not entries:
        return
    try:
        await db.audit.insert_many(entries, ordered=False)
    except BulkWriteError as e:
        if any(w["code"] != 11000 for w in e.details["writeErrors"]):
            raise


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


async def import_businesses(path: Path, operator: str, batch: int = 1000, settings: Settings | None = None,
                            out=sys.stderr) -> dict:
    settings = settings or Settings(service_name="identity")
    await ensure_topics(settings, {"identity.events"})
    mongo = connect(settings.mongo_uri)
    db = mongo[settings.database]
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True,
                                linger_ms=5, max_batch_size=262144)
    await producer.start()

    progress = Progress(path.with_name(path.name + ".progress"))
    rejected_path = path.with_name(path.name + ".rejected.jsonl")
    with rejected_path.open("a", encoding="utf-8") as rej:
        rej.truncate(progress.state["rejected_bytes"])  # what a killed run wrote after its last checkpoint goes
    st = progress.state
    total = sum(1 for _ in path.open(encoding="utf-8")) - (1 if path.suffix.lower() == ".csv" else 0)
    topic = settings.topic("identity.events")
    today_fy = fiscal_year(date.today())
    t0, done0 = time.perf_counter(), st["line"]
    resumed = [st["line"] > 0]  # the first batch of a resumed run republishes its duplicates' events too

    async def flush(docs: list[dict], refused: list[tuple[int, str, dict]], last_line: int, extra_dupes: int) -> None:
        # 1. the documents (a duplicate is a business a killed or earlier run imported: skipped)
        dupes: set[str] = set()
        if docs:
            try:
                await db.businesses.insert_many(docs, ordered=False)
            except BulkWriteError as e:
                if any(w["code"] != 11000 for w in e.details["writeErrors"]):
                    raise
                dupes = {docs[w["index"]]["_id"] for w in e.details["writeErrors"]}
        # 2. their events, published as one pipelined batch (acks=all, idempotent producer); the import is the relay
        # of its own writes: documents first, then events with stable ids, so a kill in between loses nothing
        envs = [env for d in docs if d["_id"] not in dupes or resumed[0] for env in events(d, operator)]
        resumed[0] = False
        sent = [await producer.send(topic, env.model_dump_json().encode(), key=env.key.encode()) for env in envs]
        # 3. their audit entries, as the outbox relay writes them (a republished event keeps one entry), written
        # while Kafka acknowledges the batch
        await asyncio.gather(asyncio.gather(*sent), write_audit(db, [audit_entry(e.model_dump(mode="json"), topic)
                                                                     for e in envs]))
        dupes = len(dupes) + extra_dupes
        with rejected_path.open("a", encoding="utf-8") as rej:
            for n, reason, row in refused:
                rej.write(json.dumps({"line": n, "reason": reason, "row": row}, ensure_ascii=False) + "\n")
                key = reason.split(":")[0]
                st["reasons"][key] = st["reasons"].get(key, 0) + 1
        st.update(line=last_line, imported=st["imported"] + len(docs) - dupes + extra_dupes, duplicates=st["duplicates"] + dupes,
                  rejected=st["rejected"] + len(refused), rejected_bytes=rejected_path.stat().st_size)
        progress.save()
        done = last_line - done0
        rate = done / max(time.perf_counter() - t0, 1e-9)
        width = 30
        filled = int(width * last_line / max(total, 1))
        print(f"\r[{'#' * filled}{'.' * (width - filled)}] {last_line:,}/{total:,} rows  {rate:,.0f} rows/s  "
              f"imported {st['imported']:,}  rejected {st['rejected']:,}  duplicates {st['duplicates']:,}  "
              f"eta {(total - last_line) / max(rate, 1e-9):,.0f} s", end="", file=out, flush=True)

    try:
        docs, refused, seen, last, extra_dupes = [], [], set(), st["line"], 0
        now = datetime.now(UTC)
        for n, row in rows(path):
            if n <= st["line"]:
                continue
            data, why = check(row, today_fy)
            if data is not None:
                bid = business_id(row)
                if bid in seen:  # the same business twice in one batch: counted as a duplicate, like one imported before
                    extra_dupes += 1
                else:
                    seen.add(bid)
                    docs.append(document(bid, data, operator, now))
            if why:
                refused.append((n, why, row))
            last = n
            if len(docs) + len(refused) + extra_dupes >= batch:
                await flush(docs, refused, last, extra_dupes)
                docs, refused, seen, now, extra_dupes = [], [], set(), datetime.now(UTC), 0
        if docs or refused or last > st["line"]:
            await flush(docs, refused, last, extra_dupes)
    finally:
        await producer.stop()
        await mongo.close()
    elapsed = time.perf_counter() - t0
    print(f"\nimported {st['imported']:,} businesses ({st['duplicates']:,} already there), rejected {st['rejected']:,} rows "
          f"in {elapsed:.1f} s this run ({(st['line'] - done0) / max(elapsed, 1e-9):,.0f} rows/s)", file=out)
    for reason, n in sorted(st["reasons"].items(), key=lambda x: -x[1]):
        print(f"  rejected {n:>7,}  {reason}", file=out)
    if st["rejected"]:
        print(f"  rows and reasons: {rejected_path}", file=out)
    return st


def main() -> None:
    ap = argparse.ArgumentParser(description="Bulk onboarding of businesses (R-OPS-03); environment as the identity "
                                             "service's (MONGO_URI, KAFKA_BOOTSTRAP, TOPIC_PREFIX, MONGO_DB)")
    ap.add_argument("kind", choices=["businesses"])
    ap.add_argument("file", type=Path, help="JSON Lines (.jsonl) or CSV (.csv); layout in the README")
    ap.add_argument("--operator", required=True, help="the operator account the import acts as (audit actor, owner)")
    ap.add_argument("--batch", type=int, default=1000)
    a = ap.parse_args()
    asyncio.run(import_businesses(a.file, a.operator, a.batch))


if __name__ == "__main__":
    main()

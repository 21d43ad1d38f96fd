"""Bulk onboarding of experts (R-OPS-03): an operator imports expert pages from a JSON Lines or CSV file through the
same event as a page opened by its expert (`ExpertChanged`, change `registered`; runner: `servicekit.bulk`).

    uv run python -m experts_service.bulk_import experts FILE --operator op-1 [--batch 1000]

A row names the expert's portal account (`account_id`: an expert page belongs to the account that signs in with it,
R-EX-01) and an `external_id`; the page id is derived from it (`ex-imp-<hash>`), and so is the event's id, so a row
imported again changes nothing. Rows are validated by the route's own model and rules (fields from the controlled
vocabulary). CSV: list columns (`fields`, `regions`, `qualifications`) separated by `;`. Running replicas learn the
pages from the events (their search index reloads each page it hears of).
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import uuid
from pathlib import Path

from pydantic import ValidationError

from contracts import Envelope
from experts_service import domain
from experts_service.http import CreatePage
from experts_service.store import REV, changed_event, stamp
from servicekit import bulk
from servicekit.refusals import Rejected
from servicekit.settings import Settings

IMPORT_NS = uuid.UUID("6f1d1c52-8a52-4a4e-9d0b-22b0a1c0e002")
LISTS = ("fields", "regions", "qualifications")


def csv_row(rec: dict) -> dict:
    return {k: [x.strip() for x in v.split(";") if x.strip()] if k in LISTS else v for k, v in rec.items()}


def expert_id(row: dict) -> str:
    return f"ex-imp-{hashlib.sha256(row['external_id'].encode()).hexdigest()[:16]}"


def converter(operator: str):
    def convert(row: dict):
        if not row.get("external_id") or not row.get("account_id"):
            return "external_id and account_id are both needed (the page belongs to the expert's account)"
        try:
            body = CreatePage(**{k: v for k, v in row.items() if k not in ("external_id", "account_id")})
            state, change = domain.new_expert(expert_id(row), row["account_id"], body.name, body.model_dump(exclude={"name"}))
        except ValidationError as e:
            err = e.errors()[0]
            return f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}"
        except Rejected as r:
            return f"{r.title}: {r.detail}"
        doc = {"_id": state["expert_id"], **state, REV: 1, "recommender_ids": [], **stamp(state["expert_id"]),
               "imported": True}
        env = Envelope.wrap(changed_event(state, change), producer="experts", actor=operator)
        return doc, [env.model_copy(update={"event_id": str(uuid.uuid5(IMPORT_NS, f"{doc['_id']}:{change}"))})]
    return convert


async def import_experts(path: Path, operator: str, batch: int = 1000, settings: Settings | None = None) -> dict:
    return await bulk.run_import(path, settings=settings or Settings(service_name="experts"), collection="experts",
                                 topic="experts.events", convert=converter(operator), csv_row=csv_row, batch=batch,
                                 what="experts")


def main() -> None:
    ap = argparse.ArgumentParser(description="Bulk onboarding of experts (R-OPS-03); environment as the experts "
                                             "service's (MONGO_URI, KAFKA_BOOTSTRAP, TOPIC_PREFIX, MONGO_DB)")
    ap.add_argument("kind", choices=["experts"])
    ap.add_argument("file", type=Path, help="JSON Lines (.jsonl) or CSV (.csv); layout in the README")
    ap.add_argument("--operator", required=True)
    ap.add_argument("--batch", type=int, default=1000)
    a = ap.parse_args()
    asyncio.run(import_experts(a.file, a.operator, a.batch))


if __name__ == "__main__":
    main()

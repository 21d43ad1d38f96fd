"""Bulk onboarding of businesses (R-OPS-03): an operator imports businesses (profile + financial periods) from a JSON
Lines or CSV file through the same events as single registrations (runner: `servicekit.bulk`).

    uv run python -m identity_service.bulk_import businesses FILE --operator op-1 [--batch 1000]

Each row becomes what `POST /businesses` by an operator makes (a business bound to nobody; its prime account later
proves itself by letter, R-ID-07) and its events: `BusinessRegistered`, and `BusinessProfileChanged` (version 1, the
registered profile with its financials) so the services that learn financials (recommend's diagnosis) have them.
Rows are validated by the route's own model and rules. A business's id comes from its row (`corp-<corporate number>`,
or `biz-imp-<hash of external_id>` for a sole proprietor) and its events' ids from the business, so importing the
same row again changes nothing and publishes nothing new.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import re
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

from pydantic import ValidationError

from contracts import Envelope
from contracts.events.identity import BusinessProfileChanged, BusinessRegistered
from contracts.vocab import fiscal_year
from identity_service import domain
from identity_service.bindings import REGISTERED_FIELDS
from identity_service.http import BusinessIn
from servicekit import bulk
from servicekit.settings import Settings

IMPORT_NS = uuid.UUID("6f1d1c52-8a52-4a4e-9d0b-22b0a1c0e001")  # event ids of imported registrations
PERIOD_COLUMN = re.compile(r"^(sales|operating_profit|ordinary_profit|net_income|total_assets)_(\d{4})$")


def csv_row(rec: dict) -> dict:
    """A CSV record: financial figures as `<figure>_<fiscal year>` columns (e.g. `sales_2024`), the rest by name."""
    row, periods = {}, {}
    for k, v in rec.items():
        if m := PERIOD_COLUMN.match(k):
            periods.setdefault(int(m.group(2)), {"fiscal_year": int(m.group(2))})[m.group(1)] = int(v)
        else:
            row[k] = int(v) if k in ("employees", "capital") else v
    row["financials"] = [periods[y] for y in sorted(periods)]
    return row


def rows(path: Path):
    return bulk.rows(path, csv_row)


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
    """The registration's events, with ids derived from the business (a redone batch repeats the very same events)."""
    registered = BusinessRegistered(business_id=doc["_id"], **{k: doc[k] for k in REGISTERED_FIELDS})
    profiled = BusinessProfileChanged(business_id=doc["_id"], profile_version=1, changed=list(domain.PROFILE_FIELDS),
                                      corporate_number=doc.get("corporate_number"),
                                      **{k: doc[k] for k in ("name", "prefecture", "industry", "employees", "capital",
                                                             "financials")})
    return [Envelope.wrap(m, producer="identity", actor=operator).model_copy(update={
        "event_id": str(uuid.uuid5(IMPORT_NS, f"{doc['_id']}:{m.message_type}")), "occurred_at": doc["created_at"]})
        for m in (registered, profiled)]


def converter(operator: str):
    today_fy = fiscal_year(date.today())

    def convert(row: dict):
        data, why = check(row, today_fy)
        if why:
            return why
        doc = document(business_id(row), data, operator, datetime.now(UTC))
        return doc, events(doc, operator)
    return convert


async def import_businesses(path: Path, operator: str, batch: int = 1000, settings: Settings | None = None) -> dict:
    return await bulk.run_import(path, settings=settings or Settings(service_name="identity"), collection="businesses",
                                 topic="identity.events", convert=converter(operator), csv_row=csv_row, batch=batch,
                                 what="businesses")


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

"""The outcome KPI (R-REC-08) read from counters against the scan of every survey it replaced, on the same data in the
same run, on a real MongoDB-wire server; and what counting one answer costs.

    MONGO_URI=mongodb://127.0.0.1:27017 uv run --frozen python bench/outcomes.py            # 50,000 surveys
    MONGO_URI=mongodb://127.0.0.1:27017 uv run --frozen python bench/outcomes.py --small    # 5,000 surveys

The surveys are inserted in bulk and their counters built with the same rules the service uses
(`domain.outcomes.cells`, `flags_of`; tests/integration/test_outcome_counters.py proves that the service's counting
equals a recount from the rows); then 50 more dispatches are scheduled and answered through `Outcomes` itself, timed.
The database is dropped at the end.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "services" / "dispatch" / "src"))

from pymongo import AsyncMongoClient  # noqa: E402

from dispatch_service.domain.outcomes import (FLAGS, OutcomeParams, cell_id, cells, flags_of,  # noqa: E402
                                              group_field, kpi, kpi_of_counts, scope_id)
from dispatch_service.outcomes import Outcomes  # noqa: E402

BLOCKS = ["hokkaido", "tohoku", "kanto", "chubu", "kinki", "chugoku", "shikoku", "kyushu", "okinawa"]
FIELDS = ["management", "finance", "tax", "sales_channels", "it_dx", "business_succession", "hr", None]


def synthetic(n: int, rng: random.Random) -> list[dict]:
    out, at = [], datetime.now(UTC)
    for i in range(n // 2):
        answered = rng.random() < 0.6
        base = {"dispatch_id": f"d{i}", "business_id": f"b{rng.randrange(n // 4)}", "fiscal_year": rng.choice([2025, 2026]),
                "block": rng.choice(BLOCKS), "field": rng.choice(FIELDS), "expert_id": f"ex-{rng.randrange(n // 40)}",
                "due_at": at, "tally": "done", "tally_rev": 1}
        for months in (3, 12):
            ans = answered and (months == 3 or rng.random() < 0.5)
            out.append({**base, "_id": f"d{i}:{months}", "months": months, "answered_at": at if ans else None,
                        "results": ans and rng.random() < 0.6})
    return out


def counters_of(surveys: list[dict]) -> tuple[list[dict], list[dict]]:
    members: dict[str, dict] = {}
    counters: dict[str, dict] = {}
    for s in surveys:
        for c in cells(s):
            m = members.setdefault(f"{cell_id(c)}|{s['business_id']}", {})
            scope = scope_id(c["by"], c["fy"], c["block"])
            doc = counters.setdefault(scope, {"_id": scope, "by": c["by"], "fy": c["fy"], "block": c["block"],
                                              "groups": {}})
            g = doc["groups"].setdefault(group_field(c["key"]), dict.fromkeys(FLAGS, 0))
            for f in flags_of(s):
                if f not in m:
                    m[f] = m[f"counted_{f}"] = True
                    g[f] += 1
    return list(counters.values()), [{"_id": k, **v} for k, v in members.items()]


async def timed(fn, reps: int) -> tuple[float, object]:
    t0 = time.perf_counter()
    for _ in range(reps):
        out = await fn()
    return (time.perf_counter() - t0) * 1000 / reps, out


async def main(n: int) -> None:
    client = AsyncMongoClient(os.environ.get("MONGO_URI", "mongodb://127.0.0.1:27017"))
    db = client[f"bench_outcomes_{uuid.uuid4().hex[:8]}"]
    try:
        p = OutcomeParams()
        o = Outcomes(SimpleNamespace(db=db), p)
        await o.setup()
        rng = random.Random(8)
        surveys = synthetic(n, rng)
        counters, members = counters_of(surveys)
        for col, docs in ((o.col, surveys), (o.counters, counters), (o.members, members)):
            for i in range(0, len(docs), 5000):
                await col.insert_many(docs[i:i + 5000])
        print(f"{len(surveys):,} surveys, {len(counters):,} counter documents, {len(members):,} memberships")
        for by, fy in (("fiscal_year", None), ("block", 2026), ("expert_id", 2026)):
            ms_c, counts = await timed(lambda: o.counts(by, fy, None), 5)
            ms_s, rows = await timed(lambda: o.rows(fy), 3)
            assert kpi_of_counts(counts, by, p) == kpi(rows, by, p)
            print(f"KPI by {by:<11} fiscal year {fy or 'all':<4}: {len(counts):>5} groups; counters {ms_c:8.1f} ms, "
                  f"scan of the surveys {ms_s:8.1f} ms (same figures)")
        # counting answers through the service's own code
        times = []
        for i in range(50):
            base = {"dispatch_id": f"x{i}", "business_id": f"b{i}", "fiscal_year": 2026, "block": "kyushu",
                    "field": "tax", "expert_id": "ex-0", "months": 3, "due_at": datetime.now(UTC), "answered_at": None,
                    "tally": "pending", "tally_rev": 1}
            await o.col.insert_one({**base, "_id": f"x{i}:3"})
            await o.tally(f"x{i}:3")
            t0 = time.perf_counter()
            await o.answer(f"x{i}:3", by="bench", answer={"results_achieved": True}, results=True)
            times.append((time.perf_counter() - t0) * 1000)
        times.sort()
        print(f"an answer recorded and counted (12 counters): median {times[len(times) // 2]:.1f} ms, "
              f"p90 {times[int(len(times) * 0.9)]:.1f} ms")
    finally:
        await client.drop_database(db.name)
        await client.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", action="store_true")
    args = ap.parse_args()
    asyncio.run(main(5_000 if args.small else 50_000))

"""Dispatch's EBPM reports (R-REC-07) read from their counters against the read of every row of the scope they
replaced (R-OPS-03), on the same data in the same run, on a real MongoDB-wire server; and what a recount costs.

    MONGO_URI=mongodb://127.0.0.1:27017 uv run --frozen python bench/ebpm.py            # 50,000 dispatches
    MONGO_URI=mongodb://127.0.0.1:27017 uv run --frozen python bench/ebpm.py --small    # 5,000 dispatches

The rows (worklist, consultations, outcome surveys, businesses, platforms) are inserted in bulk and their counters
built with the rules the service uses (`domain.ebpm.business_contributions`, `delta`; tests/integration/
test_ebpm_counters.py proves that the service's recounts equal the rows); every report timed is asserted to publish the
same figures both ways. Then 50 businesses get one more dispatch each, recounted through `Counters.touch` itself,
timed. The database is dropped at the end.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "services" / "dispatch" / "src"))

from bson import Int64  # noqa: E402
from pymongo import AsyncMongoClient  # noqa: E402

from dispatch_service.domain.ebpm import (MEASURES, business_contributions, cell_field, counter_doc,  # noqa: E402
                                          delta, field)
from dispatch_service.ebpm_counters import Counters, dispatch_row, survey_row  # noqa: E402
from dispatch_service.ebpm_reports import LABELS, rows_table  # noqa: E402
from servicekit import ebpm  # noqa: E402

BLOCKS = ["hokkaido", "tohoku", "kanto", "chubu", "kinki", "chugoku", "shikoku", "kyushu", "okinawa"]
INDUSTRIES = ["製造業", "建設業", "小売業", "卸売業", "飲食サービス業", "宿泊業", "情報通信業", "運輸業", "医療福祉",
              "サービス業"]
P = ebpm.Params(secret=b"bench-ebpm", min_cell=5)


async def params():
    return P


def synthetic(n: int, rng: random.Random):
    platforms = [{"_id": f"pf-{b}-{i}", "bureau_id": b} for b in BLOCKS for i in range(5)]
    n_biz = n // 4
    businesses = [{"_id": f"b{i}", "industry": rng.choice(INDUSTRIES)} for i in range(n_biz)]
    orgs = [f"org-{i}" for i in range(40)]
    dispatches, surveys = [], []
    at = datetime.now(UTC)
    for i in range(n):
        d = {"_id": f"d{i}", "business_id": f"b{rng.randrange(n_biz)}", "fiscal_year": rng.choice([2025, 2026]),
             "platform_id": rng.choice(platforms)["_id"], "institution_id": rng.choice([*orgs, None, None]),
             "status": rng.choice(["paid", "paid", "approved", "reported", "refused"]), "route": "A", "at": at}
        dispatches.append(d)
        if d["status"] == "paid":
            block = d["platform_id"].split("-")[1]
            for months in (3, 12):
                ans = rng.random() < 0.6
                surveys.append({"_id": f"d{i}:{months}", "dispatch_id": d["_id"], "business_id": d["business_id"],
                                "months": months, "fiscal_year": d["fiscal_year"], "block": block, "due_at": at,
                                "answered_at": at if ans else None, "results": ans and rng.random() < 0.6,
                                "tally": "done", "tally_rev": 1})
    consultations = [{"_id": f"c{i}", "business_id": f"b{rng.randrange(n_biz)}",
                      "created_at": at - timedelta(days=rng.randrange(700))} for i in range(n // 20)]
    return platforms, businesses, dispatches, surveys, consultations


def counters_of(platforms, businesses, dispatches, surveys, consultations):
    """The counter documents and the businesses' documents (rows' copy, contributions) the service's recounts would
    leave, built in memory with the same rules."""
    blocks = {p["_id"]: p["bureau_id"] for p in platforms}
    industry = {b["_id"]: b["industry"] for b in businesses}
    per: dict[str, dict] = defaultdict(lambda: {"d": {}, "c": {}, "s": {}})
    for d in dispatches:
        per[d["business_id"]]["d"][field(d["_id"])] = dispatch_row(d)
    for c in consultations:
        per[c["business_id"]]["c"][field(c["_id"])] = c["created_at"]
    for s in surveys:
        per[s["business_id"]]["s"][field(s["_id"])] = survey_row(s)
    counters: dict[str, dict] = {}
    docs = []
    for bid, rows in per.items():
        key = ebpm.key_halves(bid, P)
        cells = {}
        want = business_contributions([{"_id": v["id"], **v} for v in rows["d"].values()],
                                      [{"created_at": v} for v in rows["c"].values()],
                                      [{"_id": v["id"], **v} for v in rows["s"].values()], blocks,
                                      industry.get(bid, "—"))
        for cid, (cell, values) in want.items():
            doc = counters.setdefault(counter_doc(cell), {"_id": counter_doc(cell), "report": cell["report"],
                                                          "g": cell["g"], "org": cell["org"], "cells": {}})
            c = doc["cells"].setdefault(cell_field(cell), {"fiscal_year": cell["fiscal_year"], "block": cell["block"],
                                                           "industry": cell["industry"], "n": 0, "k_hi": Int64(0),
                                                           "k_lo": Int64(0), "s": {}})
            for k, v in delta(None, values, key, MEASURES[cell["report"]]).items():
                if k.startswith("s."):
                    c["s"][k[2:]] = c["s"].get(k[2:], 0) + v
                else:
                    c[k] = (Int64 if k != "n" else int)(c[k] + v)
            cells[field(cid)] = {"cell": cell, "v": {m.name: values.get(m.name, 0) for m in MEASURES[cell["report"]]}}
        docs.append({"_id": bid, "rows": rows, "cells": cells, "rev": 2})
    return list(counters.values()), docs


async def timed(fn, reps: int) -> tuple[float, object]:
    t0 = time.perf_counter()
    for _ in range(reps):
        out = await fn()
    return (time.perf_counter() - t0) * 1000 / reps, out


async def main(n: int) -> None:
    client = AsyncMongoClient(os.environ.get("MONGO_URI", "mongodb://127.0.0.1:27017"))
    db = client[f"bench_ebpm_{uuid.uuid4().hex[:8]}"]
    try:
        c = Counters(db, params)
        await db.migrations.insert_one({"_id": "ebpm-counters:v1"})   # counters built in bulk below
        await c.setup()
        rng = random.Random(19)
        platforms, businesses, dispatches, surveys, consultations = synthetic(n, rng)
        t0 = time.perf_counter()
        counters, business_docs = counters_of(platforms, businesses, dispatches, surveys, consultations)
        built = time.perf_counter() - t0
        for col, docs in ((db.platforms, platforms), (db.businesses, businesses), (db.worklist, dispatches),
                          (db.outcome_surveys, surveys), (db.consultations, consultations),
                          (db.ebpm_counters, counters), (db.ebpm_businesses, business_docs)):
            for i in range(0, len(docs), 5000):
                await col.insert_many(docs[i:i + 5000])
        print(f"{len(dispatches):,} dispatches, {len(businesses):,} businesses, {len(surveys):,} surveys, "
              f"{len(consultations):,} consultations; {len(counters):,} counter documents "
              f"({sum(len(d['cells']) for d in counters):,} cells), {len(business_docs):,} businesses' documents "
              f"(built in {built:.1f} s)")
        reads = [("uptake", ["fiscal_year", "block", "industry"], None, {}, {}, "national"),
                 ("uptake", ["fiscal_year", "industry"], 2026, {"block": "kanto"}, {"block": "kanto"}, "bureau"),
                 ("uptake", ["fiscal_year", "block"], None, {"orgs": ["org-3"]}, {"org": "org-3"}, "institution"),
                 ("outcomes", ["fiscal_year", "block", "industry"], None, {}, {}, "national"),
                 ("outcomes", ["block"], 2026, {"block": "kinki"}, {"block": "kinki"}, "bureau")]
        for report, by, fy, row_scope, counter_scope, who in reads:
            ms_c, counted = await timed(lambda: c.table(report, by, fy, counter_scope, P, dict(LABELS)), 3)
            ms_r, rows = await timed(lambda: rows_table(db, P, report, by, fy, row_scope), 1)
            assert counted.publish() == rows.publish(), (report, by, fy, who)
            print(f"{report:<8} {who:<11} by {'×'.join(by):<29} fiscal year {fy or 'all':<4}: "
                  f"{len(counted.cells):>4} rows; counters {ms_c:8.1f} ms, rows {ms_r:8.1f} ms "
                  f"(×{ms_r / ms_c:.0f}, same figures)")
        times = []
        for i in range(50):
            bid = f"b{i}"
            await db.worklist.insert_one({"_id": f"x{i}", "business_id": bid, "fiscal_year": 2026,
                                          "platform_id": platforms[i % len(platforms)]["_id"],
                                          "institution_id": "org-1", "status": "paid"})
            t0 = time.perf_counter()
            assert await c.on_dispatch(None, SimpleNamespace(dispatch_id=f"x{i}", business_id=bid)) is None
            assert await db.ebpm_dirty.count_documents({"_id": bid}) == 0
            times.append((time.perf_counter() - t0) * 1000)
        times.sort()
        print(f"one more dispatch of a business, copied and recounted (Counters.on_dispatch): median {times[len(times) // 2]:.1f} ms, "
              f"p90 {times[int(len(times) * 0.9)]:.1f} ms")
        ms_c, counted = await timed(lambda: c.table("uptake", ["fiscal_year", "block", "industry"], None, {}, P,
                                                    dict(LABELS)), 1)
        assert counted.publish() == (await rows_table(db, P, "uptake", ["fiscal_year", "block", "industry"], None,
                                                      {})).publish()
        print("after the recounts: counters and rows still publish the same national uptake report")
    finally:
        await client.drop_database(db.name)
        await client.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", action="store_true")
    args = ap.parse_args()
    asyncio.run(main(5_000 if args.small else 50_000))

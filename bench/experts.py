"""Expert search benchmark (R-EX-05): p50/p99 of GET /experts for typical filter combinations over
HTTP, next to GET /healthz measured in the same run (the baseline: the cost of a request at all).

Data: N experts (default 10,000) with profiles drawn from the controlled vocabularies, ~80% registered
for this fiscal year, ~10% with an unavailability window, and a ratings radar per expert derived from
M synthetic individual ratings (default 1,000,000, six axes each, 1-5) aggregated per expert exactly
as the ratings service's ExpertRadarUpdated carries them (per-axis averages and a count).

    uv run --frozen python bench/experts.py                 # own service process on the test infrastructure
    uv run --frozen python bench/experts.py --experts 2000 --ratings 200000 --requests 100   # quicker
    # against a running deployment (e.g. through the gateway): load its database, restart the
    # experts service (the index is built from MongoDB at start-up), then measure:
    uv run --frozen python bench/experts.py --load-only --mongo-uri mongodb://127.0.0.1:27017 --db smeportal_experts
    uv run --frozen python bench/experts.py --base-url http://127.0.0.1:8080/api/experts --key var/keys/jwt-private.pem
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import jwt
from pymongo import MongoClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from contracts.vocab import EXPERT_FIELDS, RATING_AXES, fiscal_year  # noqa: E402
from experts_service import domain  # noqa: E402

QUALS = ["中小企業診断士", "税理士", "公認会計士", "弁護士", "社会保険労務士", "技術士", "弁理士", "ITストラテジスト"]
REGIONS = ["北海道", "宮城県", "東京都", "神奈川県", "愛知県", "大阪府", "広島県", "福岡県", "熊本県", "沖縄県"]
TOPICS_JA = ["事業承継", "財務改善", "販路開拓", "新商品開発", "生産性向上", "DX推進", "海外展開", "人材育成",
             "資金繰り", "原価管理", "ブランディング", "知的財産"]
TOPICS_EN = ["turnaround", "manufacturing", "retail", "succession", "export", "lean", "marketing", "cloud"]
SURNAMES = ["佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "山本", "中村", "小林", "加藤"]


def experts(n: int, ratings: int, seed: int = 7) -> tuple[list[dict], list[dict]]:
    rnd = random.Random(seed)
    today = date.today()
    fy = fiscal_year(today)
    docs = []
    for i in range(n):
        profile = {"qualifications": rnd.sample(QUALS, rnd.randint(1, 2)), "fields": rnd.sample(EXPERT_FIELDS, 3),
                   "regions": rnd.sample(REGIONS, rnd.randint(1, 3)),
                   "introduction": "、".join(rnd.sample(TOPICS_JA, 3)) + " / " + " ".join(rnd.sample(TOPICS_EN, 2))}
        state, _ = domain.new_expert(f"bx-{i:06d}", f"bench-acc-{i:06d}", f"{rnd.choice(SURNAMES)} {i:05d}", profile)
        roll = rnd.random()
        if roll < 0.80:
            state.update(status="registered", registered_fiscal_year=fy, registered_years=[fy])
        elif roll < 0.90:
            state["status"] = "portal"
        elif roll < 0.95:
            state["status"] = "suspended"
        else:
            state["status"] = "applied"
        if rnd.random() < 0.10:
            start = today + timedelta(days=rnd.randint(-10, 30))
            state["availability"]["windows"] = [{"start": start.isoformat(),
                                                 "end": (start + timedelta(days=rnd.randint(3, 60))).isoformat(),
                                                 "note": "出張"}]
        docs.append({"_id": state["expert_id"], **state, "_rev": 1, "recommender_ids": [], "_outbox": []})
    # Individual ratings, each for one expert on all six axes, aggregated into per-expert radars.
    bias = [rnd.uniform(-1.2, 1.0) for _ in range(n)]
    sums = [[0.0] * len(RATING_AXES) for _ in range(n)]
    counts = [0] * n
    for _ in range(ratings):
        e = rnd.randrange(n)
        counts[e] += 1
        row = sums[e]
        for a in range(len(RATING_AXES)):
            row[a] += min(5, max(1, round(3.8 + bias[e] + rnd.gauss(0, 0.8))))
    as_of = datetime.now(UTC).isoformat()
    radars = [{"_id": docs[e]["_id"], "averages": {ax: round(sums[e][a] / counts[e], 2) for a, ax in enumerate(RATING_AXES)},
               "count": counts[e], "window_days": 365, "as_of": as_of} for e in range(n) if counts[e]]
    return docs, radars


def load(mongo_uri: str, db: str, docs: list[dict], radars: list[dict]) -> None:
    client = MongoClient(mongo_uri)
    d = client[db]
    if d.experts.find_one({"_id": docs[0]["_id"]}, {"_id": 1}):  # a re-run replaces the earlier bench experts
        for doc in docs:
            d.experts.replace_one({"_id": doc["_id"]}, doc, upsert=True)
        for r in radars:
            d.radars.replace_one({"_id": r["_id"]}, r, upsert=True)
    else:
        for i in range(0, len(docs), 1000):
            d.experts.insert_many(docs[i:i + 1000], ordered=False)
        for i in range(0, len(radars), 1000):
            d.radars.insert_many(radars[i:i + 1000], ordered=False)
    client.close()


def queries(today: date) -> dict[str, dict]:
    soon = (today + timedelta(days=14)).isoformat()
    return {
        "q=診断士 (Japanese substring)": {"q": "診断士"},
        "q=事業承継 + for_dispatch + sort=rating": {"q": "事業承継", "for_dispatch": "true", "sort": "rating"},
        "field=finance + region=東京都": {"field": "finance", "region": "東京都"},
        "for_dispatch + field=it_dx + min_expertise=4": {"for_dispatch": "true", "field": "it_dx", "min_expertise": 4},
        "qualification=税理士 + available_on + sort=name": {"qualification": "税理士", "available_on": soon, "sort": "name"},
        "q=manufacturing + region=大阪府 + min_manners=3.5": {"q": "manufacturing", "region": "大阪府", "min_manners": 3.5},
        "no filter, page 20 (deep page)": {"page": 20},
    }


async def timed(http: httpx.AsyncClient, path: str, params: dict | None, headers: dict) -> tuple[float, dict]:
    t = time.perf_counter()
    r = await http.get(path, params=params, headers=headers)
    ms = (time.perf_counter() - t) * 1000
    if r.status_code != 200:
        raise SystemExit(f"GET {path} {params} -> {r.status_code}: {r.text[:300]}")
    return ms, r.json()


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


async def run(base_url: str, key: str, n: int) -> None:
    now = int(time.time())
    tok = jwt.encode({"sub": "bench", "roles": ["institution"], "aud": "smeportal", "iat": now, "exp": now + 3600,
                      "iss": "bench"}, Path(key).read_text(), algorithm="RS256")
    headers = {"authorization": f"Bearer {tok}"}
    lines = {"GET /healthz (baseline)": ("/healthz", None, {})}
    lines.update({f"GET /experts {label}": ("/experts", params, headers) for label, params in queries(date.today()).items()})
    times: dict[str, list[float]] = {k: [] for k in lines}
    totals: dict[str, int] = {}
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        for label, (path, params, h) in lines.items():  # warm up: connections, lazily built sort orders
            for _ in range(3):
                _, body = await timed(http, path, params, h)
            totals[label] = body.get("total", 0)
        # Interleaved rounds, so load from anything else on the machine hits every line alike.
        for _ in range(n):
            for label, (path, params, h) in lines.items():
                times[label].append((await timed(http, path, params, h))[0])
    base = times["GET /healthz (baseline)"]
    print(f"{'request':58s} {'p50 ms':>8s} {'p99 ms':>8s} {'p99/base':>9s} {'total hits':>10s}")
    worst = 0.0
    for label, xs in times.items():
        hits = "" if label.startswith("GET /healthz") else f"{totals[label]:10d}"
        if hits:
            worst = max(worst, pct(xs, 99))
        print(f"{label:58s} {pct(xs, 50):8.2f} {pct(xs, 99):8.2f} {pct(xs, 99) / pct(base, 99):9.1f} {hits}")
    print(f"\nworst search p99: {worst:.2f} ms (target < 50 ms); baseline /healthz p50 {statistics.median(base):.2f} ms, "
          f"p99 {pct(base, 99):.2f} ms; {n} interleaved rounds, sequential requests, one connection")


def in_process(docs: list[dict], radars: list[dict], n: int) -> None:
    """The search engine alone on the same data (what a request adds on top of HTTP + auth)."""
    from experts_service.search import ExpertIndex

    ix = ExpertIndex()
    for r in radars:
        ix.set_radar(r["_id"], r)
    for d in docs:
        ix.upsert(d)
    names = {"q": "q", "field": "fields", "region": "region", "qualification": "qualification", "sort": "sort",
             "page": "page", "for_dispatch": "for_dispatch", "available_on": "available_on"}
    print(f"\n{'in-process ExpertIndex.search, same data':58s} {'p50 ms':>8s} {'p99 ms':>8s}")
    for label, params in queries(date.today()).items():
        kw, mins = {}, {}
        for k, v in params.items():
            if k.startswith("min_"):
                mins[k[4:]] = float(v)
            elif k == "field":
                kw["fields"] = [v]
            elif k == "for_dispatch":
                kw[k] = v == "true"
            elif k == "available_on":
                kw[k] = date.fromisoformat(v)
            else:
                kw[names[k]] = v
        ix.search(min_ratings=mins, **kw)
        xs = []
        for _ in range(n):
            t = time.perf_counter()
            ix.search(min_ratings=mins, **kw)
            xs.append((time.perf_counter() - t) * 1000)
        print(f"{label:58s} {pct(xs, 50):8.2f} {pct(xs, 99):8.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-url", help="a running experts service or the gateway prefix (.../api/experts)")
    ap.add_argument("--key", default=str(ROOT / "var" / "test" / "keys" / "jwt-private.pem"),
                    help="RS256 private key the service trusts (to mint an institution token)")
    ap.add_argument("--experts", type=int, default=10_000)
    ap.add_argument("--ratings", type=int, default=1_000_000, help="individual ratings aggregated into the radars")
    ap.add_argument("--requests", type=int, default=300, help="requests per query line")
    ap.add_argument("--mongo-uri", default=os.environ.get("MONGO_URI", "mongodb://127.0.0.1:37017"))
    ap.add_argument("--kafka", default=os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:19092"))
    ap.add_argument("--db", help="database to load (default: a fresh bench database for an own service process)")
    ap.add_argument("--load-only", action="store_true", help="only load --db, then exit")
    a = ap.parse_args()

    if a.base_url and not a.load_only:
        asyncio.run(run(a.base_url.rstrip("/"), a.key, a.requests))
        return
    t = time.perf_counter()
    docs, radars = experts(a.experts, a.ratings)
    print(f"generated {len(docs)} experts and radars from {a.ratings} ratings in {time.perf_counter() - t:.1f}s")
    from tests.support import Infra, Namespace, ServiceProcess

    ns = Namespace()
    db = a.db or ns.db("experts")
    t = time.perf_counter()
    load(a.mongo_uri, db, docs, radars)
    print(f"loaded into {db} in {time.perf_counter() - t:.1f}s")
    if a.load_only:
        return
    # deployment defaults, not the test harness's (span file export, fast outbox polling)
    proc = ServiceProcess("experts", Infra(a.kafka, a.mongo_uri, "bench"), ns, Path(tempfile.mkdtemp()), MONGO_DB=db,
                          OTEL_SPANS_FILE="", OUTBOX_POLL_SECONDS="0.5", LOG_LEVEL="WARNING")
    t = time.perf_counter()
    proc.start(timeout=300)
    print(f"service ready (index built from MongoDB) in {time.perf_counter() - t:.1f}s: {proc.url}\n")
    try:
        asyncio.run(run(proc.url, a.key, a.requests))
        in_process(docs, radars, a.requests)
    finally:
        proc.stop()
        MongoClient(a.mongo_uri).drop_database(db)


if __name__ == "__main__":
    main()

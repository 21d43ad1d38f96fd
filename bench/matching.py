"""How work spreads over experts when dispatches follow suggestions (R-EX-07): the same simulated half-year run twice
on the same data, once with the baseline ranking (no fairness term, equals in a fixed order) and once with the
fairness term (recent-load penalty, rotating tie-break), printing the spread of dispatches side by side.

    uv run --frozen python bench/matching.py                       # 2,000 experts, 5,000 searches
    uv run --frozen python bench/matching.py --experts 500 --searches 1000 --seed 3

The run uses the service's own code: candidates come from `experts_service.search.ExpertIndex.candidates` (the
R-EX-06 holds included), scores and order from `experts_service.matching`, and every dispatch updates the expert
document through `experts_service.domain.track_dispatch` and is re-indexed, as the service does. Institutions pick
from the top of the list with a position bias (first 55%, second 20%, third 10%, else one of the rest); a dispatch
stays open 10–40 days, then counts as completed (record). Quality of what was dispatched is printed too, so a
fairer spread is not bought with worse matches.
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "services" / "experts" / "src"))
sys.path.insert(0, str(ROOT / "contracts" / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from contracts.vocab import EXPERT_FIELDS, RATING_AXES  # noqa: E402
from dataset import PREFECTURES  # noqa: E402
from experts_service import domain, matching  # noqa: E402
from experts_service.search import ExpertIndex  # noqa: E402

START = date(2026, 5, 1)
DAYS = 180
FIELD_WEIGHTS = [14, 10, 8, 4, 3, 12, 8, 10, 7, 6, 3, 6, 6, 3]  # management, finance, … : what businesses ask for
# ("other" is neither offered nor asked for here)


def experts(n: int, rng: random.Random) -> list[dict]:
    prefs = [p for p, _ in PREFECTURES]
    out = []
    for i in range(n):
        pref = rng.choices(prefs, [w for _, w in PREFECTURES])[0]
        k = prefs.index(pref)
        rated = rng.random() < 0.7
        base = rng.gauss(3.9, 0.35)
        radar = {"averages": {a: min(max(rng.gauss(base, 0.3), 1.0), 5.0) for a in RATING_AXES},
                 "count": rng.randint(3, 60), "as_of": "2026-04-30"} if rated else None
        cap = rng.choice([None, None, 2, 3, 5])
        doc = {"_id": f"ex-{i:05d}", "name": f"専門家{i:05d}", "status": "registered", "registered_fiscal_year": 2026,
               "profile": {"fields": sorted(rng.sample(EXPERT_FIELDS[:-1], rng.randint(1, 4))),
                           "regions": prefs[max(k - 1, 0):k + 2], "qualifications": [], "introduction": "",
                           "remote_ok": rng.random() < 0.3},
               "availability": {"windows": [], "note": ""}, "recommendations": [],
               "record": {"dispatches": int(rng.paretovariate(1.2)) - 1}, "radar": radar,
               "capacity": {"paused": rng.random() < 0.03, "open_cap": cap, "open_ids": []}}
        out.append(doc)
    return out


def searches(n: int, rng: random.Random) -> list[tuple[int, matching.Need, str]]:
    prefs = [p for p, _ in PREFECTURES]
    out = []
    for i in range(n):
        fields = tuple(dict.fromkeys(rng.choices(EXPERT_FIELDS[:-1], FIELD_WEIGHTS[:-1], k=rng.choice([1, 1, 2]))))
        need = matching.Need(fields=fields, region=rng.choices(prefs, [w for _, w in PREFECTURES])[0],
                             remote_ok=rng.random() < 0.5,
                             needs=tuple(rng.sample(RATING_AXES, rng.choice([0, 1, 2]))))
        out.append((i * DAYS // n, need, f"inst-{rng.randrange(300)}"))
    return out


def run(docs: list[dict], plan, p: matching.MatchParams, seed: int) -> dict:
    rng = random.Random(seed)
    docs = {d["_id"]: {**d, "capacity": dict(d["capacity"]), "record": dict(d["record"])} for d in docs}
    ix = ExpertIndex()
    for d in docs.values():
        ix.upsert(d)
    first_places: dict[str, list[str]] = {}
    closing: list[tuple[int, str, str]] = []  # (day, expert, dispatch)
    got: dict[str, int] = dict.fromkeys(docs, 0)
    quality, qualified, none_found, times = [], 0, 0, []
    for n, (day_no, need, caller) in enumerate(plan):
        today = START + timedelta(days=day_no)
        for c in [c for c in closing if c[0] <= day_no]:  # dispatches that ended: record, capacity back
            closing.remove(c)
            d = docs[c[1]]
            new, _ = domain.track_dispatch(d, c[2], "reported")
            new["record"] = {"dispatches": d["record"]["dispatches"] + 1}
            docs[c[1]] = new
            ix.upsert(new)
        t0 = time.perf_counter()
        cands = ix.candidates(fields=list(need.fields), today=today)
        for c in cands:
            c["first_places"] = first_places.get(c["expert_id"], [])
        top, _ = matching.suggest(cands, need, today=today, seed=f"{today}|{caller}", limit=10, p=p)
        times.append(time.perf_counter() - t0)
        if not top:
            none_found += 1
            continue
        fp = first_places.setdefault(top[0].expert_id, [])
        fp.append(today.isoformat())
        del fp[:-100]  # as the service keeps them (Store.note_first_place)
        r = rng.random()
        pick = top[0] if r < 0.55 or len(top) == 1 else top[1] if r < 0.75 else \
            top[2] if r < 0.85 and len(top) > 2 else rng.choice(top[min(3, len(top) - 1):])
        quality.append(pick.quality)
        qualified += pick.qualified
        got[pick.expert_id] += 1
        did = f"dsp-{n}"
        new, _ = domain.track_dispatch(docs[pick.expert_id], did, "accepted", today.isoformat())
        docs[pick.expert_id] = new
        ix.upsert(new)
        closing.append((day_no + rng.randint(10, 40), pick.expert_id, did))
    counts = sorted(got.values(), reverse=True)
    total = sum(counts)
    return {"dispatches": total, "no_suggestion": none_found,
            "top1": sum(counts[:max(len(counts) // 100, 1)]) / total, "top10": sum(counts[:max(len(counts) // 10, 1)]) / total,
            "gini": gini(counts), "with_one": sum(1 for c in counts if c), "max": counts[0],
            "quality": statistics.fmean(quality), "qualified": qualified / total,
            "p50_ms": statistics.median(times) * 1000, "p99_ms": sorted(times)[int(len(times) * 0.99)] * 1000}


def gini(values: list[int]) -> float:
    xs = sorted(values)
    n, s = len(xs), sum(xs)
    return sum((2 * i - n - 1) * x for i, x in enumerate(xs, 1)) / (n * s) if s else 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--experts", type=int, default=2000)
    ap.add_argument("--searches", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--max-penalty", type=float, default=None, help="fairness_max_penalty to try (default: the service's)")
    a = ap.parse_args()
    if a.max_penalty is not None:
        matching.DEFAULT = matching.MatchParams(fairness_max_penalty=a.max_penalty)
    rng = random.Random(a.seed)
    docs, plan = experts(a.experts, rng), searches(a.searches, rng)
    print(f"{a.experts:,} experts, {a.searches:,} searches over {DAYS} days, dispatch follows the suggestions "
          f"(seed {a.seed}); fairness: max penalty {matching.DEFAULT.fairness_max_penalty}, "
          f"half at load {matching.DEFAULT.load_half}, window {matching.DEFAULT.recent_days} d, "
          f"score step {matching.DEFAULT.score_step}")
    t0 = time.perf_counter()
    base = run(docs, plan, matching.BASELINE, a.seed)
    fair = run(docs, plan, matching.DEFAULT, a.seed)
    rows = [("dispatches", "dispatches", "{:,}"), ("no expert suggested", "no_suggestion", "{:,}"),
            ("share to top 1% experts", "top1", "{:.3f}"), ("share to top 10% experts", "top10", "{:.3f}"),
            ("Gini coefficient", "gini", "{:.3f}"), ("experts with ≥1 dispatch", "with_one", "{:,}"),
            ("most dispatches, one expert", "max", "{:,}"), ("mean quality of dispatched", "quality", "{:.3f}"),
            ("share dispatched qualified", "qualified", "{:.3f}"), ("suggest p50 ms", "p50_ms", "{:.2f}"),
            ("suggest p99 ms", "p99_ms", "{:.2f}")]
    print(f"{'':<30}{'baseline':>12}{'fairness':>12}{'fair/base':>11}")
    for label, key, fmt in rows:
        ratio = fair[key] / base[key] if base[key] else float("nan")
        print(f"{label:<30}{fmt.format(base[key]):>12}{fmt.format(fair[key]):>12}{ratio:>11.2f}")
    print(f"(both runs {time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()

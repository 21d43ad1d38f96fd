"""Integrity signals (R-DSP-15) on a synthetic fiscal year with collusion rings planted: precision and recall of each
pattern and of "two patterns or more", next to a baseline that flags at random at the same rate (same run, same data).

    uv run --frozen python bench/integrity.py            # 10,000 experts, 100,000 dispatches, 60 rings
    uv run --frozen python bench/integrity.py --small    # 1,000 experts, 10,000 dispatches, 6 rings

The rules run as the service runs them (dispatch_service.domain.integrity), over in-memory indexes standing in for
the service's collections (pair counts, MinHash bands). Honest behaviour includes what trips rules legitimately: a few
check-ins at a trade fair in Tokyo, long support of the same business, and reports written from the same phrases.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "services" / "dispatch" / "src"))

from dispatch_service.domain import geo, integrity as rules  # noqa: E402

PHRASES = ["売上減少の要因を分析した", "卸売依存からの転換を提案した", "ECサイトの試行を計画した", "道の駅での販売を検討した",
           "既存顧客への案内を作成した", "原価計算の見直しを行った", "価格改定の根拠を整理した", "人手不足への対応策を示した",
           "受発注業務のデジタル化を提案した", "多能工化の研修計画を作成した", "補助金の活用可能性を整理した",
           "事業承継の課題を洗い出した", "後継者との役割分担を整理した", "資金繰り表の作成を支援した", "金融機関との面談準備をした",
           "新商品の試作計画を立てた", "販路開拓の候補先を一覧にした", "SNS発信の手順を作成した", "在庫管理の改善を提案した",
           "店舗レイアウトの改善案を示した", "従業員の評価制度を検討した", "省エネ設備の導入効果を試算した",
           "BCPの初版を作成した", "取引条件の見直しを支援した", "観光客向けの商品開発を提案した", "月次決算の仕組みを整えた"]
PREFS = list(geo.CENTRES)


def report(rng: random.Random) -> str:
    return "。".join(rng.sample(PHRASES, 6)) + f"。次回は{rng.randint(1, 12)}月{rng.randint(1, 28)}日に確認する。"


def near(rng: random.Random, pref: str) -> dict:
    lat, lon = geo.CENTRES[pref]
    return {"lat": lat + rng.uniform(-0.6, 0.6), "lon": lon + rng.uniform(-0.6, 0.6)}


def synthesise(experts: int, dispatches: int, rings: int, seed: int = 7):
    rng = random.Random(seed)
    businesses = dispatches // 3
    biz_pref = {f"biz-{i}": rng.choice(PREFS) for i in range(businesses)}
    related: dict[str, set[str]] = defaultdict(set)
    out, bad = [], set()
    # the rings: an expert, 3-6 businesses, dispatched again and again, fake visits, copied reports, network ratings
    ring_experts = rng.sample(range(experts), rings)
    for r, e in enumerate(ring_experts):
        expert = f"ex-{e}"
        members = rng.sample(sorted(biz_pref), rng.randint(3, 6))
        if rng.random() < 0.5:
            related[expert] |= set(members[:2])
        base = report(rng)
        for b in members:
            for k in range(rng.randint(4, 6)):
                did = f"ring-{r}-{b}-{k}"
                fake_place = rng.random() < 0.6
                loc = near(rng, rng.choice(PREFS)) if fake_place else near(rng, biz_pref[b])
                text = base.replace("確認する", rng.choice(["確認する", "確認します", "見直す"])) if rng.random() < 0.7 \
                    else report(rng)
                out.append({"_id": did, "expert_id": expert, "business_id": b, "fiscal_year": 2024 + k % 3,
                            "route": rng.choice("AB"), "check_in": loc, "report": text, "rated": True})
                bad.add(did)
    while len(out) < dispatches:
        b = f"biz-{rng.randrange(businesses)}"
        expert = f"ex-{rng.randrange(experts)}"
        repeat = 4 if rng.random() < 0.002 else (rng.randint(1, 3) if rng.random() < 0.2 else 1)  # long support
        for k in range(repeat):
            loc = near(rng, "東京") if rng.random() < 0.005 else near(rng, biz_pref[b])  # a trade fair in Tokyo
            out.append({"_id": f"d-{len(out)}", "expert_id": expert, "business_id": b, "fiscal_year": 2024 + k % 3,
                        "route": rng.choice("AB"), "check_in": loc, "report": report(rng),
                        "rated": rng.random() < 0.8})
    rng.shuffle(out)
    return out, bad, biz_pref, related


def detect(data, biz_pref, related, p: rules.IntegrityParams) -> dict[str, set[str]]:
    flagged: dict[str, set[str]] = defaultdict(set)
    pairs: dict[tuple[str, str], list[dict]] = defaultdict(list)
    bands: dict[str, list[str]] = defaultdict(list)
    texts: dict[str, dict] = {}
    for d in data:  # in arrival order, as the events come
        pair = pairs[(d["expert_id"], d["business_id"])]
        pair.append(d)
        for flag in (rules.far_check_in(d, d["check_in"], biz_pref[d["business_id"]], p),
                     rules.repeated_pair(d, pair, p),
                     rules.network_rating(d, sorted(related[d["expert_id"]]), len(pair), p) if d["rated"] else None):
            if flag:
                flagged[flag.code].add(d["_id"])
        keys = rules.band_keys(d["report"], p)
        shared = defaultdict(int)
        for k in keys:
            for i in bands[k]:
                shared[i] += 1
        cands = [{"_id": i, "expert_id": texts[i]["expert_id"], "business_id": texts[i]["business_id"],
                  "text": texts[i]["report"]} for i in rules.most_shared(shared)]
        if flag := rules.copied_report(d, d["report"], cands, p):
            flagged[flag.code].add(d["_id"])
        for k in keys:
            bands[k].append(d["_id"])
        texts[d["_id"]] = d
    return flagged


def score(found: set[str], bad: set[str]) -> tuple[float, float]:
    tp = len(found & bad)
    return (tp / len(found) if found else 1.0), tp / len(bad)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", action="store_true")
    args = ap.parse_args()
    experts, dispatches, rings = (1_000, 10_000, 6) if args.small else (10_000, 100_000, 60)
    t0 = time.perf_counter()
    data, bad, biz_pref, related = synthesise(experts, dispatches, rings)
    t1 = time.perf_counter()
    flagged = detect(data, biz_pref, related, rules.IntegrityParams())
    t2 = time.perf_counter()
    print(f"synthetic year: {experts:,} experts, {len(data):,} dispatches, {rings} rings planted "
          f"({len(bad):,} ring dispatches); generated in {t1 - t0:.1f}s, rules over all in {t2 - t1:.1f}s "
          f"({len(data) / (t2 - t1):,.0f} dispatches/s)")
    rng = random.Random(1)
    ids = [d["_id"] for d in data]
    print(f"{'signal':<18}{'flags':>8}{'precision':>11}{'recall':>9}{'random, same rate':>20}")
    counts = defaultdict(int)
    for code, found in sorted(flagged.items()):
        for i in found:
            counts[i] += 1
        chance = set(rng.sample(ids, len(found)))
        pr, rc = score(found, bad)
        cpr, crc = score(chance, bad)
        print(f"{code:<18}{len(found):>8,}{pr:>11.3f}{rc:>9.3f}{f'{cpr:.3f} / {crc:.3f}':>20}")
    for label, found in (("any signal", {i for i in counts}), ("two or more", {i for i, n in counts.items() if n >= 2})):
        pr, rc = score(found, bad)
        cpr, crc = score(set(rng.sample(ids, len(found))), bad)
        print(f"{label:<18}{len(found):>8,}{pr:>11.3f}{rc:>9.3f}{f'{cpr:.3f} / {crc:.3f}':>20}")
    fp = {i for i, n in counts.items() if n >= 2} - bad
    print(f"false-positive rate of 'two or more' over honest dispatches: {len(fp) / (len(data) - len(bad)):.5f}")


if __name__ == "__main__":
    main()

"""A reproducible synthetic data set at the design's scale (R-OPS-03): businesses with three periods of financials
and experts, as the JSON Lines files the bulk import reads (layout: README, "Bulk onboarding").

    uv run python bench/dataset.py --businesses 1000000 --experts 10000 --seed 22 --out var/data

The same seed writes the same bytes. Names are built from common Japanese surnames, given names and trade words;
prefectures are drawn by their share of Japan's enterprises (approximately), industries and sizes by the shape of
Japan's SME census (most businesses small, retail and services largest); sales scale with employees and drift
year to year. Some rows are deliberately bad (`--bad-every`) so the import's rejection summary has work to do.
"""
from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

# (prefecture, relative weight ~ share of enterprises)
PREFECTURES = [("北海道", 42), ("青森県", 10), ("岩手県", 10), ("宮城県", 17), ("秋田県", 8), ("山形県", 10), ("福島県", 16),
               ("茨城県", 23), ("栃木県", 17), ("群馬県", 17), ("埼玉県", 46), ("千葉県", 36), ("東京都", 95), ("神奈川県", 54),
               ("新潟県", 21), ("富山県", 9), ("石川県", 10), ("福井県", 7), ("山梨県", 7), ("長野県", 19), ("岐阜県", 18),
               ("静岡県", 30), ("愛知県", 56), ("三重県", 14), ("滋賀県", 10), ("京都府", 22), ("大阪府", 66), ("兵庫県", 38),
               ("奈良県", 9), ("和歌山県", 8), ("鳥取県", 4), ("島根県", 5), ("岡山県", 14), ("広島県", 22), ("山口県", 10),
               ("徳島県", 6), ("香川県", 8), ("愛媛県", 11), ("高知県", 6), ("福岡県", 37), ("佐賀県", 6), ("長崎県", 10),
               ("熊本県", 13), ("大分県", 9), ("宮崎県", 8), ("鹿児島県", 13), ("沖縄県", 11)]
# (industry, weight, typical operating margin, sales per employee in yen, trade words)
INDUSTRIES = [("製造業", 12, 0.04, 25_000_000, ["精工", "製作所", "工業", "金属", "電機", "化成"]),
              ("建設業", 12, 0.035, 22_000_000, ["建設", "工務店", "組", "建工", "設備"]),
              ("小売業", 18, 0.02, 18_000_000, ["商店", "ストア", "薬局", "酒店", "書店"]),
              ("卸売業", 7, 0.02, 60_000_000, ["商事", "物産", "通商", "商会"]),
              ("サービス業", 25, 0.05, 10_000_000, ["サービス", "企画", "コンサルティング", "システム", "デザイン"]),
              ("飲食業", 12, 0.03, 6_000_000, ["食堂", "フーズ", "屋", "キッチン", "珈琲店"]),
              ("運輸業", 4, 0.03, 15_000_000, ["運輸", "物流", "運送", "交通"]),
              ("農業", 3, 0.02, 12_000_000, ["農園", "ファーム", "農産"]),
              ("不動産業", 7, 0.08, 30_000_000, ["不動産", "地所", "ハウジング"])]
SURNAMES = ["佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "山本", "中村", "小林", "加藤", "吉田", "山田", "佐々木", "山口",
            "松本", "井上", "木村", "林", "斎藤", "清水", "山崎", "森", "池田", "橋本", "阿部", "石川", "山下", "中島",
            "石井", "小川", "前田", "岡田", "長谷川", "藤田", "後藤", "近藤", "村上", "遠藤", "青木", "坂本"]
GIVEN = ["翔太", "健一", "大輔", "誠", "浩", "直樹", "拓也", "和也", "隆", "剛", "陽子", "恵子", "裕子", "真由美", "美咲",
         "由美", "智子", "彩", "さくら", "花子", "太郎", "一郎", "修", "学", "明美", "千尋", "亮", "悠斗", "蓮", "葵"]
PLACES = ["さくら", "あおば", "ひかり", "みどり", "富士", "大和", "北斗", "日の出", "光陽", "東西", "丸", "三和", "旭",
          "若葉", "中央", "双葉", "瑞穂", "浪速", "千代田", "朝日"]
FORMS = [("株式会社", 0.62), ("有限会社", 0.08), ("合同会社", 0.06), (None, 0.24)]  # None: a sole proprietor (個人事業主)
FIELDS = ["management", "finance", "tax", "legal", "ip", "sales_channels", "product_development", "it_dx",
          "business_succession", "hr", "overseas", "manufacturing", "startup"]  # contracts.vocab.EXPERT_FIELDS
FISCAL_YEARS = (2022, 2023, 2024)


def check_digit(base12: str) -> int:
    """The corporate number's check digit (法人番号, 国税庁 rule), as identity verifies it (R-ID-02)."""
    s = sum(int(d) * (1 if i % 2 == 0 else 2) for i, d in enumerate(reversed(base12)))
    return 9 - s % 9


def corporate_number(n: int) -> str:
    base = f"{n:012d}"
    return f"{check_digit(base)}{base}"


def employees(rnd: random.Random) -> int:
    """Most businesses are small: a Pareto-like tail from 0 (the owner alone) to a few hundred."""
    r = rnd.random()
    if r < 0.25:
        return rnd.randint(0, 2)
    if r < 0.75:
        return rnd.randint(3, 20)
    if r < 0.95:
        return rnd.randint(21, 100)
    return min(int(100 * rnd.paretovariate(1.5)), 2000)


def business(i: int, rnd: random.Random) -> dict:
    pref = rnd.choices([p for p, _ in PREFECTURES], [w for _, w in PREFECTURES])[0]
    ind, _, margin, per_emp, words = rnd.choices(INDUSTRIES, [w for _, w, *_ in INDUSTRIES])[0]
    form = rnd.choices([f for f, _ in FORMS], [w for _, w in FORMS])[0]
    surname = rnd.choice(SURNAMES)
    stem = rnd.choice([surname, rnd.choice(PLACES)])
    name = f"{form}{stem}{rnd.choice(words)}" if form else f"{stem}{rnd.choice(words)}"
    staff = employees(rnd)
    sales = int(per_emp * max(staff, 1) * rnd.lognormvariate(0, 0.4))
    periods = []
    for fy in FISCAL_YEARS:
        m = rnd.gauss(margin, 0.04)
        periods.append({"fiscal_year": fy, "sales": sales, "operating_profit": int(sales * m),
                        "ordinary_profit": int(sales * (m + rnd.gauss(0, 0.005))),
                        "net_income": int(sales * (m * 0.65)), "total_assets": int(sales * rnd.uniform(0.5, 1.5))})
        sales = int(sales * rnd.gauss(1.02, 0.08))
    row = {"name": name, "prefecture": pref, "industry": ind, "employees": staff,
           "representative": f"{surname} {rnd.choice(GIVEN)}", "capital": (rnd.choice([1, 3, 5, 10, 30]) * 1_000_000
                                                                            if form else None),
           "financials": periods}
    if form:
        row["corporate_number"] = corporate_number(1_000_000_000 + i)
    else:
        row["external_id"] = f"sole-{i:08d}"
    return row


def expert(i: int, rnd: random.Random) -> dict:
    pref = rnd.choices([p for p, _ in PREFECTURES], [w for _, w in PREFECTURES])[0]
    near = [p for p, _ in PREFECTURES]
    k = near.index(pref)
    return {"external_id": f"exp-{i:06d}", "account_id": f"acc-exp-{i:06d}", "name": f"{rnd.choice(SURNAMES)} {rnd.choice(GIVEN)}",
            "regions": near[max(k - 1, 0):k + 2], "fields": sorted(rnd.sample(FIELDS, rnd.randint(1, 4))),
            "introduction": f"{pref}を拠点に{rnd.randint(3, 40)}年、中小企業の支援に携わってきました。",
            "qualifications": rnd.sample(["中小企業診断士", "税理士", "社会保険労務士", "技術士", "弁理士", "ITコーディネータ"],
                                         rnd.randint(0, 2))}


def spoil(row: dict, rnd: random.Random) -> dict:
    """A realistic mistake: figures for a fiscal year not yet begun, a broken corporate number, a missing name or negative staff."""
    kind = rnd.randrange(4)
    if kind == 0:
        return {**row, "financials": row["financials"] + [{**row["financials"][-1], "fiscal_year": 2100}]}
    if kind == 1 and "corporate_number" in row:
        return {**row, "corporate_number": str((int(row["corporate_number"][0]) + 1) % 10) + row["corporate_number"][1:]}
    if kind == 2:
        return {k: v for k, v in row.items() if k != "name"}
    return {**row, "employees": -1}


def write(out: Path, n_businesses: int, n_experts: int, seed: int, bad_every: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rnd = random.Random(seed)
    t0 = time.perf_counter()
    with (out / "businesses.jsonl").open("w", encoding="utf-8") as f:
        for i in range(n_businesses):
            row = business(i, rnd)
            if bad_every and i % bad_every == bad_every - 1:
                row = spoil(row, rnd)
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    with (out / "experts.jsonl").open("w", encoding="utf-8") as f:
        for i in range(n_experts):
            f.write(json.dumps(expert(i, rnd), ensure_ascii=False) + "\n")
    print(f"wrote {n_businesses:,} businesses and {n_experts:,} experts to {out} in {time.perf_counter() - t0:.1f} s "
          f"(seed {seed})")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--businesses", type=int, default=1_000_000)
    ap.add_argument("--experts", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=22)
    ap.add_argument("--bad-every", type=int, default=10_000, help="every n-th business row is spoilt (0: none)")
    ap.add_argument("--out", type=Path, default=Path("var/data"))
    a = ap.parse_args()
    write(a.out, a.businesses, a.experts, a.seed, a.bad_every)

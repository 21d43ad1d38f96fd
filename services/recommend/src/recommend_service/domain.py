"""Pure recommendation rules (R-REC-01, R-REC-02, R-REC-04, R-REC-05, R-NOT-01): no I/O, data in, answers out."""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

SEED_FILE = Path(__file__).with_name("programmes.json")


@dataclass(frozen=True)
class Weights:
    """How much each kind of match counts; data, so policy can tune it without touching the logic."""

    industry: float = 3.0
    region: float = 2.0
    size: float = 1.0
    keyword: float = 1.0
    collaborative: float = 2.0
    min_content: float = 3.0  # R-NOT-01: below this a programme is not pushed (a size match alone is too weak)


WEIGHTS = Weights()

# SME Basic Act thresholds (employees): (small-business ceiling, SME ceiling) per industry; others use "other".
SIZE_LIMITS: dict[str, tuple[int, int]] = {
    "製造業": (20, 300), "建設業": (20, 300), "運輸業": (20, 300), "農業": (20, 300),
    "卸売業": (5, 100), "小売業": (5, 50), "飲食業": (5, 50), "サービス業": (5, 100), "other": (20, 300),
}
SIZE_LABELS = {"small": "小規模事業者", "medium": "中小企業", "large": "大企業"}


def load_catalogue(path: Path = SEED_FILE) -> list[dict]:
    """R-REC-04: the catalogue as seeded from the programmes of seeds 001 and 002."""
    return json.loads(path.read_text(encoding="utf-8"))


def size_class(industry: str, employees: int, limits: dict[str, tuple[int, int]] = SIZE_LIMITS) -> str:
    """R-REC-01: small / medium / large by employees, with the SME Act's ceiling for the industry."""
    small, medium = limits.get(industry, limits["other"])
    return "small" if employees <= small else "medium" if employees <= medium else "large"


@dataclass
class Scored:
    programme_id: str
    score: float
    reasons: list[str] = field(default_factory=list)


def content_score(programme: dict, profile: dict, w: Weights = WEIGHTS) -> Scored:
    """R-REC-01 content-based: tags of the programme against the business's industry, size (employees),
    prefecture and questionnaire keywords; every point scored comes with a reason the user can read.
    An empty tag list means "any" (e.g. no prefectures = nationwide) and earns no points; a size class
    or a region the programme excludes disqualifies it (score 0): a prefecture's own programme is of no
    use to a business elsewhere."""
    tags = programme.get("tags", {})
    out = Scored(programme["programme_id"], 0.0)
    sizes = tags.get("sizes") or []
    size = size_class(profile["industry"], profile["employees"])
    if sizes and size not in sizes:
        return out
    prefectures = tags.get("prefectures") or []
    if prefectures and profile["prefecture"] not in prefectures:
        return out
    industries = tags.get("industries") or []
    if profile["industry"] in industries:
        out.score += w.industry
        out.reasons.append(f"業種が一致: {profile['industry']} (matches your industry)")
    if profile["prefecture"] in prefectures:
        out.score += w.region
        out.reasons.append(f"地域が一致: {profile['prefecture']} (matches your region)")
    elif not prefectures:
        out.reasons.append("全国対象 (nationwide)")
    if sizes:
        out.score += w.size
        out.reasons.append(f"規模が対象: {SIZE_LABELS[size]}（従業員{profile['employees']}人） (your size is eligible)")
    wanted = {k.strip() for k in profile.get("keywords") or [] if k.strip()}
    for kw in sorted(wanted & set(tags.get("keywords") or [])):
        out.score += w.keyword
        out.reasons.append(f"ご回答に一致: {kw} (matches your answer)")
    return out


def co_occurrence(used: dict[str, set[str]]) -> dict[str, dict[str, int]]:
    """R-REC-02: item-item counts — for programmes X and Y, how many businesses used/favoured both."""
    co: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for items in used.values():
        for a, b in combinations(sorted(items), 2):
            co[a][b] += 1
            co[b][a] += 1
    return {a: dict(row) for a, row in co.items()}


def collaborative_scores(mine: set[str], used: dict[str, set[str]]) -> dict[str, tuple[float, str, int]]:
    """R-REC-02 collaborative filtering: programmes that businesses which used what I used also used.
    Score per candidate = Σ over my programmes of co-count / number of users of my programme (0..len(mine));
    returns candidate -> (score, the programme of mine that contributed most, how many businesses)."""
    co = co_occurrence(used)
    users: dict[str, int] = defaultdict(int)
    for items in used.values():
        for i in items:
            users[i] += 1
    out: dict[str, tuple[float, str, int]] = {}
    for x in sorted(mine):
        for y, n in co.get(x, {}).items():
            if y in mine:
                continue
            s, best, best_n = out.get(y, (0.0, x, 0))
            out[y] = (s + n / users[x], x if n > best_n else best, max(n, best_n))
    return out


def rank(programmes: list[dict], profile: dict, mine: set[str], used: dict[str, set[str]],
         names: dict[str, str] | None = None, w: Weights = WEIGHTS, limit: int = 10) -> list[Scored]:
    """R-REC-01 + R-REC-02: content score blended with the collaborative score; programmes the business
    already uses are left out; ties break on programme id so the order is stable."""
    names = names or {p["programme_id"]: p["name"] for p in programmes}
    cf = collaborative_scores(mine, {b: s for b, s in used.items()})
    ranked = []
    for p in programmes:
        if p["programme_id"] in mine:
            continue
        s = content_score(p, profile, w)
        if s.score == 0 and not s.reasons:
            continue  # disqualified by size
        if p["programme_id"] in cf:
            c, via, n = cf[p["programme_id"]]
            s.score += w.collaborative * c
            s.reasons.append(f"「{names.get(via, via)}」を利用した{n}社がこの施策も利用 "
                             f"(businesses that used {via} also used this)")
        if s.score > 0:
            ranked.append(s)
    ranked.sort(key=lambda s: (-s.score, s.programme_id))
    return ranked[:limit]


def to_push(programmes: list[dict], profile: dict, already: set[str], w: Weights = WEIGHTS) -> list[str]:
    """R-NOT-01 push: programme ids that match the profile well enough (content score ≥ min_content)
    and were not pushed to this business before, in a stable order."""
    return sorted(p["programme_id"] for p in programmes
                  if p["programme_id"] not in already and content_score(p, profile, w).score >= w.min_content)


def notification_id(business_id: str, programme_id: str) -> str:
    """R-NOT-01: one notification per business × programme, ever; redeliveries reuse the same id."""
    return f"rec:{business_id}:{programme_id}"


def uptake_cells(rows: list[dict], k: int = 5) -> tuple[list[dict], int]:
    """R-REC-05 EBPM: counts of distinct businesses per programme × prefecture × industry; a cell with
    fewer than k businesses is suppressed (dropped, and only the number of such cells reported) so no
    small group can be re-identified; business ids never leave this function.
    `rows`: {"business_id", "programme_id", "prefecture", "industry"}."""
    cells: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for r in rows:
        cells[(r["programme_id"], r["prefecture"], r["industry"])].add(r["business_id"])
    kept = [{"programme_id": p, "prefecture": pref, "industry": ind, "businesses": len(b)}
            for (p, pref, ind), b in sorted(cells.items()) if len(b) >= k]
    return kept, len(cells) - len(kept)

"""Pure recommendation rules (R-REC-01, R-REC-02, R-REC-04, R-REC-05, R-NOT-01) and case studies (R-POR-08): no I/O,
data in, answers out."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from contracts.vocab import PREFECTURES

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
    out = Scored(programme["programme_id"], 0.0)
    size = profile.get("size") or size_class(profile["industry"], profile["employees"])
    if not eligible(programme, size, profile["prefecture"]):
        return out
    return _tag_matches(out, programme.get("tags", {}), profile, size, w, case=False)


def _tag_matches(out: Scored, tags: dict, profile: dict, size: str, w: Weights, *, case: bool) -> Scored:
    """R-REC-01 / R-POR-08: the points and readable reasons of an item's tags against a business, the same for
    programmes and cases; only the words of the reasons differ where a case is an example, not an offer."""
    sizes = tags.get("sizes") or []
    prefectures = tags.get("prefectures") or []
    industries = tags.get("industries") or []
    if profile["industry"] in industries:
        out.score += w.industry
        out.reasons.append(f"業種が一致: {profile['industry']} (matches your industry)" if not case else
                           f"同じ業種の事例: {profile['industry']} (a case of your industry)")
    if profile["prefecture"] in prefectures:
        out.score += w.region
        out.reasons.append(f"地域が一致: {profile['prefecture']} (matches your region)" if not case else
                           f"同じ地域の事例: {profile['prefecture']} (a case from your region)")
    elif not prefectures and not case:
        out.reasons.append("全国対象 (nationwide)")
    if sizes and size in sizes:
        out.score += w.size
        staff = f"（従業員{profile['employees']}人）" if profile.get("employees") is not None else ""
        out.reasons.append(f"規模が対象: {SIZE_LABELS[size]}{staff} (your size is eligible)" if not case else
                           f"同じ規模の事例: {SIZE_LABELS[size]}{staff} (a business of your size)")
    wanted = {k.strip() for k in profile.get("keywords") or [] if k.strip()}
    for kw in sorted(wanted & set(tags.get("keywords") or [])):
        out.score += w.keyword
        out.reasons.append(f"ご回答に一致: {kw} (matches your answer)")
    return out


# --- case studies (R-POR-08) ---------------------------------------------------------------------------------------
CASES_FILE = Path(__file__).with_name("cases.json")


def load_cases(path: Path = CASES_FILE) -> list[dict]:
    """R-POR-08: the catalogue of support cases (事例), written for the project, in case-id order."""
    return sorted(json.loads(path.read_text(encoding="utf-8")), key=lambda c: c["case_id"])


def case_score(case: dict, profile: dict, w: Weights = WEIGHTS) -> Scored:
    """R-POR-08 with R-REC-01's matching: a case's tags (industry, region, size, challenge keywords) against the
    business, with the same weights and readable reasons as programmes. A case excludes nobody: one from another
    region or size is still worth reading, it only earns no points for that."""
    size = profile.get("size") or size_class(profile["industry"], profile["employees"])
    return _tag_matches(Scored(case["case_id"], 0.0), case.get("tags", {}), profile, size, w, case=True)


def rank_cases(cases: list[dict], profile: dict, w: Weights = WEIGHTS, limit: int = 5) -> list[Scored]:
    """R-POR-08: the cases closest to the business, best first; a case matching nothing is not recommended; ties
    break on case id so the order is stable."""
    ranked = [s for s in (case_score(c, profile, w) for c in cases) if s.score > 0]
    ranked.sort(key=lambda s: (-s.score, s.programme_id))
    return ranked[:limit]


def _text(case: dict) -> str:
    tags = case.get("tags", {})
    words = [case.get(k) or "" for k in ("title", "title_en", "summary", "summary_en", "support", "outcome")]
    words += [*tags.get("keywords", []), *tags.get("industries", []), *tags.get("prefectures", [])]
    return "\n".join(words).casefold()


def case_matches(case: dict, q: str = "", industry: str | None = None, region: str | None = None) -> bool:
    """R-POR-08 search: every word of `q` (spaces or 、 between words) appears in the case's text or tags (Japanese or
    English, case-insensitive), and the case is of `industry` and from `region` when they are given."""
    tags = case.get("tags", {})
    if industry and industry not in (tags.get("industries") or []):
        return False
    if region and region not in (tags.get("prefectures") or []):
        return False
    text = _text(case)
    return all(word in text for word in re.split(r"[\s、,，]+", q.casefold()) if word)


def region_problem(region: str | None) -> str | None:
    """R-POR-08 search: a region is one of the 47 prefectures, written as in Japanese."""
    if region and region not in PREFECTURES:
        return f"unknown region '{region}': give a prefecture as written in Japanese, e.g. 鳥取県, 東京都"
    return None


def cases_page(cases: list[dict], after: str, limit: int, **filters) -> tuple[list[dict], str | None]:
    """R-POR-08: a page of the matching cases in case-id order after the cursor `after`; the next cursor, or None."""
    hits = [c for c in cases if c["case_id"] > after and case_matches(c, **filters)]
    page = hits[:limit]
    return page, page[-1]["case_id"] if len(hits) > limit else None


def co_counts(used: dict[str, set[str]]) -> dict[str, dict]:
    """R-REC-02 as stored: per programme X, how many businesses used/favoured it ("users") and, per other
    programme Y, how many used both ("co"). Kept incrementally by `co_count_increments`; this batch form
    is what the increments must add up to."""
    out: dict[str, dict] = {}
    for items in used.values():
        seen: set[str] = set()
        for x in sorted(items):
            for key, inc in co_count_increments(seen, x).items():
                row = out.setdefault(key, {"users": 0, "co": {}})
                for field_, n in inc.items():
                    if field_ == "users":
                        row["users"] += n
                    else:
                        y = field_.split(".", 1)[1]
                        row["co"][y] = row["co"].get(y, 0) + n
            seen.add(x)
    return out


def co_count_increments(before: set[str], new_item: str) -> dict[str, dict[str, int]]:
    """R-REC-02 kept by events: a business that had `before` starts using `new_item` -> the `$inc` of each
    programme's counts document: {programme id: {"users": 1, "co.<other>": 1, ...}}."""
    if new_item in before:
        return {}
    out = {new_item: {"users": 1, **{f"co.{x}": 1 for x in sorted(before)}}}
    for x in sorted(before):
        out[x] = {f"co.{new_item}": 1}
    return out


def collaborative_scores(mine: set[str], counts: dict[str, dict]) -> dict[str, tuple[float, str, int]]:
    """R-REC-02 collaborative filtering: programmes that businesses which used what I used also used.
    Score per candidate = Σ over my programmes of co-count / number of users of my programme (0..len(mine));
    returns candidate -> (score, the programme of mine that contributed most, how many businesses).
    `counts`: the stored counts documents of my programmes (`co_counts`), so only they are read."""
    out: dict[str, tuple[float, str, int]] = {}
    for x in sorted(mine):
        row = counts.get(x) or {}
        for y, n in sorted((row.get("co") or {}).items()):
            if y in mine or n <= 0:
                continue
            s, best, best_n = out.get(y, (0.0, x, 0))
            out[y] = (s + n / max(row.get("users") or 1, 1), x if n > best_n else best, max(n, best_n))
    return out


def rank(programmes: list[dict], profile: dict, mine: set[str], counts: dict[str, dict],
         names: dict[str, str] | None = None, w: Weights = WEIGHTS, limit: int = 10) -> list[Scored]:
    """R-REC-01 + R-REC-02: content score blended with the collaborative score; programmes the business
    already uses are left out; ties break on programme id so the order is stable."""
    names = names or {p["programme_id"]: p["name"] for p in programmes}
    cf = collaborative_scores(mine, counts)
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


def eligible(programme: dict, size: str, prefecture: str) -> bool:
    """R-REC-01: a size class or a region the programme names and the business is not in disqualifies it."""
    tags = programme.get("tags", {})
    sizes, prefectures = tags.get("sizes") or [], tags.get("prefectures") or []
    return (not sizes or size in sizes) and (not prefectures or prefecture in prefectures)


def segment(industry: str, size: str, prefecture: str) -> str:
    """R-OPS-03: the segment a business is in (industry × size class × region). Everything recommendations and
    pushes match on is a function of it, so candidates and pushes are kept per segment, not per business."""
    return f"{industry}|{size}|{prefecture}"


def peer_group(industry: str, size: str) -> str:
    """R-REC-03: peers are the businesses of the same industry and size class."""
    return f"{industry}|{size}"


def segment_candidates(catalogue: list[dict], seg: str) -> list[dict]:
    """R-REC-01: the programmes a business of segment `seg` may be recommended (not excluded by size or region)."""
    industry, size, prefecture = seg.split("|")
    return [p for p in catalogue if eligible(p, size, prefecture)]


def segment_pushes(programme: dict, seg: str, w: Weights = WEIGHTS) -> bool:
    """R-NOT-01: whether a programme is pushed to the businesses of a segment (content score ≥ min_content;
    the score of a profile without keywords depends on its segment only)."""
    industry, size, prefecture = seg.split("|")
    return content_score(programme, {"industry": industry, "size": size, "prefecture": prefecture}, w).score >= w.min_content


def notification_id(business_id: str, programme_id: str) -> str:
    """R-NOT-01: one notification per business × programme, ever; redeliveries reuse the same id."""
    return f"rec:{business_id}:{programme_id}"


def cell_key(prefecture: str, industry: str) -> str:
    """The field name of an uptake counter cell (a field path may not hold '.' or start with '$')."""
    return f"{prefecture}|{industry}".replace(".", "．").replace("$", "＄")


def uptake_from_counters(stats: list[dict], k: int = 5) -> tuple[list[dict], int]:
    """R-REC-05 from counters: `stats` = [{"programme_id", "uptake": {"<prefecture>|<industry>": businesses}}],
    kept by events (one +1 per business's first use); cells under k are suppressed and only counted."""
    kept, suppressed = [], 0
    for s in sorted(stats, key=lambda s: s["programme_id"]):
        for cell, n in sorted((s.get("uptake") or {}).items()):
            if n < k:
                suppressed += n > 0
                continue
            prefecture, industry = cell.split("|", 1)
            kept.append({"programme_id": s["programme_id"], "prefecture": prefecture, "industry": industry, "businesses": n})
    return kept, suppressed


# --- needs and offers of the community recommended like programmes (R-POR-03 with R-REC-01) --------------------------
POSTING_KIND_WORDS = {"successor": ("事業承継", "後継者", "succession"), "sales_channel": ("販路", "sales"),
                      "partner": ("提携", "協業", "partner"), "expert_help": ("専門家", "expert")}


def rank_postings(postings: list[dict], profile: dict, business_id: str, keywords: list[str] = (),
                  limit: int = 5) -> list[Scored]:
    """Open needs and offers for a business, each with its reasons: same prefecture, same industry, and a kind its
    questionnaire answers name; never its own, nothing that matches none of these. Newest first among equals."""
    out = []
    for p in postings:
        if p.get("status") != "open" or p.get("owner_id") == business_id:
            continue
        score, reasons = 0.0, []
        if p.get("region") == profile.get("prefecture"):
            score, reasons = score + 1.0, reasons + [f"same prefecture ({p['region']})"]
        if p.get("industry") == profile.get("industry"):
            score, reasons = score + 1.0, reasons + [f"same industry ({p['industry']})"]
        words = POSTING_KIND_WORDS.get(p.get("kind"), ())
        if any(w in k for k in keywords for w in words):
            score, reasons = score + 0.5, reasons + [f"you asked about {p['kind'].replace('_', ' ')}"]
        if score > 0:
            out.append((score, p.get("key", ""), Scored(p["_id"], score, reasons)))
    out.sort(key=lambda t: (-t[0], t[1]))
    return [s for _, _, s in out[:limit]]

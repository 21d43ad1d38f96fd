"""Pure rules of explainable, fair expert suggestions (R-EX-07, with R-EX-06's holds): no I/O, dates as arguments.

A suggestion is ranked by three keys, in this order:
1. `qualified` — the expert covers every field asked for and serves the region (same prefecture, same block, or
   remote work accepted by both sides). Nothing below can lift a partial match above a qualified one.
2. the fair score — the quality score (fields, region, record, ratings, radar on the needed axes) minus a bounded
   penalty for recent load (dispatches received lately, first places in suggestions lately). The penalty never
   exceeds `fairness_max_penalty`, so it only reorders experts whose quality is within that margin: among
   comparably qualified experts the work spreads, a clearly better expert stays ahead. Scores are compared in steps
   of `score_step`: experts within one step are equals.
3. a rotating tie-break — a hash of (seed, expert id): deterministic for a given seed (the same caller asking the
   same question the same day sees the same order), different for another seed, so equals take turns at the top.

Experts who cannot take work are never suggested (R-EX-06): paused, at their cap of open dispatches, inside a
declared unavailability window or off their working weekdays on the day asked for, or matching none of the fields
asked for.
Every suggestion carries its reasons as data and as short sentences.
"""
from __future__ import annotations

import hashlib
import heapq
import math
from dataclasses import dataclass, field
from datetime import date, timedelta

from contracts.vocab import RATING_AXES

# The nine regional bureau blocks (経済産業局 管轄), prefecture -> block.
BLOCKS: dict[str, str] = {
    "北海道": "北海道",
    **{p: "東北" for p in ("青森県", "岩手県", "宮城県", "秋田県", "山形県", "福島県")},
    **{p: "関東" for p in ("茨城県", "栃木県", "群馬県", "埼玉県", "千葉県", "東京都", "神奈川県", "新潟県", "山梨県",
                           "長野県", "静岡県")},
    **{p: "中部" for p in ("富山県", "石川県", "岐阜県", "愛知県", "三重県")},
    **{p: "近畿" for p in ("福井県", "滋賀県", "京都府", "大阪府", "兵庫県", "奈良県", "和歌山県")},
    **{p: "中国" for p in ("鳥取県", "島根県", "岡山県", "広島県", "山口県")},
    **{p: "四国" for p in ("徳島県", "香川県", "愛媛県", "高知県")},
    **{p: "九州" for p in ("福岡県", "佐賀県", "長崎県", "熊本県", "大分県", "宮崎県", "鹿児島県")},
    "沖縄県": "沖縄",
}


WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True)
class MatchParams:
    """Weights and limits of R-EX-07 (programme data: named here, never literals in the rules)."""

    w_fields: float = 0.40          # × share of the requested fields the expert covers
    w_same_prefecture: float = 0.25
    w_same_block: float = 0.15
    w_remote: float = 0.10
    w_record: float = 0.15          # × completed dispatches, log-scaled, full at `record_saturation`
    record_saturation: int = 20
    w_rating: float = 0.15          # × (overall average − 1) / 4, once `min_ratings` ratings exist
    min_ratings: int = 3
    unrated_prior: float = 0.5      # an expert without enough ratings counts as middling, not as bad
    w_needs: float = 0.05           # × the same scale on the axes the caller needs (when named)
    strength_threshold: float = 4.0  # an axis average from which it is named as a strength
    # fairness
    fairness_max_penalty: float = 0.08  # the most recent load can take off the score (0: no fairness term)
    load_half: float = 3.0          # the load at which half of the maximum penalty applies
    recent_days: int = 90           # dispatches received within this many days count as load
    exposure_weight: float = 0.5    # one recent first place in suggestions weighs as half a dispatch
    exposure_days: int = 14         # first places in suggestions within this many days count as load
    score_step: float = 0.02        # scores within one step are equals (the tie-break decides)
    rotate: bool = True             # False: equals in expert-id order (the baseline without fairness)


DEFAULT = MatchParams()
BASELINE = MatchParams(fairness_max_penalty=0.0, rotate=False)


@dataclass(frozen=True)
class Need:
    """What the institution or business looks for."""

    fields: tuple[str, ...] = ()
    region: str | None = None       # the business's prefecture
    remote_ok: bool = False         # the business accepts online work
    needs: tuple[str, ...] = ()     # rating axes that matter for this issue (R-RAT-01 names)
    on: date | None = None          # the day the work should start (availability)


@dataclass
class Suggestion:
    expert_id: str
    name: str
    qualified: bool
    quality: float
    penalty: float
    score: float
    reasons: dict
    summary: list[str] = field(default_factory=list)
    tiebreak: str = ""

    def card(self) -> dict:
        return {"expert_id": self.expert_id, "name": self.name, "qualified": self.qualified,
                "score": round(self.score, 4), "quality": round(self.quality, 4), "penalty": round(self.penalty, 4),
                "reasons": self.reasons, "summary": self.summary}


def block_of(prefecture: str | None) -> str | None:
    return BLOCKS.get(prefecture or "")


def capacity_left(c: dict) -> int | None:
    """Open dispatches the expert still takes on (None: no cap set)."""
    return None if c.get("open_cap") is None else max(c["open_cap"] - c.get("open", 0), 0)


def exclusion(c: dict, need: Need) -> str | None:
    """Why an expert is not suggested at all, or None (R-EX-06, and no field in common)."""
    if c.get("paused"):
        return "paused"
    if capacity_left(c) == 0:
        return "at_cap"
    if need.on and (any(s <= need.on <= e for s, e in c.get("windows", ()))
                    or (c.get("weekdays") and need.on.weekday() not in c["weekdays"])):
        return "unavailable"
    if need.fields and not set(need.fields) & set(c.get("fields", ())):
        return "no_field"
    return None


def region_match(c: dict, need: Need) -> str:
    """same_prefecture | same_block | remote | none | any (no region asked for)."""
    if not need.region:
        return "any"
    regions = set(c.get("regions", ()))
    if need.region in regions:
        return "same_prefecture"
    b = block_of(need.region)
    if b and b in {block_of(r) for r in regions}:
        return "same_block"
    if need.remote_ok and c.get("remote_ok"):
        return "remote"
    return "none"


def recent_load(c: dict, today: date, p: MatchParams) -> tuple[int, int, float]:
    """(dispatches received within `recent_days`, recent first places, their weighted sum)."""
    since = (today - timedelta(days=p.recent_days)).isoformat()
    n = sum(1 for at in c.get("recent", ()) if str(at)[:10] >= since)
    fp = c.get("first_places", 0)
    if isinstance(fp, int):
        firsts = fp
    else:  # the days the expert was suggested first
        first_since = (today - timedelta(days=p.exposure_days)).isoformat()
        firsts = sum(1 for d in fp if str(d)[:10] >= first_since)
    return n, firsts, n + p.exposure_weight * firsts


def fairness_penalty(load: float, p: MatchParams) -> float:
    """Grows with load, never beyond `fairness_max_penalty`."""
    return 0.0 if load <= 0 else p.fairness_max_penalty * load / (load + p.load_half)


def _scale(avg: float) -> float:
    return min(max((avg - 1) / 4, 0.0), 1.0)


def score(c: dict, need: Need, today: date, p: MatchParams = DEFAULT) -> tuple[bool, float, float]:
    """(qualified, quality, fairness penalty) of one (not excluded) expert: the numbers only."""
    return scorer(need, today, p)(c)


def scorer(need: Need, today: date, p: MatchParams = DEFAULT):
    """`score` for one need, with what depends only on the need worked out once: it runs for every candidate."""
    wanted, n_wanted = need.fields, len(need.fields)
    block = block_of(need.region)
    axes = [a for a in need.needs if a in RATING_AXES]
    since = (today - timedelta(days=p.recent_days)).isoformat()
    first_since = (today - timedelta(days=p.exposure_days)).isoformat()
    record_full = math.log1p(p.record_saturation)
    unrated = p.w_rating * p.unrated_prior + (p.w_needs * p.unrated_prior if axes else 0.0)

    def one(c: dict) -> tuple[bool, float, float]:
        fields = c.get("fields", ())
        n_matched = sum(1 for f in wanted if f in fields)
        if not need.region:
            region_w, served = p.w_same_prefecture, True
        else:
            regions = c.get("regions", ())
            served = True
            if need.region in regions:
                region_w = p.w_same_prefecture
            elif block and any(BLOCKS.get(r) == block for r in regions):
                region_w = p.w_same_block
            elif need.remote_ok and c.get("remote_ok"):
                region_w = p.w_remote
            else:
                region_w, served = 0.0, False
        quality = (p.w_fields * (n_matched / n_wanted if n_wanted else 1.0) + region_w
                   + p.w_record * min(math.log1p(c.get("record", 0)) / record_full, 1.0))
        radar = c.get("radar")
        avgs = radar.get("averages") if radar else None
        if avgs and (radar.get("count") or 0) >= p.min_ratings:
            quality += p.w_rating * _scale(sum(avgs.values()) / len(avgs))
            if axes:
                quality += p.w_needs * sum(_scale(avgs.get(x, 1.0)) for x in axes) / len(axes)
        else:
            quality += unrated
        load = sum(1 for at in c.get("recent", ()) if at >= since)
        fp = c.get("first_places", 0)
        load += p.exposure_weight * (fp if isinstance(fp, int) else sum(1 for d in fp if d >= first_since))
        return n_matched == n_wanted and served, quality, fairness_penalty(load, p)
    return one


def assess(c: dict, need: Need, today: date, p: MatchParams = DEFAULT) -> Suggestion:
    """The score of one (not excluded) expert for a need, with every reason behind it."""
    qualified, quality, penalty = score(c, need, today, p)
    fields = list(c.get("fields", ()))
    matched = [f for f in need.fields if f in fields]
    missing = [f for f in need.fields if f not in fields]
    region = region_match(c, need)
    radar = c.get("radar") or {}
    avgs, count = radar.get("averages") or {}, int(radar.get("count") or 0)
    rated = count >= p.min_ratings and bool(avgs)
    overall = sum(avgs.values()) / len(avgs) if avgs else None
    axes = [a for a in need.needs if a in RATING_AXES]
    strengths = [{"axis": a, "average": round(avgs[a], 2)} for a in (axes or RATING_AXES)
                 if rated and avgs.get(a, 0) >= p.strength_threshold]
    recent, firsts, _ = recent_load(c, today, p)
    reasons = {
        "fields": {"matched": matched, "missing": missing, "all_of_expert": fields},
        "region": {"match": region, "asked": need.region, "block": block_of(need.region),
                   "expert_regions": list(c.get("regions", ())), "remote_ok": bool(c.get("remote_ok"))},
        "record": {"completed_dispatches": int(c.get("record", 0))},
        "rating": {"average": round(overall, 2) if overall is not None else None, "count": count, "counted": rated},
        "strengths": strengths,
        "availability": {"on_hold": False, "open_dispatches": int(c.get("open", 0)), "open_cap": c.get("open_cap"),
                         "capacity_left": capacity_left(c), "available_on": need.on.isoformat() if need.on else None,
                         "weekdays": list(c.get("weekdays") or [])},
        "fairness": {"recent_dispatches": recent, "recent_first_places": firsts, "penalty": round(penalty, 4)},
    }
    return Suggestion(c["expert_id"], c.get("name", ""), qualified, quality, penalty, quality - penalty, reasons,
                      _summary(reasons, need, p))


def _summary(r: dict, need: Need, p: MatchParams) -> list[str]:
    out = []
    f = r["fields"]
    if need.fields:
        out.append(f"Covers {len(f['matched'])} of {len(need.fields)} fields asked for: {', '.join(f['matched'])}"
                   + (f" (not {', '.join(f['missing'])})" if f["missing"] else ""))
    words = {"same_prefecture": f"Works in {need.region}", "same_block": f"Works in the {r['region']['block']} block",
             "remote": "Works remotely, as the business accepts", "none": f"Does not work in or near {need.region}",
             "any": "No region asked for"}
    out.append(words[r["region"]["match"]])
    out.append(f"{r['record']['completed_dispatches']} completed dispatches")
    rt = r["rating"]
    out.append(f"Rated {rt['average']} on average over {rt['count']} ratings" if rt["counted"]
               else f"Fewer than {p.min_ratings} ratings yet: counted as middling")
    if r["strengths"]:
        out.append("Strong in " + ", ".join(f"{s['axis']} ({s['average']})" for s in r["strengths"]))
    a = r["availability"]
    out.append("Takes on more dispatches (no cap set)" if a["capacity_left"] is None
               else f"Can take {a['capacity_left']} more open dispatches")
    if need.on:
        out.append(f"Available on {a['available_on']}")
    if a["weekdays"]:
        out.append("Takes visits on " + ", ".join(WEEKDAYS[d] for d in a["weekdays"]))
    fr = r["fairness"]
    if fr["penalty"] > 0:
        out.append(f"Recent load ({fr['recent_dispatches']} dispatches, {fr['recent_first_places']} first places) "
                   f"lowers the score by {fr['penalty']}, so work spreads")
    return out


def tiebreak(seed: str, expert_id: str) -> str:
    return hashlib.sha256(f"{seed}\x00{expert_id}".encode()).hexdigest()[:16]


def order_key(qualified: bool, fair_score: float, tie: str, p: MatchParams) -> tuple:
    """Qualified first; then the fair score in steps of `score_step`; then the tie-break."""
    return (not qualified, -math.floor(fair_score / p.score_step + 1e-9), tie)


def suggest(candidates: list[dict], need: Need, *, today: date, seed: str, limit: int = 10,
            p: MatchParams = DEFAULT) -> tuple[list[Suggestion], dict[str, int]]:
    """R-EX-07: the top `limit` suggestions with their reasons, and how many candidates were left out for each
    reason. Every candidate is scored; only the ones shown are explained."""
    left_out: dict[str, int] = {}
    keyed, one = [], scorer(need, today, p)
    for c in candidates:
        why = exclusion(c, need)
        if why:
            left_out[why] = left_out.get(why, 0) + 1
            continue
        qualified, quality, penalty = one(c)
        tie = tiebreak(seed, c["expert_id"]) if p.rotate else c["expert_id"]
        keyed.append((order_key(qualified, quality - penalty, tie, p), c))
    top = heapq.nsmallest(limit, keyed, key=lambda kc: kc[0])
    out = []
    for _, c in top:
        s = assess(c, need, today, p)
        s.tiebreak = tiebreak(seed, c["expert_id"]) if p.rotate else c["expert_id"]
        out.append(s)
    return out, left_out

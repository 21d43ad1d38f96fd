"""Pure rules of the ratings service (R-RAT-01..04, R-DSP-12): no I/O, no framework.

Radar aggregation (R-RAT-02)
    Each expert keeps per-day buckets ``{"YYYY-MM-DD": [count, sum of axis 1, ..., sum of axis 6]}`` (axes in
    ``RATING_AXES`` order). A new rating adds to its day's bucket; a correction adds the difference to the original day's bucket; the
    radar is the sum of the buckets inside the window divided by their count. Buckets that fall out of
    the window are dropped (and the radar republished). So the cost per rating is O(days in window),
    never O(ratings): 1,000,000 ratings over 10,000 experts is ~100 ratings and <=120 buckets each.
    The document is rewritten on every rating, so it is stored packed (``Radar.pack``): one string
    ``"YYYY-MM-DD n s1 s2 s3 s4 s5 s6;..."``. Measured on the local MongoDB-wire server at 100 buckets:
    44 read+writes/s with a sub-document per bucket, 394/s packed.

Year-end classification (R-RAT-04)
    Per expert and fiscal year, average each of the four institution items over all evaluations of
    that year. Let P = mean(issue_handling, strategy_building) (planning: diagnosing the issue and
    building the strategy) and D = mean(knowledge, execution_capability) (delivery: know-how and
    carrying it out), and M = mean of the four item averages. With the threshold T (param, 3.5):
      type I   P >= T and D >= T   all-round: plans and delivers
      type II  P >= T and D <  T   strategist: strongest at diagnosis and planning
      type III P <  T and D >= T   practitioner: strongest at hands-on delivery
      type IV  P <  T and D <  T   developing: neither profile strong yet
    Level by bands of M (params): L4 M >= 4.5, L3 M >= 3.5, L2 M >= 2.5, L1 otherwise.
    Evaluations stay private until the fiscal year has ended; classification runs only after that.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from contracts.vocab import INSTITUTION_EVALUATION_ITEMS, RATING_AXES, fiscal_year
from servicekit.refusals import Rejected

SCORE_MIN, SCORE_MAX = 1, 5


@dataclass(frozen=True)
class Params:
    """Programme parameters of the ratings rules (data, not literals in the logic)."""

    window_days: int = 120            # R-RAT-02: ~4 months
    correction_days: int = 7          # R-RAT-01: a rater may correct a rating within this period
    comment_max_chars: int = 2000
    type_threshold: float = 3.5       # R-RAT-04: strong profile threshold
    level_bands: tuple[tuple[float, str], ...] = ((4.5, "L4"), (3.5, "L3"), (2.5, "L2"))  # else L1


PARAMS = Params()


def rule_violation(title: str, errors: list[dict]) -> Rejected:
    """A request breaks a rule: `Rejected("invalid", …)` whose `errors` say which field and why, in words a user
    understands (the detail lists them too)."""
    return Rejected("invalid", title, "; ".join(f"{x['field']}: {x['message']}" for x in errors), errors=errors)


# --- R-RAT-01: six axes, each an integer 1-5 ------------------------------------------------------
def validate_scores(scores: dict, axes: tuple[str, ...] = RATING_AXES) -> dict[str, int]:
    """R-RAT-01 (and R-RAT-04 with `axes=INSTITUTION_EVALUATION_ITEMS`): every axis present, nothing
    else, each an integer 1..5 (booleans and 4.5 are refused)."""
    errors = []
    for a in axes:
        v = scores.get(a)
        if a not in scores:
            errors.append({"field": f"scores.{a}", "message": "missing: every axis must be scored"})
        elif isinstance(v, bool) or not isinstance(v, int) or not SCORE_MIN <= v <= SCORE_MAX:
            errors.append({"field": f"scores.{a}",
                           "message": f"must be a whole number from {SCORE_MIN} to {SCORE_MAX}, got {v!r}"})
    for a in scores:
        if a not in axes:
            errors.append({"field": f"scores.{a}", "message": f"unknown axis; the axes are {', '.join(axes)}"})
    if errors:
        raise rule_violation("The scores are not valid", errors)
    return {a: int(scores[a]) for a in axes}


def validate_comment(comment: str | None, params: Params = PARAMS) -> str | None:
    """R-RAT-01: a comment is optional; blank means none."""
    if comment is None or not comment.strip():
        return None
    if len(comment) > params.comment_max_chars:
        raise rule_violation("The comment is too long", [
            {"field": "comment", "message": f"at most {params.comment_max_chars} characters"}])
    return comment.strip()


def comment_moderation(comment: str | None) -> str | None:
    """R-RAT-01: a comment is never public before moderation: it starts as `pending`."""
    return "pending" if comment else None


def may_correct(given_at: datetime, now: datetime, params: Params = PARAMS) -> bool:
    """R-RAT-01: one rating per rater per dispatch, correctable only within the correction period."""
    return now - given_at <= timedelta(days=params.correction_days)


def owed_id(dispatch_id: str, rater_kind: str) -> str:
    """R-RAT-01/03: one owed rating per dispatch and rater kind; the id makes recording it idempotent."""
    from contracts.events.ratings import owed_rating_id

    return owed_rating_id(dispatch_id, rater_kind)


def raters_owed(route: str, business_account_id: str, institution_account_id: str | None) -> list[tuple[str, str]]:
    """R-RAT-01: after a dispatch the business rates; via a platform (route A) the institution too."""
    raters = [("business", business_account_id)]
    if route == "A" and institution_account_id:
        raters.append(("institution", institution_account_id))
    return raters


def blocks_free_dispatch(owed: list[dict]) -> bool:
    """R-DSP-12 / R-RAT-03: a business with any owed (not yet given) business rating cannot apply."""
    return any(o.get("status") == "owed" and o.get("rater_kind") == "business" for o in owed)


# --- R-RAT-02: windowed radar ------------------------------------------------------------------
def day_key(at: datetime | date) -> str:
    return (at.date() if isinstance(at, datetime) else at).isoformat()


def window_start(today: date, params: Params = PARAMS) -> str:
    """R-RAT-02: the first day inside the window (days before it no longer count)."""
    return (today - timedelta(days=params.window_days - 1)).isoformat()


@dataclass
class Radar:
    """Per-day sums of one expert's ratings (R-RAT-02): ``days[day] = [n, sum per axis in RATING_AXES order]``."""

    days: dict[str, list[int]] = field(default_factory=dict)

    def add(self, day: str, scores: dict[str, int], n: int = 1) -> None:
        b = self.days.setdefault(day, [0] * (1 + len(RATING_AXES)))
        b[0] += n
        for i, a in enumerate(RATING_AXES, 1):
            b[i] += scores.get(a, 0)

    def correct(self, day: str, old: dict[str, int], new: dict[str, int]) -> None:
        """R-RAT-01 correction: the rating keeps its day; only the difference is added."""
        self.add(day, {a: new[a] - old[a] for a in RATING_AXES}, n=0)

    def pack(self) -> str:
        """The stored form: ``day n s1..s6`` per bucket, oldest first, joined by ``;``."""
        return ";".join(f"{d} {' '.join(map(str, self.days[d]))}" for d in sorted(self.days))

    @classmethod
    def unpack(cls, stored: str | dict | None) -> Radar:
        """Reads `pack`'s form (and the earlier ``{day: {"n", "sums": {axis: sum}}}`` documents)."""
        if isinstance(stored, dict):
            return cls({d: [b["n"], *(b["sums"].get(a, 0) for a in RATING_AXES)] for d, b in stored.items()})
        days = {}
        for bucket in filter(None, (stored or "").split(";")):
            d, *values = bucket.split(" ")
            days[d] = [int(v) for v in values]
        return cls(days)

    def expired_days(self, today: date, params: Params = PARAMS) -> list[str]:
        start = window_start(today, params)
        return sorted(d for d in self.days if d < start)

    def expire(self, today: date, params: Params = PARAMS) -> list[str]:
        """Drops buckets that left the window; returns them (non-empty: the radar changed)."""
        gone = self.expired_days(today, params)
        for d in gone:
            del self.days[d]
        return gone

    def summary(self, today: date, params: Params = PARAMS) -> tuple[dict[str, float], int]:
        """R-RAT-02: per-axis averages and count over the window only (future days count too: clock skew)."""
        start = window_start(today, params)
        total = [0] * (1 + len(RATING_AXES))
        for d, b in self.days.items():
            if d >= start:
                total = [t + v for t, v in zip(total, b, strict=True)]
        n = total[0]
        if n == 0:
            return {}, 0
        return {a: round(total[i] / n, 3) for i, a in enumerate(RATING_AXES, 1)}, n

    def oldest(self) -> str | None:
        return min(self.days) if self.days else None


# --- R-RAT-04: institution evaluations and year-end classification -------------------------------
def validate_evaluation(items: dict) -> dict[str, int]:
    """R-RAT-04: the four institution items, each an integer 1..5."""
    return validate_scores(items, INSTITUTION_EVALUATION_ITEMS)


def fiscal_year_ended(fy: int, today: date) -> bool:
    """R-RAT-04: fiscal year `fy` runs April fy .. March fy+1; it has ended once fy+1's April began."""
    return fiscal_year(today) > fy


def evaluations_visible(fy: int, today: date, roles: frozenset[str]) -> bool:
    """R-RAT-04: evaluations are private (agency and operator only) until the fiscal year ends."""
    return bool(roles & {"agency", "operator"}) or fiscal_year_ended(fy, today)


def item_averages(evaluations: list[dict[str, int]]) -> dict[str, float]:
    n = len(evaluations)
    return {i: sum(e[i] for e in evaluations) / n for i in INSTITUTION_EVALUATION_ITEMS}


def classify(evaluations: list[dict[str, int]], params: Params = PARAMS) -> tuple[str, str]:
    """R-RAT-04: (type, level) from one fiscal year's evaluations of one expert; rules in the module doc."""
    if not evaluations:
        raise ValueError("no evaluations to classify")
    avg = item_averages(evaluations)
    planning = (avg["issue_handling"] + avg["strategy_building"]) / 2
    delivery = (avg["knowledge"] + avg["execution_capability"]) / 2
    t = params.type_threshold
    kind = {(True, True): "I", (True, False): "II", (False, True): "III", (False, False): "IV"}[
        (planning >= t, delivery >= t)]
    mean = sum(avg.values()) / len(avg)
    level = next((lv for bound, lv in params.level_bands if mean >= bound), "L1")
    return kind, level

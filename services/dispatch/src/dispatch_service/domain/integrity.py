"""Integrity signals (R-DSP-15), pure: patterns the agency reviews, each flag with its evidence. A flag never acts
alone — refusing, cancelling or claiming a refund stays the agency's decision (R-DSP-13).

The patterns:
- `far_check_in`: an on-site check-in far from the business's prefecture (more than `far_km` from its seat);
- `repeated_pair`: the same expert and business in more than `pair_cap` dispatches within `pair_years` fiscal years,
  across routes (the free-dispatch cap of one year is the natural bound);
- `network_rating`: a rating given to the expert by a business of the expert's own network (a related business, or a
  business the expert has served beyond the pair cap);
- `copied_report`: a report nearly identical to the report of another dispatch (Jaccard similarity of character
  shingles at least `copy_similarity`), found through MinHash bands so that no report is compared with all others.
"""
from __future__ import annotations

import hashlib
import random
import re
import struct
import zlib
from dataclasses import dataclass, field

from dispatch_service.domain import geo

RULE = "R-DSP-15"


@dataclass(frozen=True)
class IntegrityParams:
    far_km: float = 150.0
    pair_cap: int = 3
    pair_years: int = 3
    copy_similarity: float = 0.8
    shingle: int = 5
    bands: int = 8
    rows: int = 4          # bands × rows MinHash values: similarity 0.8 → compared with probability 0.985, 0.9 → 0.9998


@dataclass(frozen=True)
class Flag:
    code: str
    dispatch_id: str
    expert_id: str
    business_id: str
    evidence: dict = field(default_factory=dict)
    message: str = ""
    rule: str = RULE

    @property
    def flag_id(self) -> str:
        """One flag per pattern and dispatch: raising it again (a redelivered event) changes nothing."""
        return f"flag:{self.code}:{self.dispatch_id}"


def far_check_in(d: dict, location: dict, prefecture: str | None, p: IntegrityParams) -> Flag | None:
    seat = geo.centre(prefecture)
    if seat is None or location.get("lat") is None:
        return None
    distance = geo.km(seat, (location["lat"], location["lon"]))
    if distance <= p.far_km:
        return None
    return Flag("far_check_in", d["_id"], d["expert_id"], d["business_id"],
                {"check_in": {"lat": location["lat"], "lon": location["lon"], "place": location.get("place", "")},
                 "prefecture": prefecture, "km_from_prefecture_seat": round(distance)},
                f"The expert checked in {round(distance)} km from the seat of {prefecture}, where the business is.")


def repeated_pair(d: dict, pair_dispatches: list[dict], p: IntegrityParams) -> Flag | None:
    """`pair_dispatches`: the pair's dispatches that counted (accepted or further), this one included."""
    recent = [x for x in pair_dispatches if x["fiscal_year"] > d["fiscal_year"] - p.pair_years]
    if len(recent) <= p.pair_cap:
        return None
    ids = sorted(x["_id"] for x in recent)
    return Flag("repeated_pair", d["_id"], d["expert_id"], d["business_id"],
                {"dispatch_ids": ids, "routes": sorted({x["route"] for x in recent}),
                 "fiscal_years": sorted({x["fiscal_year"] for x in recent})},
                f"Expert and business are in {len(ids)} dispatches within {p.pair_years} fiscal years (more than "
                f"{p.pair_cap}).")


def network_rating(d: dict, related_business_ids: list[str], pair_count: int, p: IntegrityParams) -> Flag | None:
    related = d["business_id"] in related_business_ids
    if not related and pair_count <= p.pair_cap:
        return None
    why = "a business related to the expert" if related else f"a business the expert served {pair_count} times"
    return Flag("network_rating", d["_id"], d["expert_id"], d["business_id"],
                {"related_business": related, "pair_dispatches": pair_count},
                f"The expert was rated by {why}.")


# --- copied reports: shingles, MinHash, bands -----------------------------------------------------------------------
def normalise(text: str) -> str:
    return re.sub(r"\s+", "", text).lower()


def shingles(text: str, k: int) -> set[str]:
    t = normalise(text)
    return {t[i:i + k] for i in range(max(1, len(t) - k + 1))} if t else set()


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


_PRIME = (1 << 61) - 1
_rng = random.Random(15)  # fixed: band keys stored today must match the ones computed after a restart
_PERMUTATIONS = [(_rng.randrange(1, _PRIME), _rng.randrange(0, _PRIME)) for _ in range(256)]


def minhash(sh: set[str], n: int) -> list[int]:
    """`n` MinHash values of a shingle set (universal hashing over CRC-32 of each shingle; stable across processes)."""
    if not sh:
        return [0] * n
    base = [zlib.crc32(s.encode()) for s in sh]
    return [min((a * x + b) % _PRIME for x in base) for a, b in _PERMUTATIONS[:n]]


def band_keys(text: str, p: IntegrityParams) -> list[str]:
    """The keys under which a report is indexed; two reports sharing a key are compared exactly."""
    sig = minhash(shingles(text, p.shingle), p.bands * p.rows)
    return [f"{b}:" + hashlib.blake2b(struct.pack(f"<{p.rows}Q", *sig[b * p.rows:(b + 1) * p.rows]),
                                      digest_size=8).hexdigest() for b in range(p.bands)]


def most_shared(shared_bands: dict[str, int], n: int = 20) -> list[str]:
    """The candidates worth an exact comparison: those sharing the most bands (the likeliest near-copies) first."""
    return [i for i, _ in sorted(shared_bands.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]


def report_text(report: dict) -> str:
    return " ".join(report.get(k, "") for k in ("summary", "proposals", "follow_up"))


def copied_report(d: dict, text: str, candidates: list[dict], p: IntegrityParams) -> Flag | None:
    """`candidates`: other dispatches' reports sharing a band key ({_id, expert_id, business_id, text})."""
    mine = shingles(text, p.shingle)
    best = max(((jaccard(mine, shingles(c["text"], p.shingle)), c) for c in candidates if c["_id"] != d["_id"]),
               key=lambda x: x[0], default=(0.0, None))
    if best[1] is None or best[0] < p.copy_similarity:
        return None
    other = best[1]
    return Flag("copied_report", d["_id"], d["expert_id"], d["business_id"],
                {"similar_to": other["_id"], "similarity": round(best[0], 3), "other_expert_id": other["expert_id"],
                 "other_business_id": other["business_id"]},
                f"The report is {round(best[0] * 100)}% identical to the report of dispatch {other['_id']}.")


def response_overdue(d: dict, now) -> Flag:
    """R-EX-06: the expert has not answered by the deadline; the desk may reassign (an alert, not a suspicion)."""
    late_h = round((now - d["respond_by"]).total_seconds() / 3600)
    what = "co-signed the direct request" if d.get("route") == "B" else "acknowledged the approved dispatch"
    return Flag("response_overdue", d["_id"], d["expert_id"], d["business_id"],
                {"respond_by": d["respond_by"].isoformat(), "hours_late": late_h, "route": d.get("route")},
                f"The expert has not {what} by the deadline ({late_h} h late); the desk may reassign it.",
                rule="R-EX-06")

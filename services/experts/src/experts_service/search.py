"""In-process search index over the expert directory (R-EX-05): one per replica, no text index needed.

Japanese text is indexed as character bigrams (plus single characters, for one-character queries),
Latin text as lowercase words (prefix-matched); filters (field, qualification, region, status) are
bitsets held as Python ints, so a query is a handful of big-integer ANDs followed by a check of the
few remaining per-expert conditions (availability windows, minimum ratings). A query of several
characters is verified against the expert's normalised text, so bigram coincidences never match.
"""
from __future__ import annotations

import bisect
import heapq
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date

from contracts.vocab import RATING_AXES, fiscal_year
from experts_service.domain import on_hold

_CJK = r"\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u30fc\u3005"
_RUNS = re.compile(rf"[{_CJK}]+|[a-z0-9]+")
_IS_CJK = re.compile(rf"[{_CJK}]")
VISIBLE = ("portal", "applied", "registered")  # never suspended, expired or exited in an ordinary search


def normalise(text: str) -> str:
    """NFKC (full-width Latin to ASCII, half-width kana to full-width) and lower case."""
    return unicodedata.normalize("NFKC", text).lower()


def tokens(text: str) -> set[str]:
    """Index terms of a text: CJK characters and bigrams, Latin words."""
    out: set[str] = set()
    for run in _RUNS.findall(normalise(text)):
        if _IS_CJK.match(run):
            out.update(run)
            out.update(run[i:i + 2] for i in range(len(run) - 1))
        else:
            out.add("w:" + run)
    return out


@dataclass
class Entry:
    expert_id: str
    status: str
    registered_fy: int
    name: str
    text: str
    terms: set[str]
    facets: set[str]
    windows: list[tuple[date, date]]
    weekdays: frozenset[int]  # R-EX-06 calendar: the weekdays worked (empty: any)
    payload: dict = field(default_factory=dict)  # the card the search result shows
    match: dict = field(default_factory=dict)  # what suggestions score (R-EX-07), see matching.py

    def free_on(self, day: date) -> bool:
        """Outside every unavailability window, on a weekday the expert works."""
        return not any(s <= day <= t for s, t in self.windows) and (not self.weekdays or day.weekday() in self.weekdays)


class ExpertIndex:
    def __init__(self) -> None:
        self.slot: dict[str, int] = {}
        self.entries: list[Entry | None] = []
        self.free: list[int] = []
        self.postings: dict[str, int] = {}
        self.words: list[str] = []  # sorted Latin words, for prefix search
        self.radar: dict[str, dict] = {}  # expert id -> {"averages", "count", "as_of"} (the newest seen)
        self.with_windows = 0
        self.years: set[int] = set()  # registered fiscal years seen (facets "fy:<year>")
        self._generation = 0
        self._cache: dict[str, tuple[int, object]] = {}
        self.score: dict[str, list[float]] = {k: [] for k in (*RATING_AXES, "rating", "relevance")}
        self.names: list[tuple[str, str]] = []

    def __len__(self) -> int:
        return len(self.slot)

    # --- maintenance ------------------------------------------------------------------------
    def upsert(self, doc: dict) -> None:
        """Indexes (or re-indexes) an expert document as stored by the service."""
        if doc.get("radar"):
            self.set_radar(doc["_id"], doc["radar"])
        self.remove(doc["_id"])
        p = doc.get("profile") or {}
        recommenders = [r.get("org_name") or "" for r in doc.get("recommendations", [])
                        if r.get("recommended") and r.get("consented")]
        text = normalise(" ".join([doc.get("name", ""), *p.get("qualifications", []), *p.get("fields", []),
                                   *p.get("regions", []), p.get("introduction", ""), *recommenders]))
        facets = {f"field:{f}" for f in p.get("fields", [])} | {f"qual:{normalise(q)}" for q in p.get("qualifications", [])}
        facets |= {f"region:{normalise(r)}" for r in p.get("regions", [])} | {f"status:{doc['status']}"}
        facets.add(f"fy:{doc.get('registered_fiscal_year') or 0}")
        if on_hold(doc):  # R-EX-06: paused, or as many open dispatches as the expert takes on
            facets.add("hold")
        self.years.add(doc.get("registered_fiscal_year") or 0)
        windows = [(date.fromisoformat(w["start"]), date.fromisoformat(w["end"]))
                   for w in (doc.get("availability") or {}).get("windows", [])]
        weekdays = frozenset((doc.get("availability") or {}).get("weekdays") or ())
        entry = Entry(doc["_id"], doc["status"], doc.get("registered_fiscal_year") or 0, doc.get("name", ""), text,
                      tokens(text), facets, windows, weekdays, {
                          "expert_id": doc["_id"], "name": doc.get("name", ""), "status": doc["status"],
                          "fields": p.get("fields", []), "qualifications": p.get("qualifications", []),
                          "regions": p.get("regions", []), "recommended_by": recommenders,
                          "availability_note": (doc.get("availability") or {}).get("note", "")},
                      match_view(doc))
        i = self.free.pop() if self.free else len(self.entries)
        if i == len(self.entries):
            self.entries.append(None)
            self.names.append(("", ""))
            for col in self.score.values():
                col.append(0.0)
        self.entries[i] = entry
        self.slot[entry.expert_id] = i
        bit = 1 << i
        for t in entry.terms | entry.facets:
            if t not in self.postings and t.startswith("w:"):
                bisect.insort(self.words, t)
            self.postings[t] = self.postings.get(t, 0) | bit
        if windows or weekdays:
            self.with_windows |= bit
        self._rescore(i)
        self._changed()

    def remove(self, expert_id: str) -> None:
        i = self.slot.pop(expert_id, None)
        if i is None:
            return
        entry, mask = self.entries[i], ~(1 << i)
        for t in entry.terms | entry.facets:
            self.postings[t] &= mask
        self.with_windows &= mask
        self.entries[i] = None
        self.free.append(i)
        self._changed()

    def set_radar(self, expert_id: str, radar: dict) -> bool:
        """Keeps the newest ratings summary (by `as_of`); older or repeated ones change nothing."""
        old = self.radar.get(expert_id)
        if old and str(old.get("as_of")) >= str(radar.get("as_of")):
            return False
        self.radar[expert_id] = {"averages": dict(radar.get("averages") or {}), "count": radar.get("count", 0),
                                 "as_of": radar.get("as_of")}
        if expert_id in self.slot:
            self._rescore(self.slot[expert_id])
        self._changed()
        return True

    # --- derived arrays (rebuilt lazily after changes) ------------------------------------------
    def _changed(self) -> None:
        self._generation += 1

    def _cached(self, key: str, build):
        hit = self._cache.get(key)
        if hit is None or hit[0] != self._generation:
            hit = (self._generation, build())
            self._cache[key] = hit
        return hit[1]

    def _rescore(self, i: int) -> None:
        """Per-slot sort keys, kept in flat lists so sorting uses C-level key functions."""
        e = self.entries[i]
        avg = (self.radar.get(e.expert_id) or {}).get("averages") or {} if e else {}
        for axis in RATING_AXES:
            self.score[axis][i] = -avg.get(axis, 0.0)
        vals = [avg[a] for a in RATING_AXES if a in avg]
        overall = sum(vals) / len(vals) if vals else 0.0
        self.score["rating"][i] = -overall
        # relevance: registered national experts first, then the best rated
        self.score["relevance"][i] = -overall - (10.0 if e and e.status == "registered" else 0.0)
        self.names[i] = (e.name, e.expert_id) if e else ("", "")

    def _order(self, sort: str) -> tuple[list[int], list[int]]:
        """Slots in the order of `sort`, and each slot's rank in it."""
        def build():
            live = [i for i, e in enumerate(self.entries) if e is not None]
            live.sort(key=(self.names if sort == "name" else self.score[sort]).__getitem__)
            rank = [len(self.entries)] * len(self.entries)
            for r, i in enumerate(live):
                rank[i] = r
            return live, rank
        return self._cached("order:" + sort, build)

    def _at_least(self, axis: str, value: float) -> int:
        """Bitset of experts whose `axis` average is at least `value`."""
        order, _ = self._order(axis)  # best first: score is the negated average
        k = bisect.bisect_right(order, -value, key=self.score[axis].__getitem__)
        return _bitset(order[:k], len(self.entries))

    def _registered_through(self, fy: int) -> int:
        bits = 0
        for year in self.years:
            if year >= fy:
                bits |= self.postings.get(f"fy:{year}", 0)
        return bits

    # --- queries ----------------------------------------------------------------------------
    def _term(self, term: str) -> int:
        if not term.startswith("w:"):
            return self.postings.get(term, 0)
        bits, i = 0, bisect.bisect_left(self.words, term)
        while i < len(self.words) and self.words[i].startswith(term):
            bits |= self.postings[self.words[i]]
            i += 1
        return bits

    def search(self, *, q: str = "", fields: list[str] = (), qualification: str | None = None,
               region: str | None = None, available_on: date | None = None, min_ratings: dict[str, float] | None = None,
               for_dispatch: bool = False, statuses: tuple[str, ...] = VISIBLE, sort: str = "relevance",
               page: int = 1, size: int = 20, today: date | None = None) -> tuple[int, list[dict]]:
        """R-EX-05: experts matching every given condition, a page of result cards, and the total."""
        today = today or date.today()
        bits = 0
        for s in (("registered",) if for_dispatch else statuses):
            bits |= self.postings.get(f"status:{s}", 0)
        for f in fields:
            bits &= self.postings.get(f"field:{f}", 0)
        if qualification:
            bits &= self.postings.get(f"qual:{normalise(qualification)}", 0)
        if region:
            bits &= self.postings.get(f"region:{normalise(region)}", 0)
        day = available_on or (today if for_dispatch else None)
        if for_dispatch and bits:
            bits &= self._registered_through(fiscal_year(day))
            bits &= ~self.postings.get("hold", 0)
        for axis, v in (min_ratings or {}).items():
            if v is not None and bits:
                bits &= self._at_least(axis, v)
        verify: list[str] = []
        for run in _RUNS.findall(normalise(q)):
            if not bits:
                break
            if _IS_CJK.match(run):
                for g in ([run] if len(run) == 1 else [run[i:i + 2] for i in range(len(run) - 1)]):
                    bits &= self.postings.get(g, 0)
                if len(run) > 2:
                    verify.append(run)
            else:
                bits &= self._term("w:" + run)
        # the few per-expert checks: bigram hits confirmed as substrings, availability windows
        check = bits if verify else (bits & self.with_windows if day is not None else 0)
        for i in _ones(check):
            e = self.entries[i]
            if (verify and not all(v in e.text for v in verify)) or \
                    (day is not None and not e.free_on(day)):
                bits &= ~(1 << i)
        total = bits.bit_count()
        start, top = (page - 1) * size, page * size
        order, rank = self._order(sort if sort in ("name", "rating", *RATING_AXES) else "relevance")
        if total * 8 < len(order):  # few hits: rank them; many: walk the precomputed order
            page_slots = heapq.nsmallest(top, _ones(bits), key=rank.__getitem__)[start:top]
        else:
            member, page_slots = bits.to_bytes((len(self.entries) + 7) // 8, "little"), []
            for i in order:
                if member[i >> 3] >> (i & 7) & 1:
                    page_slots.append(i)
                    if len(page_slots) == top:
                        break
            page_slots = page_slots[start:]
        return total, [self._card(self.entries[i]) for i in page_slots]

    def candidates(self, *, fields: list[str] = (), on: date | None = None, today: date | None = None) -> list[dict]:
        """R-EX-07: what suggestions score — registered national experts of that day's fiscal year, not on hold
        (R-EX-06), not inside an unavailability window that day (today if none), working that weekday (if a day is
        asked for), sharing at least one of `fields` (any, if none)."""
        day = on or today or date.today()
        bits = self.postings.get("status:registered", 0) & self._registered_through(fiscal_year(day))
        bits &= ~self.postings.get("hold", 0)
        if fields:
            any_field = 0
            for f in fields:
                any_field |= self.postings.get(f"field:{f}", 0)
            bits &= any_field
        out = []
        for i in _ones(bits):
            e = self.entries[i]
            if not e.free_on(day) if on else any(s <= day <= t for s, t in e.windows):
                continue  # with no day asked for, an expert away today is left out, whatever the weekday
            r = self.radar.get(e.expert_id)
            out.append({**e.match, "windows": e.windows, "weekdays": sorted(e.weekdays),
                        "radar": {"averages": r["averages"], "count": r["count"]} if r else None})
        return out

    def _card(self, e: Entry) -> dict:
        r = self.radar.get(e.expert_id)
        return {**e.payload, "radar": {"averages": r["averages"], "count": r["count"]} if r else None}


def match_view(doc: dict) -> dict:
    """The part of a stored expert that suggestions score (R-EX-07): profile, record, capacity and recent load."""
    p, cap = doc.get("profile") or {}, doc.get("capacity") or {}
    return {"expert_id": doc["_id"], "name": doc.get("name", ""), "fields": p.get("fields", []),
            "regions": p.get("regions", []), "remote_ok": bool(p.get("remote_ok")),
            "record": (doc.get("record") or {}).get("dispatches", 0), "open": len(cap.get("open_ids", [])),
            "open_cap": cap.get("open_cap"), "paused": bool(cap.get("paused")),
            "recent": [r["at"] for r in cap.get("recent", [])]}


def _bitset(positions, n: int) -> int:
    buf = bytearray((n + 7) // 8)
    for i in positions:
        buf[i >> 3] |= 1 << (i & 7)
    return int.from_bytes(buf, "little")


def _ones(bits: int):
    """Positions of the set bits, lowest first (string scan: linear, unlike repeated big-int shifts)."""
    s = bin(bits)[:1:-1]
    i = s.find("1")
    while i >= 0:
        yield i
        i = s.find("1", i + 1)

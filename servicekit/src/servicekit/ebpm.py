"""EBPM report tables (R-REC-07), pure (no I/O): anonymised aggregates with no cell under 5 and no re-identification
by differencing two reports, rendered as JSON rows, CSV and an SVG bar chart.

A table is a set of cells (one tuple of dimension values each, e.g. fiscal year × block × industry); each record
added names the business it is about, so a cell knows its distinct contributors.

Primary suppression: a cell (or the total) with fewer than `min_cell` (5) distinct businesses publishes no figures
(`suppressed`, "x" in CSV).

Differencing protection, the cell key method (ABS TableBuilder, ONS census 2021):
- record key: each business gets a fixed pseudo-random key, HMAC-SHA256(secret, business id) (the secret from
  `servicekit.ebpm_keys`: `EBPM_KEY_SECRET`, else made once per service and kept in its database), its first
  8 bytes read as an integer of [0, 2^64) — i.e. uniform in [0, 1) scaled by 2^64 (integers keep the sum exact);
- cell key: the sum of the cell's distinct businesses' record keys mod 2^64 (mod 1 in the [0, 1) reading). Two
  cells differing by one business have unrelated cell keys; the same cell always has the same one;
- counts: published = true + d, d = COUNT_PTABLE[floor(u * len)], u a uniform drawn from the cell key and the
  measure's name (SHA-256), COUNT_PTABLE = (-2, -1, 0, +1, +2) equally likely (zero-mean, variance 2). A published
  count is never shown below `min_cell` (clamped up: the true count is at least that);
- sums (amounts): published = true + s * m * top, `top` the largest single business's contribution to the cell, m
  uniform in [AMOUNT_MIN_FRACTION, AMOUNT_MAX_FRACTION) = [0.5, 1.0) and s = ±1, both drawn from the cell key and
  the measure's name: the noise is never smaller than half the largest contributor, so a dominant business cannot
  be read off, and on a cell of many businesses it stays small relative to the total;
- totals are cells of their own (all records), perturbed the same way: rows do not add up exactly to the total, so
  adding rows and subtracting from the total gives no suppressed cell back.
Because the perturbation depends only on the cell's set of businesses, repeating a query averages nothing out; a
report re-published with one business more (or less) gets a fresh, unrelated perturbation, so subtracting the two
gives the business's contribution plus noise (see tests/unit/test_ebpm.py, the differencing test).
"""
from __future__ import annotations

import csv
import hashlib
import hmac
import io
from collections import defaultdict
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

MOD = 2 ** 64
COUNT_PTABLE = (-2, -1, 0, 1, 2)
AMOUNT_MIN_FRACTION, AMOUNT_MAX_FRACTION = 0.5, 1.0
TOTAL = "合計 total"
FOOTNOTES = ("x: 5事業者未満のため秘匿 / suppressed: fewer than 5 businesses (R-REC-07)",
             "数値はセルキー法により攪乱しており、行の和は合計と一致しません / figures are perturbed by the cell key "
             "method; rows do not add up exactly to the total")


@dataclass(frozen=True)
class Params:
    secret: bytes                 # see servicekit.ebpm_keys: shared by the replicas, kept secret
    min_cell: int = 5



@dataclass(frozen=True)
class Measure:
    name: str
    kind: str              # "count": records counted; "sum": amounts added
    ja: str = ""
    en: str = ""


def record_key(business_id: str, p: Params) -> int:
    """The business's fixed record key, an integer of [0, 2^64) (uniform in [0, 1) when divided by 2^64)."""
    return int.from_bytes(hmac.new(p.secret, business_id.encode(), hashlib.sha256).digest()[:8], "big")


def uniform(cell_key: int, label: str) -> float:
    """A uniform of [0, 1) drawn from the cell key for one use (`label`), independent of the other uses."""
    h = hashlib.sha256(f"{cell_key}:{label}".encode()).digest()
    return int.from_bytes(h[:8], "big") / MOD


def perturb_count(true: int, cell_key: int, label: str, p: Params) -> int:
    d = COUNT_PTABLE[int(uniform(cell_key, label) * len(COUNT_PTABLE))]
    return max(true + d, p.min_cell)


def perturb_sum(true: float, top: float, cell_key: int, label: str) -> int:
    m = AMOUNT_MIN_FRACTION + (AMOUNT_MAX_FRACTION - AMOUNT_MIN_FRACTION) * uniform(cell_key, label + ":m")
    s = 1 if uniform(cell_key, label + ":s") < 0.5 else -1
    return round(true + s * m * abs(top))


@dataclass
class _Cell:
    per_business: dict = field(default_factory=lambda: defaultdict(lambda: defaultdict(float)))


@dataclass
class Summary:
    """What a cell's figures are made of, without its records: the distinct businesses (`n`), the sum of their record
    keys (`key_sum`, mod 2^64), each measure's true total (`sums`) and, for sum measures, the largest single business's
    contribution in absolute value (`tops`). Kept as counters by a service's events (R-OPS-03), it publishes exactly
    what the records would; summaries of cells no business shares (e.g. the industries of one year: each business has
    one industry) `merge` into the summary of their union."""
    n: int = 0
    key_sum: int = 0
    sums: dict = field(default_factory=dict)
    tops: dict = field(default_factory=dict)

    def merge(self, other: "Summary") -> "Summary":
        self.n += other.n
        self.key_sum = (self.key_sum + other.key_sum) % MOD
        for k, v in other.sums.items():
            self.sums[k] = self.sums.get(k, 0) + v
        for k, v in other.tops.items():
            self.tops[k] = max(self.tops.get(k, 0), abs(v))
        return self


def key_halves(business_id: str, p: Params) -> tuple[int, int]:
    """The record key as two 32-bit halves (high, low): a database adds these as signed 64-bit integers without
    overflow (2^31 businesses at most), where the 64-bit key itself would not fit; `join_halves` takes the sums back."""
    k = record_key(business_id, p)
    return k >> 32, k & 0xFFFFFFFF


def join_halves(hi_sum: int, lo_sum: int) -> int:
    return ((hi_sum << 32) + lo_sum) % MOD


def summarise(cell: _Cell, measures: tuple[Measure, ...], p: Params) -> Summary:
    s = Summary(n=len(cell.per_business), key_sum=sum(record_key(b, p) for b in cell.per_business) % MOD)
    for m in measures:
        vals = [c.get(m.name, 0.0) for c in cell.per_business.values()]
        s.sums[m.name] = sum(vals)
        if m.kind == "sum":
            s.tops[m.name] = max((abs(v) for v in vals), default=0.0)
    return s


class Table:
    """Cells of `dims` with `measures`; `add` a record about a business, `publish` the anonymised rows."""

    def __init__(self, dims: tuple[str, ...], measures: tuple[Measure, ...], p: Params, *,
                 labels: dict[str, tuple[str, str]] | None = None):
        self.dims, self.measures, self.p = dims, measures, p
        self.labels = labels or {}
        self.cells: dict[tuple, _Cell] = defaultdict(_Cell)
        self.total = _Cell()

    def add(self, key: tuple, business_id: str, **values: float) -> None:
        """One record: it counts 1 for each count measure named with a true value (or the value given) and adds
        the amount of each sum measure."""
        for cell in (self.cells[tuple(key)], self.total):
            contrib = cell.per_business[business_id]
            for m in self.measures:
                if m.name in values:
                    v = values[m.name]
                    contrib[m.name] += (1 if v is True else float(v or 0)) if m.kind == "count" else float(v or 0)

    def put(self, key: tuple, summary: Summary) -> None:
        """A cell given by its summary (from counters) instead of its records; `put_total` likewise the total."""
        self.cells[tuple(key)] = summary

    def put_total(self, summary: Summary) -> None:
        self.total = summary

    def _figures(self, cell: _Cell | Summary) -> dict:
        s = cell if isinstance(cell, Summary) else summarise(cell, self.measures, self.p)
        n = s.n
        if n < self.p.min_cell:
            return {"suppressed": True, "businesses": None, **{m.name: None for m in self.measures}}
        ck = s.key_sum % MOD
        out = {"suppressed": False, "businesses": perturb_count(n, ck, "businesses", self.p)}
        for m in self.measures:
            true = s.sums.get(m.name, 0.0)
            if m.kind == "count":
                out[m.name] = 0 if true == 0 else max(round(true) + COUNT_PTABLE[int(uniform(ck, m.name) *
                                                                                     len(COUNT_PTABLE))], 0)
            else:
                out[m.name] = 0 if true == 0 else perturb_sum(true, s.tops.get(m.name, 0.0), ck, m.name)
        return out

    def publish(self) -> dict:
        rows = [{**dict(zip(self.dims, key)), **self._figures(cell)}
                for key, cell in sorted(self.cells.items(), key=lambda kv: tuple(str(k) for k in kv[0]))]
        return {"dims": list(self.dims), "measures": ["businesses", *(m.name for m in self.measures)],
                "min_cell": self.p.min_cell, "method": "cell key (ABS/ONS): counts ±2, sums ± 0.5–1.0 × top "
                "contributor; totals perturbed on their own", "rows": rows,
                "total": {**{d: TOTAL for d in self.dims}, **self._figures(self.total)}}

    def label(self, name: str) -> str:
        ja, en = self.labels.get(name) or next(((m.ja, m.en) for m in self.measures if m.name == name),
                                               ("", name))
        return f"{ja} / {en}" if ja else en


BUSINESSES_LABEL = ("事業者数", "businesses")


def to_csv(table: Table, report: dict) -> bytes:
    """UTF-8 with BOM (Excel opens it as UTF-8), one header row in Japanese and English, suppressed cells as "x",
    the footnotes below."""
    table.labels.setdefault("businesses", BUSINESSES_LABEL)
    cols = [*report["dims"], *report["measures"]]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow([table.label(c) for c in cols])
    for r in [*report["rows"], report["total"]]:
        w.writerow([r[c] if c in report["dims"] else ("x" if r["suppressed"] else r[c]) for c in cols])
    w.writerow([])
    for note in FOOTNOTES:
        w.writerow([note])
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def to_svg(table: Table, report: dict, measure: str, title: str) -> str:
    """A horizontal bar chart of one measure per row (its dimension values joined), suppressed rows marked "x"."""
    rows = report["rows"]
    bar_w, left, row_h = 360, 260, 22
    height = 50 + row_h * max(len(rows), 1) + 30
    top = max([r[measure] for r in rows if not r["suppressed"] and r[measure]] or [1])
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + bar_w + 90}" height="{height}" '
             f'role="img" aria-label="{escape(title, {chr(34): "&quot;"})}" font-family="sans-serif" font-size="12">',
             f'<title>{escape(title)}</title>',
             f'<text x="10" y="22" font-size="14" font-weight="bold">{escape(title)}</text>']
    for i, r in enumerate(rows):
        y = 40 + i * row_h
        name = " · ".join(str(r[d]) for d in report["dims"])
        parts.append(f'<text x="10" y="{y + 15}">{escape(name)}</text>')
        if r["suppressed"]:
            parts.append(f'<text x="{left}" y="{y + 15}" fill="#666">x</text>')
            continue
        v = r[measure] or 0
        w = max(0, round(bar_w * v / top))
        parts.append(f'<rect x="{left}" y="{y + 3}" width="{w}" height="{row_h - 6}" fill="#3b6ea8"/>')
        parts.append(f'<text x="{left + w + 4}" y="{y + 15}">{v:,}</text>')
    parts.append(f'<text x="10" y="{height - 10}" font-size="10" fill="#444">{escape(FOOTNOTES[0])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def render(table: Table, report: dict, fmt: str, *, chart: str = "businesses", title: str = "",
           notes: tuple[str, ...] = ()) -> tuple[object, str]:
    """(body, media type) of a report in `fmt`: json (a dict with the notes), csv (bytes) or svg (text)."""
    if fmt == "csv":
        return to_csv(table, report), "text/csv; charset=utf-8"
    if fmt == "svg":
        return to_svg(table, report, chart, title), "image/svg+xml"
    return {**report, "notes": list(notes)}, "application/json"

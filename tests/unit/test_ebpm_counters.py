"""R-REC-07 / R-OPS-03, pure: the counter cells of dispatch's EBPM reports (`domain.ebpm`), summed as the database
does, publish exactly the table built from the same records at request time — for every grouping, order, fiscal-year
filter and scope — and a business leaving a cell (its industry changed) takes exactly its contribution away."""
from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime

from dispatch_service.domain.ebpm import (MEASURES, NATIONAL, contributions, counter_doc, delta, outcome_records,
                                          plan, uptake_records)
from servicekit import ebpm

P = ebpm.Params(secret=b"unit", min_cell=1)


def world(seed: int = 3):
    rnd = random.Random(seed)
    blocks = {"pf-1": "kanto", "pf-2": "tohoku", "pf-3": None}
    per = {}
    for i in range(30):
        bid = f"b{i}"
        ds = [{"_id": f"d{i}-{j}", "fiscal_year": rnd.choice([2025, 2026]), "platform_id": rnd.choice(list(blocks)),
               "institution_id": rnd.choice(["o1", "o2", None]), "status": rnd.choice(["paid", "approved"])}
              for j in range(rnd.randrange(1, 4))]
        cs = [{"created_at": datetime(2025, rnd.choice([3, 4, 5]), 1, tzinfo=UTC)} for _ in range(rnd.randrange(2))]
        ss = [{"dispatch_id": d["_id"], "fiscal_year": d["fiscal_year"], "block": blocks[d["platform_id"]],
               "answered_at": rnd.choice([None, datetime(2026, 5, 1, tzinfo=UTC)]), "results": rnd.random() < .5}
              for d in ds if d["status"] == "paid"]
        per[bid] = (ds, cs, ss, rnd.choice(["製造業", "小売業"]))
    return blocks, per


def records(report, blocks, ds, cs, ss, industry, orgs=None, block=None):
    inst = {d["_id"]: d.get("institution_id") for d in ds}
    return (uptake_records(ds, cs, blocks, industry, orgs=orgs, block=block) if report == "uptake"
            else outcome_records(ss, inst, industry, orgs=orgs, block=block))


def counters_of(report, blocks, per) -> dict:
    """What the database holds after every business's contributions were added (one $inc per membership)."""
    counters: dict[str, dict] = {}
    for bid, (ds, cs, ss, industry) in per.items():
        orgs = sorted({d["institution_id"] for d in ds if d.get("institution_id")})
        scopes = {NATIONAL: records(report, blocks, ds, cs, ss, industry),
                  **{o: records(report, blocks, ds, cs, ss, industry, orgs={o}) for o in orgs}}
        for cid, (cell, values) in contributions(report, scopes).items():
            c = counters.setdefault(cid, dict(cell))
            for k, v in delta(None, values, ebpm.key_halves(bid, P), MEASURES[report]).items():
                c[k] = c.get(k, 0) + v
    return counters


def table_of_counters(counters, report, by, fy, scope) -> ebpm.Table:
    rows_id, total_id, filt = plan(report, by, fy, scope)
    match = lambda d, doc_id: counter_doc(d) == doc_id and all(d[k] == v for k, v in filt.items())  # noqa: E731
    summary = lambda d: ebpm.Summary(d.get("n", 0), ebpm.join_halves(d.get("k_hi", 0), d.get("k_lo", 0)),  # noqa
                                     {m.name: d.get(f"s.{m.name}", 0) for m in MEASURES[report]})
    t = ebpm.Table(tuple(by), MEASURES[report], P)
    cells: dict = {}
    for d in counters.values():
        if match(d, rows_id):
            cells.setdefault(tuple(d[k] for k in by), ebpm.Summary()).merge(summary(d))
    for k, s in cells.items():
        if s.n:
            t.put(k, s)
    total = ebpm.Summary()
    for d in counters.values():
        if match(d, total_id):
            total.merge(summary(d))
    t.put_total(total)
    return t


def table_of_rows(report, blocks, per, by, fy, scope) -> ebpm.Table:
    t = ebpm.Table(tuple(by), MEASURES[report], P)
    orgs = {scope["org"]} if "org" in scope else None
    for bid, (ds, cs, ss, industry) in per.items():
        if fy is not None:
            ds, ss = [d for d in ds if d["fiscal_year"] == fy], [s for s in ss if s["fiscal_year"] == fy]
        for r in records(report, blocks, ds, cs, ss, industry, orgs=orgs, block=scope.get("block")):
            if fy is None or r.fiscal_year == fy:
                t.add(tuple(r._asdict()[d] for d in by), bid, **r.values)
    return t


def all_reads():
    dims = ("fiscal_year", "block", "industry")
    bys = [list(c) for n in (1, 2, 3) for c in itertools.permutations(dims, n)]
    scopes = [{}, {"block": "kanto"}, {"block": "tohoku"}, {"org": "o1"}, {"org": "o2"}]
    return itertools.product(("uptake", "outcomes"), bys, (None, 2025, 2026), scopes)


def test_R_REC_07_counter_cells_publish_what_the_records_would():
    blocks, per = world()
    counters = {r: counters_of(r, blocks, per) for r in ("uptake", "outcomes")}
    n = 0
    for report, by, fy, scope in all_reads():
        assert (table_of_counters(counters[report], report, by, fy, scope).publish()
                == table_of_rows(report, blocks, per, by, fy, scope).publish()), (report, by, fy, scope)
        n += 1
    assert n == 2 * 15 * 3 * 5


def test_R_OPS_03_a_business_changing_industry_moves_exactly_its_contribution():
    blocks, per = world(5)
    ds, cs, ss, _ = per["b0"]
    before = contributions("uptake", {NATIONAL: uptake_records(ds, cs, blocks, "製造業")})
    after = contributions("uptake", {NATIONAL: uptake_records(ds, cs, blocks, "小売業")})
    key = ebpm.key_halves("b0", P)
    for cid in set(before) | set(after):
        inc = delta(before.get(cid, (None, None))[1], after.get(cid, (None, None))[1], key, MEASURES["uptake"])
        assert inc["n"] == (1 if cid in after else -1)                 # left one cell, joined the other
        assert (inc["k_hi"], inc["k_lo"]) == tuple(inc["n"] * k for k in key)
    same = contributions("uptake", {NATIONAL: uptake_records(ds, cs, blocks, "製造業")})
    assert all(delta(before[c][1], same[c][1], key, MEASURES["uptake"]) == {} for c in before)  # a redelivery: nothing


def test_R_REC_07_record_key_halves_add_up_to_the_cell_key():
    ids = [f"b{i}" for i in range(1000)]
    halves = [ebpm.key_halves(b, P) for b in ids]
    assert ebpm.join_halves(sum(h for h, _ in halves), sum(lo for _, lo in halves)) == \
        sum(ebpm.record_key(b, P) for b in ids) % ebpm.MOD
    assert all(0 <= h < 2 ** 32 and 0 <= lo < 2 ** 32 for h, lo in halves)


def test_R_REC_07_a_dispatch_row_changes_only_with_what_the_report_counts():
    from dispatch_service.ebpm_counters import dispatch_row

    def row(status):
        return dispatch_row({"_id": "d1", "fiscal_year": 2026, "platform_id": "pf-1", "institution_id": "in-1",
                             "status": status})
    unpaid = [row(s) for s in ("accepted", "reserved", "approved", "visited", "reported")]
    assert all(r == unpaid[0] for r in unpaid)  # the copy is written once for these: the server skips equal $sets
    assert row("paid") != unpaid[0] and row("refunded") == unpaid[0]
    counted = {s: uptake_records([{"_id": "d1", **row(s)}], (), {"pf-1": "kanto"}, "製造業")[0].values
               for s in ("approved", "paid")}
    assert counted == {"approved": {"requests": 1, "paid": 0}, "paid": {"requests": 1, "paid": 1}}

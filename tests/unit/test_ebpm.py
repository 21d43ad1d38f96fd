"""R-REC-07 EBPM reports: no cell under 5, no re-identification by differencing two reports (servicekit.ebpm)."""
import csv
import io
import random
import xml.etree.ElementTree as ET

from servicekit import ebpm
from servicekit.ebpm import Measure, Params, Table, to_csv, to_svg

P = Params(secret=b"test-secret", min_cell=5)
MEASURES = (Measure("requests", "count", "派遣申請数", "dispatch requests"), Measure("paid", "sum", "支払額", "paid, yen"))


def table() -> Table:
    return Table(("fiscal_year", "block"), MEASURES, P, labels={"fiscal_year": ("年度", "fiscal year"),
                                                                 "block": ("ブロック", "block")})


def populated(n: int, block: str = "kanto", prefix: str = "b", seed: int = 0) -> Table:
    t, rnd = table(), random.Random(seed)
    for i in range(n):
        t.add((2026, block), f"{prefix}{i}", requests=True, paid=rnd.randint(100_000, 500_000))
    return t


def cell(report: dict, block: str) -> dict:
    return next(r for r in report["rows"] if r["block"] == block)


def test_R_REC_07_a_cell_of_fewer_than_5_businesses_shows_no_figures():
    t = populated(4, "tohoku")
    for i in range(12):
        t.add((2026, "kanto"), f"k{i}", requests=True, paid=200_000)
    # one business with many records still counts once: 4 businesses stay under 5
    t.add((2026, "tohoku"), "b0", requests=True, paid=100_000)
    r = t.publish()
    small, big = cell(r, "tohoku"), cell(r, "kanto")
    assert small == {"fiscal_year": 2026, "block": "tohoku", "suppressed": True, "businesses": None,
                     "requests": None, "paid": None}
    assert not big["suppressed"] and big["businesses"] >= 5 and abs(big["businesses"] - 12) <= 2
    assert not r["total"]["suppressed"]


def test_R_REC_07_the_same_data_always_publishes_the_same_report():
    a, b = populated(30, seed=1), populated(30, seed=1)
    assert a.publish() == b.publish() == a.publish()
    # the order the records arrive in changes nothing
    c, rnd = table(), random.Random(1)
    recs = [(f"b{i}", rnd.randint(100_000, 500_000)) for i in range(30)]
    for bid, amount in reversed(recs):
        c.add((2026, "kanto"), bid, requests=True, paid=amount)
    assert c.publish() == a.publish()


def differencing_attack(trials: int = 1000) -> tuple[float, float, float]:
    """An attacker holds the report before and after ONE business joined (or left) a cell and subtracts them.
    Returns the shares of trials where the count difference equals the true +1/-1, where the amount difference comes
    within 10% of the business's true amount, and where the sign of the count difference tells 'joined' from
    'left' right."""
    rnd = random.Random(7)
    exact_count = exact_amount = right_sign = 0
    for trial in range(trials):
        n = rnd.randint(5, 40)
        base = [(f"t{trial}-b{i}", rnd.randint(50_000, 600_000)) for i in range(n)]
        target = (f"t{trial}-target", rnd.randint(50_000, 600_000))
        joined = rnd.random() < 0.5
        before = base if joined else base + [target]
        after = base + [target] if joined else base
        reports = []
        for pop in (before, after):
            t = table()
            for bid, amount in pop:
                t.add((2026, "kanto"), bid, requests=True, paid=amount)
            reports.append(cell(t.publish(), "kanto"))
        true_delta = 1 if joined else -1
        d_count = reports[1]["businesses"] - reports[0]["businesses"]
        d_amount = reports[1]["paid"] - reports[0]["paid"]
        exact_count += d_count == true_delta
        exact_amount += abs(d_amount - true_delta * target[1]) <= 0.1 * target[1]
        guess_joined = d_count > 0 if d_count != 0 else rnd.random() < 0.5
        right_sign += guess_joined == joined
    return exact_count / trials, exact_amount / trials, right_sign / trials


def test_R_REC_07_differencing_two_reports_that_differ_by_one_business_does_not_reveal_it():
    """Over 1,000 populations: the difference of counts equals the true +1/-1 in a small fraction only, the amount
    difference rarely comes near the business's amount, and the sign guesses 'joined' / 'left' not much better than
    a coin (0.5)."""
    count, amount, sign = differencing_attack()
    print(f"\ncount difference exact: {count:.3f}; amount within 10%: {amount:.3f}; sign guess right: {sign:.3f}")
    assert count <= 0.26
    assert amount <= 0.15
    assert sign <= 0.70


def test_R_REC_07_without_perturbation_the_same_attack_reveals_every_business(monkeypatch):
    """The attack of the differencing test is a real one: with the perturbation switched off it wins every time."""
    monkeypatch.setattr(ebpm, "COUNT_PTABLE", (0,))
    monkeypatch.setattr(ebpm, "AMOUNT_MIN_FRACTION", 0.0)
    monkeypatch.setattr(ebpm, "AMOUNT_MAX_FRACTION", 0.0)
    assert differencing_attack(200) == (1.0, 1.0, 1.0)


def test_R_REC_07_rows_do_not_add_up_to_an_exact_total_that_would_give_a_suppressed_cell_back():
    t = populated(20, "kanto", "k")
    for i in range(3):
        t.add((2026, "tohoku"), f"s{i}", requests=True, paid=300_000)
    r = t.publish()
    assert cell(r, "tohoku")["suppressed"]
    true_total_paid = sum(sum(c["paid"] for c in cell_.per_business.values()) for cell_ in t.cells.values())
    assert r["total"]["paid"] != true_total_paid
    assert r["total"]["businesses"] != 23 or r["total"]["paid"] != true_total_paid


def test_R_REC_07_csv_has_a_bom_a_bilingual_header_x_for_suppressed_cells_and_footnotes():
    t = populated(8, "kanto")
    t.add((2026, "tohoku"), "x1", requests=True, paid=1)
    body = to_csv(t, t.publish())
    assert body.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert rows[0] == ["年度 / fiscal year", "ブロック / block", "事業者数 / businesses",
                       "派遣申請数 / dispatch requests", "支払額 / paid, yen"]
    data = {r[1]: r for r in rows[1:4]}
    assert data["tohoku"][2:] == ["x", "x", "x"]
    assert data["kanto"][2].isdigit()
    assert rows[3][0] == "合計 total"
    assert any("5事業者未満" in r[0] for r in rows[4:] if r)


def test_R_REC_07_svg_chart_parses_as_xml_and_marks_suppressed_rows():
    t = populated(8, "kanto")
    t.add((2026, "tohoku"), "x1", requests=True, paid=1)
    svg = to_svg(t, t.publish(), "businesses", "派遣の利用 <uptake> & 2026")
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    texts = [e.text for e in root.iter() if e.tag.endswith("text")]
    assert "x" in texts and any(x and "kanto" in x for x in texts)
    assert len([e for e in root.iter() if e.tag.endswith("rect")]) == 1

"""Integrity signals (R-DSP-15), pure: each pattern flags with its evidence, and only then."""
from dispatch_service.domain import geo
from dispatch_service.domain.integrity import (IntegrityParams, band_keys, copied_report, far_check_in, network_rating,
                                               repeated_pair)

P = IntegrityParams()
D = {"_id": "dsp-9", "expert_id": "ex-1", "business_id": "biz-1", "fiscal_year": 2026, "route": "A"}
REPORT = ("売上減少の要因を分析し、卸売依存から直販への転換を提案した。EC サイトの試行、地域の道の駅での販売、"
          "既存顧客へのダイレクトメールを三か月で実施する計画を作成し、月次で効果を確認する。")


def test_R_DSP_15_geo_knows_every_prefecture_by_its_usual_names():
    assert len(geo.CENTRES) == 47
    assert geo.centre("熊本県") == geo.centre("熊本") and geo.centre("東京都") and geo.centre("北海道")
    assert 75 < geo.km(geo.centre("熊本県"), geo.centre("福岡県")) < 100


def test_R_DSP_15_a_check_in_far_from_the_business_prefecture_is_flagged_with_the_distance():
    near = far_check_in(D, {"lat": 32.80, "lon": 130.71}, "熊本県", P)
    tokyo = far_check_in(D, {"lat": 35.68, "lon": 139.76, "place": "café"}, "熊本県", P)
    assert near is None
    assert tokyo.code == "far_check_in" and tokyo.evidence["km_from_prefecture_seat"] > 800
    assert tokyo.flag_id == "flag:far_check_in:dsp-9"
    assert far_check_in(D, {"lat": 35.68, "lon": 139.76}, None, P) is None  # unknown place: no guess


def test_R_DSP_15_the_same_pair_beyond_the_cap_across_routes_and_years_is_flagged():
    pair = [{"_id": f"d{i}", "fiscal_year": 2024 + i % 3, "route": "AB"[i % 2]} for i in range(3)]
    assert repeated_pair(D, pair, P) is None
    flag = repeated_pair(D, pair + [{"_id": "dsp-9", "fiscal_year": 2026, "route": "A"}], P)
    assert flag.evidence["routes"] == ["A", "B"] and len(flag.evidence["dispatch_ids"]) == 4
    old = [{"_id": f"o{i}", "fiscal_year": 2020, "route": "A"} for i in range(5)]
    assert repeated_pair(D, old + pair, P) is None  # outside the window of three fiscal years


def test_R_DSP_15_a_rating_from_the_experts_network_is_flagged():
    assert network_rating(D, [], 2, P) is None
    assert network_rating(D, ["biz-1"], 1, P).evidence["related_business"] is True
    assert network_rating(D, [], 5, P).evidence["pair_dispatches"] == 5


def test_R_DSP_15_a_copied_report_is_found_through_its_bands_and_a_different_one_is_not():
    copied = REPORT.replace("三か月", "3か月")
    other = ("人手不足への対応として、受発注業務のデジタル化と多能工化の研修計画を作成した。"
             "補助金の活用可能性も整理し、次回までに見積もりを比較する。")
    assert set(band_keys(REPORT, P)) & set(band_keys(copied, P))          # shares a band: compared
    candidates = [{"_id": "dsp-1", "expert_id": "ex-2", "business_id": "biz-2", "text": REPORT},
                  {"_id": "dsp-2", "expert_id": "ex-3", "business_id": "biz-3", "text": other}]
    flag = copied_report(D, copied, candidates, P)
    assert flag.evidence["similar_to"] == "dsp-1" and flag.evidence["similarity"] >= 0.8
    assert copied_report(D, other + "追加の提案。", candidates[:1], P) is None
    assert copied_report({**D, "_id": "dsp-1"}, REPORT, candidates[:1], P) is None  # not with itself


# --- outcomes (R-REC-08) ------------------------------------------------------------------------------------------
from datetime import UTC, datetime, timedelta  # noqa: E402

from dispatch_service.domain.outcomes import OutcomeParams, kpi, next_send, reports_results, waves  # noqa: E402

OP = OutcomeParams()
PAID = datetime(2026, 6, 1, tzinfo=UTC)


def test_R_REC_08_surveys_are_due_3_and_12_months_after_payment_with_one_reminder():
    assert [(m, d.date().isoformat()) for m, d in waves(PAID, OP)] == [(3, "2026-08-30"), (12, "2027-05-27")]
    s = {"due_at": PAID + timedelta(days=90), "answered_at": None}
    assert next_send(s, PAID, OP) is None
    assert next_send(s, PAID + timedelta(days=90), OP) == "survey"
    s["sent_at"] = PAID + timedelta(days=90)
    assert next_send(s, PAID + timedelta(days=95), OP) is None
    assert next_send(s, PAID + timedelta(days=104), OP) == "reminder"
    s["reminded_at"] = PAID + timedelta(days=104)
    assert next_send(s, PAID + timedelta(days=200), OP) is None
    assert next_send({**s, "answered_at": PAID}, PAID + timedelta(days=200), OP) is None


def test_R_REC_08_R_REC_07_the_kpi_per_group_against_the_target_with_small_groups_suppressed():
    rows = [{"business_id": f"b{i}", "fiscal_year": 2026, "block": "kyushu", "field": "sales_channels",
             "expert_id": "ex-1", "answered": i < 6, "results": i < 5} for i in range(7)]
    rows += [{"business_id": "b99", "fiscal_year": 2026, "block": "kanto", "field": "it_dx", "expert_id": "ex-2",
              "answered": True, "results": True}]
    by_block = {g["block"]: g for g in kpi(rows, "block", OP)}
    assert by_block["kanto"] == {"block": "kanto", "suppressed": True}
    k = by_block["kyushu"]
    assert (k["supported"], k["answered"], k["reporting_results"], k["share"], k["meets_target"]) == (7, 6, 5, 0.714, True)
    assert reports_results({"results_achieved": False, "actions_taken": ["financing"]})
    assert not reports_results({"results_achieved": False, "actions_taken": []})


def _counted(surveys: list[dict]) -> dict[str, dict]:
    """What the counters hold after these surveys, counted as the store does: per counter, each business once per
    flag, whatever the number of its surveys (`domain.outcomes.cells`, `flags_of`)."""
    from dispatch_service.domain.outcomes import cell_id, cells, flags_of
    members: dict[tuple, set] = {}
    counters: dict[str, dict] = {}
    for s in surveys:
        for c in cells(s):
            cid = cell_id(c)
            have = members.setdefault((cid, s["business_id"]), set())
            counters.setdefault(cid, {"key": c["key"], "supported": 0, "answered": 0, "results": 0})
            for f in flags_of(s):
                if f not in have:
                    have.add(f)
                    counters[cid][f] += 1
    return counters


def test_R_REC_08_group_keys_survive_as_field_names():
    from dispatch_service.domain.outcomes import group_field, group_key
    for by, key in [("fiscal_year", 2026), ("block", "kyushu"), ("field", None), ("expert_id", "ex.1$%2E-"),
                    ("expert_id", "-")]:
        f = group_field(key)
        assert "." not in f and not f.startswith("$") and group_key(by, f) == key


def test_R_REC_08_the_kpi_from_counters_equals_the_kpi_recounted_from_rows_in_every_scope():
    import random

    from dispatch_service.domain.outcomes import GROUPINGS, kpi_of_counts, read_scope
    rnd = random.Random(8)
    surveys = []
    for i in range(400):
        biz = f"b{rnd.randrange(60)}"  # businesses with several dispatches, in several groups
        answered = rnd.random() < 0.7
        surveys.append({"business_id": biz, "dispatch_id": f"d{i}", "fiscal_year": rnd.choice([2025, 2026]),
                        "block": rnd.choice(["kyushu", "kanto", None]), "field": rnd.choice(["it_dx", "tax", None]),
                        "expert_id": f"ex-{rnd.randrange(4)}", "answered_at": PAID if answered else None,
                        "results": answered and rnd.random() < 0.6})
    counters = _counted(surveys + surveys[:50])  # a redelivered or recounted survey changes nothing
    p = OutcomeParams(min_cell=3)
    for by in GROUPINGS:
        for fy in (None, 2025, 2026):
            for block in (None, "kyushu", "kanto"):
                rows = [{**s, "answered": bool(s["answered_at"])} for s in surveys
                        if (fy is None or s["fiscal_year"] == fy) and (block is None or s["block"] == block)]
                scope, only = read_scope(by, fy, block)
                got = [c for cid, c in counters.items() if cid.rsplit("|", 1)[0] == scope
                       and (only is None or cid == f"{scope}|{only}")]
                assert kpi_of_counts(got, by, p) == kpi(rows, by, p), (by, fy, block)

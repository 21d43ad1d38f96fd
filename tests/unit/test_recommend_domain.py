"""Unit tests of the recommend service's pure rules (R-REC-01, R-REC-02, R-REC-04, R-REC-05, R-NOT-01)."""
from recommend_service import domain

MAKER = {"industry": "製造業", "prefecture": "大阪府", "employees": 12}


def prog(pid, industries=(), sizes=("small", "medium"), prefectures=(), keywords=()):
    return {"programme_id": pid, "name": pid, "tags": {"industries": list(industries), "sizes": list(sizes),
                                                         "prefectures": list(prefectures), "keywords": list(keywords)}}


def test_R_REC_04_catalogue_seeded_from_seeds_001_and_002():
    cat = domain.load_catalogue()
    assert {p["source"] for p in cat} == {"001", "002"}
    assert len({p["programme_id"] for p in cat}) == len(cat)
    by_id = {p["programme_id"]: p for p in cat}
    mono = by_id["fy2020-monozukuri-renkei"]
    assert (mono["fiscal_year"], mono["budget_oku_yen"], mono["cap_yen"]) == (2020, 69.9, 30_000_000)
    assert mono["subsidy_rate"].startswith("1/2")
    assert by_id["fy2009-monozukuri-kiban"]["fiscal_year"] == 2009
    for p in cat:
        assert p["name"] and p["purpose"] and p["target"]
        assert set(p["tags"]) == {"industries", "sizes", "prefectures", "keywords"}
        assert set(p["tags"]["sizes"]) <= {"small", "medium"}


def test_R_REC_01_size_class_follows_industry_ceiling():
    assert domain.size_class("製造業", 20) == "small"
    assert domain.size_class("製造業", 21) == "medium"
    assert domain.size_class("小売業", 6) == "medium"
    assert domain.size_class("小売業", 51) == "large"
    assert domain.size_class("不明な業種", 301) == "large"


def test_R_REC_01_content_score_explains_each_point():
    p = prog("a", industries=["製造業"], prefectures=["大阪府"], keywords=["事業承継", "輸出"])
    s = domain.content_score(p, {**MAKER, "keywords": ["事業承継"]})
    assert s.score == 3 + 2 + 1 + 1
    text = " ".join(s.reasons)
    assert "業種が一致: 製造業" in text and "地域が一致: 大阪府" in text and "ご回答に一致: 事業承継" in text
    assert "輸出" not in text


def test_R_REC_01_other_industry_scores_less_and_excluded_size_or_region_disqualifies():
    p = prog("a", industries=["小売業"])
    assert domain.content_score(p, MAKER).score == 1  # size only
    hokkaido = prog("h", industries=["製造業"], prefectures=["北海道"])
    assert domain.content_score(hokkaido, MAKER).score == 0  # a Hokkaido programme is not for an Osaka maker
    small_only = prog("b", industries=["製造業"], sizes=["small"])
    assert domain.content_score(small_only, {**MAKER, "employees": 100}).score == 0


def test_R_REC_01_rank_orders_by_match_and_skips_programmes_in_use():
    cat = [prog("weak"), prog("strong", industries=["製造業"], prefectures=["大阪府"]), prog("used", industries=["製造業"])]
    ranked = domain.rank(cat, MAKER, mine={"used"}, counts={})
    assert [s.programme_id for s in ranked] == ["strong", "weak"]


def test_R_REC_02_co_counts_on_small_matrix():
    used = {"b1": {"x", "y"}, "b2": {"x", "y", "z"}, "b3": {"x", "z"}, "b4": {"w"}}
    co = domain.co_counts(used)
    assert co["x"] == {"users": 3, "co": {"y": 2, "z": 2}}
    assert co["y"] == {"users": 2, "co": {"x": 2, "z": 1}}
    assert co["w"] == {"users": 1, "co": {}}


def test_R_REC_02_R_OPS_03_increments_in_any_order_add_up_to_the_batch_counts():
    import random
    rnd = random.Random(7)
    used = {f"b{i}": set(rnd.sample("abcdefgh", rnd.randint(1, 5))) for i in range(200)}
    kept: dict = {}
    events = [(b, x) for b, items in used.items() for x in rnd.sample(sorted(items), len(items))]
    had: dict = {}
    for b, x in events:  # as the consumer sees them: each business's programmes one at a time
        for pid, inc in domain.co_count_increments(had.setdefault(b, set()), x).items():
            row = kept.setdefault(pid, {"users": 0, "co": {}})
            for f, n in inc.items():
                if f == "users":
                    row["users"] += n
                else:
                    row["co"][f[3:]] = row["co"].get(f[3:], 0) + n
        had[b].add(x)
    assert kept == domain.co_counts(used)
    assert domain.co_count_increments({"a"}, "a") == {}  # already counted: nothing


def test_R_REC_02_collaborative_scores_recommend_what_alike_businesses_used():
    used = {"b1": {"x", "y"}, "b2": {"x", "y"}, "b3": {"x", "z"}, "me": {"x"}}
    cf = domain.collaborative_scores({"x"}, domain.co_counts(used))
    assert set(cf) == {"y", "z"}
    assert cf["y"][0] > cf["z"][0]
    assert cf["y"][1:] == ("x", 2)


def test_R_REC_02_collaborative_signal_lifts_ranking_with_its_own_reason():
    cat = [prog("a"), prog("b"), prog("mine")]
    used = {"o1": {"mine", "b"}, "o2": {"mine", "b"}, "me": {"mine"}}
    ranked = domain.rank(cat, MAKER, mine={"mine"}, counts=domain.co_counts(used))
    assert ranked[0].programme_id == "b"
    assert any("also used" in r for r in ranked[0].reasons)
    assert not any("also used" in r for r in ranked[1].reasons)


def test_R_NOT_01_push_only_good_new_matches_with_stable_ids():
    cat = [prog("good", industries=["製造業"]), prog("weak"), prog("sent", industries=["製造業"])]
    assert domain.to_push(cat, MAKER, already={"sent"}) == ["good"]
    assert domain.notification_id("B1", "good") == domain.notification_id("B1", "good") == "rec:B1:good"


def test_R_REC_05_uptake_from_counters_suppresses_cells_below_k_and_names_no_business():
    stats = [{"programme_id": "p", "uptake": {domain.cell_key("東京都", "製造業"): 5, domain.cell_key("鳥取県", "製造業"): 4}},
             {"programme_id": "q", "uptake": {domain.cell_key("東京都", "製造業"): 0}}]
    cells, suppressed = domain.uptake_from_counters(stats, k=5)
    assert cells == [{"programme_id": "p", "prefecture": "東京都", "industry": "製造業", "businesses": 5}]
    assert suppressed == 1
    cells, suppressed = domain.uptake_from_counters(stats, k=4)
    assert len(cells) == 2 and suppressed == 0
    assert domain.cell_key("a.b", "$c") == "a．b|＄c"  # a field path never breaks


def test_R_OPS_03_R_REC_01_segment_candidates_and_pushes_depend_on_the_segment_only():
    seg = domain.segment("製造業", domain.size_class("製造業", 12), "大阪府")
    cat = [prog("maker", industries=["製造業"]), prog("hokkaido", prefectures=["北海道"]),
           prog("medium-only", sizes=["medium"]), prog("weak")]
    assert [p["programme_id"] for p in domain.segment_candidates(cat, seg)] == ["maker", "weak"]
    assert domain.segment_pushes(cat[0], seg) and not domain.segment_pushes(cat[3], seg)
    # the segment's verdict is the verdict for every business in it
    for employees in (1, 12, 20):
        assert domain.to_push(cat, {**MAKER, "employees": employees}, set()) == [
            p["programme_id"] for p in cat if domain.segment_pushes(p, seg)]


def test_R_NOT_01_notify_commands_go_to_the_owner_with_the_template_and_stable_ids():
    from contracts.events.notifications import Notify
    from recommend_service import store

    class FakeSvc:
        def event(self, msg, *, actor=None, cause=None):
            return msg

    picked = [{"programme_id": "p1", "name": "施策1"}, {"programme_id": "p2", "name": "施策2"}]
    out = store.notify_events(FakeSvc(), "B1", "acc-1", picked, None)
    assert all(isinstance(n, Notify) for n in out)
    assert [(n.notification_id, n.recipient_id, n.template, n.params["title"]) for n in out] == [
        ("rec:B1:p1", "acc-1", "programme_recommended", "施策1"), ("rec:B1:p2", "acc-1", "programme_recommended", "施策2")]
    assert out == store.notify_events(FakeSvc(), "B1", "acc-1", picked, None)  # a redelivery builds the same commands
    assert store.notify_events(FakeSvc(), "B1", None, picked, None) == []  # nobody to tell: nothing sent

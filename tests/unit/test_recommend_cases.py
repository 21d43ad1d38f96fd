"""Case studies (R-POR-08), pure (recommend domain): the seeded catalogue, search, paging, and recommendation with
the programmes' matching (R-REC-01)."""
from contracts.events.recommend import ProgrammeTags
from contracts.vocab import PREFECTURES
from recommend_service.domain import (SIZE_LIMITS, WEIGHTS, case_matches, case_score, cases_page, content_score,
                                      load_catalogue, load_cases, rank_cases, region_problem)

CASES = load_cases()
TOTTORI_SHOP = {"industry": "小売業", "prefecture": "鳥取県", "employees": 4}


def test_R_POR_08_the_catalogue_is_seeded_with_cases_in_japanese_with_english_summaries_tagged_like_programmes():
    assert len(CASES) >= 8 and len({c["case_id"] for c in CASES}) == len(CASES)
    programmes = {p["programme_id"] for p in load_catalogue()}
    for c in CASES:
        assert c["title"] and c["summary"] and c["title_en"] and c["summary_en"], c["case_id"]
        assert any("\u3040" <= ch <= "\u30ff" for ch in c["summary"]), c["case_id"]  # written in Japanese
        tags = ProgrammeTags(**c["tags"])
        assert tags.industries and tags.keywords and tags.sizes, c["case_id"]
        assert set(tags.industries) <= set(SIZE_LIMITS) - {"other"}, c["case_id"]
        assert set(tags.sizes) <= {"small", "medium"} and set(tags.prefectures) <= set(PREFECTURES), c["case_id"]
        assert set(c["programme_ids"]) <= programmes, c["case_id"]


def test_R_POR_08_search_by_words_in_japanese_or_english_industry_and_region():
    ids = lambda **f: [c["case_id"] for c in CASES if case_matches(c, **f)]  # noqa: E731
    assert ids(q="事業承継") == ["case-01-shokei-seimitsu"]
    assert ids(q="SAKE brewery") == ["case-04-kaigai-shuzo"]  # English, any case
    assert ids(q="販路開拓 鳥取県") == ["case-02-shotengai-cafe", "case-06-noshoko-jam"]  # every word
    assert ids(industry="製造業", region="鳥取県") == ["case-06-noshoko-jam"]
    assert ids(region="鳥取県") == ["case-02-shotengai-cafe", "case-06-noshoko-jam"]
    assert ids(q="存在しない言葉") == [] and len(ids()) == len(CASES)


def test_R_POR_08_search_is_paged_in_case_id_order_without_repeats_or_gaps():
    seen, after = [], ""
    while True:
        page, after = cases_page(CASES, after, 3)
        seen += [c["case_id"] for c in page]
        if after is None:
            break
    assert seen == sorted(c["case_id"] for c in CASES)
    page, nxt = cases_page(CASES, "", 10, region="鳥取県")
    assert [c["case_id"] for c in page] == ["case-02-shotengai-cafe", "case-06-noshoko-jam"] and nxt is None


def test_R_POR_08_a_region_is_a_prefecture():
    assert region_problem("鳥取県") is None and region_problem(None) is None
    assert "unknown region 'Tottori'" in region_problem("Tottori")


def test_R_POR_08_cases_are_scored_like_programmes_with_reasons():
    case = {"case_id": "c", "tags": {"industries": ["小売業"], "sizes": ["small"], "prefectures": ["鳥取県"],
                                     "keywords": ["商店街"]}}
    programme = {"programme_id": "c", "tags": case["tags"]}
    s = case_score(case, {**TOTTORI_SHOP, "keywords": ["商店街"]})
    assert s.score == content_score(programme, {**TOTTORI_SHOP, "keywords": ["商店街"]}).score \
        == WEIGHTS.industry + WEIGHTS.region + WEIGHTS.size + WEIGHTS.keyword
    assert s.reasons == ["同じ業種の事例: 小売業 (a case of your industry)", "同じ地域の事例: 鳥取県 (a case from your region)",
                         "同じ規模の事例: 小規模事業者（従業員4人） (a business of your size)", "ご回答に一致: 商店街 (matches your answer)"]


def test_R_POR_08_a_case_from_elsewhere_or_of_another_size_is_not_excluded_only_scores_less():
    case = {"case_id": "c", "tags": {"industries": ["小売業"], "sizes": ["medium"], "prefectures": ["東京都"]}}
    s = case_score(case, TOTTORI_SHOP)
    assert s.score == WEIGHTS.industry and s.reasons == ["同じ業種の事例: 小売業 (a case of your industry)"]
    assert content_score({"programme_id": "c", "tags": case["tags"]}, TOTTORI_SHOP).score == 0  # a programme would be


def test_R_POR_08_recommended_cases_are_the_closest_best_first_and_a_case_matching_nothing_is_left_out():
    ranked = rank_cases(CASES, {**TOTTORI_SHOP, "keywords": ["商店街"]}, limit=10)
    assert ranked[0].programme_id == "case-02-shotengai-cafe"  # industry, region, size and the answer
    assert all(s.score > 0 for s in ranked)
    assert "case-05-saisei-ryokan" not in [s.programme_id for s in ranked]  # service, medium, 大分県: nothing shared
    assert [s.programme_id for s in rank_cases(CASES, TOTTORI_SHOP, limit=1)] == ["case-02-shotengai-cafe"]
    scores = [s.score for s in ranked]
    assert scores == sorted(scores, reverse=True)


def test_R_POR_03_needs_and_offers_are_recommended_with_reasons_never_the_business_own_nor_closed():
    from recommend_service.domain import rank_postings

    profile = {"prefecture": "熊本県", "industry": "製造業"}
    postings = [
        {"_id": "pg-both", "region": "熊本県", "industry": "製造業", "kind": "partner", "status": "open", "key": "2"},
        {"_id": "pg-region", "region": "熊本県", "industry": "小売業", "kind": "successor", "status": "open", "key": "1"},
        {"_id": "pg-none", "region": "東京都", "industry": "小売業", "kind": "partner", "status": "open", "key": "0"},
        {"_id": "pg-own", "region": "熊本県", "industry": "製造業", "kind": "partner", "status": "open", "key": "3",
         "owner_id": "biz-me"},
        {"_id": "pg-closed", "region": "熊本県", "industry": "製造業", "kind": "partner", "status": "closed", "key": "4"},
    ]
    ranked = rank_postings(postings, profile, "biz-me")
    assert [s.programme_id for s in ranked] == ["pg-both", "pg-region"]
    assert ranked[0].reasons == ["same prefecture (熊本県)", "same industry (製造業)"]
    # a questionnaire answer naming succession lifts the successor offer above an equal one
    asked = rank_postings(postings, profile, "biz-me", ["事業承継"])
    assert asked[1].programme_id == "pg-region" and "you asked about successor" in asked[1].reasons
    assert rank_postings(postings, profile, "biz-me", limit=1)[0].programme_id == "pg-both"

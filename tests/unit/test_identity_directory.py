"""The public directory and finder (R-POR-07), pure (identity domain): what is validated, what is published and how
every query maps onto one index range."""
from identity_service.domain import (area_problems, certification_problem, certified, finder_keys, finder_prefix, listed,
                                     page_range, platform_keys, platform_prefix, prefecture_problem, public_institution,
                                     public_platform, speciality_problems)

BANK = {"_id": "o-bank", "kind": "institution", "name": "とっとり信用金庫", "institution_type": 8, "prefecture": "鳥取県",
        "specialities": ["finance", "business_succession"], "certified": True, "created_at": 1.0,
        "staff_email": "staff@bank.example.jp", "dir_keys": ["x"], "_outbox": []}


def test_R_POR_07_types_7_to_11_are_certified_by_definition_others_when_they_say_so():
    assert certified(8, None) and certified(11, False) is True
    assert certified(1, None) is False and certified(1, True) and certified(None, True)


def test_R_POR_07_certification_is_refused_for_non_institutions_and_cannot_be_denied_for_7_to_11():
    assert "only a support institution" in certification_problem("body", None, True)
    assert certification_problem("individual", None, False)
    assert "by definition" in certification_problem("institution", 9, False)
    assert certification_problem("institution", 9, True) is None
    assert certification_problem("institution", 1, False) is None and certification_problem("body", None, None) is None


def test_R_POR_07_specialities_are_words_of_the_field_list_each_once():
    assert speciality_problems(["finance", "it_dx"]) == []
    assert "unknown speciality 'cooking'" in speciality_problems(["cooking"])[0]
    assert speciality_problems(["finance", "finance"]) == ["a speciality is listed twice"]


def test_R_POR_07_a_region_is_one_of_the_47_prefectures():
    assert prefecture_problem("鳥取県") is None and prefecture_problem(None) is None and prefecture_problem("北海道") is None
    assert "unknown prefecture 'Tottori'" in prefecture_problem("Tottori")
    assert prefecture_problem("鳥取") is not None


def test_R_POR_07_a_support_area_is_prefectures_narrowed_to_municipalities_within_them():
    assert area_problems(["鳥取県"], []) == []
    assert area_problems(["鳥取県", "島根県"], ["鳥取県米子市", "島根県松江市", "鳥取県日吉津村"]) == []
    assert area_problems([], []) == ["a support area names at least one prefecture"]
    assert "unknown prefecture 'Tottori'" in area_problems(["Tottori"], [])[0]
    assert "listed twice" in area_problems(["鳥取県", "鳥取県"], [])[0]
    assert "not written with one of the area's prefectures" in area_problems(["鳥取県"], ["東京都千代田区"])[0]
    assert "not a municipality" in area_problems(["鳥取県"], ["鳥取県"])[0]
    assert "not a municipality" in area_problems(["鳥取県"], ["鳥取県米子"])[0]
    assert "listed twice" in area_problems(["鳥取県"], ["鳥取県米子市", "鳥取県米子市"])[-1]


def test_R_POR_07_only_support_institutions_are_listed_in_the_finder():
    assert listed("institution") and not listed("body") and not listed("individual")


def test_R_POR_07_an_institution_is_published_with_its_public_facts_only():
    pub = public_institution(BANK)
    assert pub == {"org_id": "o-bank", "name": "とっとり信用金庫", "institution_type": 8,
                   "institution_type_label": "認定支援機関（地方銀行・第二地方銀行・信用金庫・信用組合）",
                   "dispatch_capable": True, "certified": True, "prefecture": "鳥取県",
                   "specialities": ["finance", "business_succession"]}
    assert "staff@bank.example.jp" not in repr(pub)


def test_R_POR_07_a_platform_is_published_with_its_area_and_members_but_never_a_person():
    pf = {"_id": "pf-1", "name": "とっとりPF", "bureau_id": "bureau-chugoku", "fiscal_years": [2027, 2026],
          "representative_id": "o-bank", "area": {"prefectures": ["鳥取県"], "municipalities": []},
          "members": [{"org_id": "o-bank", "member_role": "representative"},
                      {"org_id": "o-person", "member_role": "individual"},
                      {"org_id": "o-gone", "member_role": "body"}]}
    orgs = {"o-bank": BANK, "o-person": {"_id": "o-person", "kind": "individual", "name": "山田 花子"}}
    out = public_platform(pf, orgs)
    assert out["fiscal_years"] == [2026, 2027] and out["area"] == {"prefectures": ["鳥取県"], "municipalities": []}
    assert out["members"][0] == {"org_id": "o-bank", "name": "とっとり信用金庫", "kind": "institution",
                                 "institution_type": 8, "member_role": "representative"}
    assert out["members"][1] == {"org_id": None, "name": None, "kind": "individual", "institution_type": None,
                                 "member_role": "individual"}
    assert "山田" not in repr(out) and "o-person" not in repr(out) and "representative_id" not in out
    assert out["members"][2]["name"] is None  # an organisation no longer on record: its role only
    assert public_platform({**pf, "area": None}, orgs)["area"] == {"prefectures": [], "municipalities": []}


def test_R_POR_07_every_filter_combination_of_an_institution_is_an_index_prefix():
    inst = public_institution(BANK)
    keys = finder_keys(inst)
    assert len(keys) == len(set(keys)) == 2 * 2 * 2 * 3
    for pref in (None, "鳥取県"):
        for t in (None, 8):
            for c in (None, True):
                for s in (None, "finance", "business_succession"):
                    prefix = finder_prefix(pref, t, c, s)
                    assert [k for k in keys if k.startswith(prefix + "#")] == [f"{prefix}#とっとり信用金庫#o-bank"]
    # and none of the filters it does not meet
    for prefix in (finder_prefix("島根県"), finder_prefix(institution_type=1), finder_prefix(certified_=False),
                   finder_prefix(speciality="legal"), finder_prefix("鳥取県", 8, False)):
        assert not [k for k in keys if k.startswith(prefix + "#")], prefix


def test_R_POR_07_an_untyped_uncertified_institution_without_region_is_found_only_without_those_filters():
    keys = finder_keys(public_institution({"_id": "o2", "kind": "institution", "name": "よろず支援拠点"}))
    assert [k for k in keys if k.startswith(finder_prefix() + "#")]
    assert [k for k in keys if k.startswith(finder_prefix(certified_=False) + "#")]
    assert not [k for k in keys if k.startswith(finder_prefix("鳥取県") + "#")]
    assert not [k for k in keys if k.startswith(finder_prefix(institution_type=5) + "#")]


def test_R_POR_07_a_platform_is_listed_nationally_and_under_each_prefecture_of_its_area():
    pf = {"platform_id": "pf-1", "area": {"prefectures": ["鳥取県", "島根県"], "municipalities": []}}
    assert platform_keys(pf) == ["pf|*#pf-1", "pf|鳥取県#pf-1", "pf|島根県#pf-1"]
    assert platform_prefix("鳥取県") == "pf|鳥取県" and platform_prefix() == "pf|*"


def test_R_POR_07_a_page_is_one_range_inside_its_prefix_and_a_foreign_cursor_is_refused():
    prefix = finder_prefix("鳥取県")
    first = page_range(prefix, None)
    assert first == {"$gt": prefix + "#", "$lt": prefix + "$"}
    inside = ["in|鳥取県|*|*|*#A#1", "in|鳥取県|*|*|*#＃記号#2", "in|鳥取県|*|*|*#𠮷野家#3"]
    outside = ["in|鳥取県|*|*|finance#A#1", "in|鳥取県|08|*|*#A#1", "in|鳥取県|*|*|*", "in|鳥取県|*|*|*$"]
    assert all(first["$gt"] < k < first["$lt"] for k in inside)
    assert not any(first["$gt"] < k < first["$lt"] for k in outside)
    assert page_range(prefix, inside[0]) == {"$gt": inside[0], "$lt": prefix + "$"}
    assert "another query" in page_range(prefix, "in|島根県|*|*|*#A#1")

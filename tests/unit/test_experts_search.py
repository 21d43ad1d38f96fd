"""The in-process expert search index (R-EX-05): Japanese and English free text, filters, ratings."""
from datetime import date

from experts_service.search import ExpertIndex

TODAY = date(2026, 5, 1)


def doc(i, name, quals=(), fields=(), regions=(), intro="", status="registered", fy=2026, windows=(), radar=None,
        recommenders=()):
    return {"_id": i, "name": name, "status": status, "registered_fiscal_year": fy,
            "profile": {"qualifications": list(quals), "fields": list(fields), "regions": list(regions),
                        "introduction": intro},
            "availability": {"windows": [{"start": s, "end": e} for s, e in windows], "note": ""},
            "recommendations": [{"org_name": n, "recommended": True, "consented": True} for n in recommenders],
            "radar": radar}


def index():
    ix = ExpertIndex()
    ix.upsert(doc("a", "山田 花子", ["中小企業診断士"], ["finance", "management"], ["熊本県"],
                  "Financial turnaround of family businesses", radar={"averages": {"expertise": 4.6, "manners": 4.0},
                                                                       "count": 9, "as_of": "2026-04-01"},
                  recommenders=["熊本商工会議所"]))
    ix.upsert(doc("b", "John Smith", ["公認会計士"], ["finance"], ["東京都"], "M&A and business succession",
                  windows=[("2026-05-01", "2026-05-31")]))
    ix.upsert(doc("c", "佐藤 一郎", ["税理士"], ["tax"], ["熊本県"], "事業承継と相続税の診断", status="portal", fy=None))
    ix.upsert(doc("d", "鈴木 次郎", ["弁護士"], ["legal"], ["福岡県"], "契約書", status="suspended"))
    return ix


def ids(result):
    return sorted(c["expert_id"] for c in result[1])


def test_R_EX_05_japanese_substring_finds_chusho_kigyo_shindanshi():
    ix = index()
    assert ids(ix.search(q="診断士", today=TODAY)) == ["a"]
    assert ids(ix.search(q="中小企業診断", today=TODAY)) == ["a"]
    assert ids(ix.search(q="中小企業診断士", today=TODAY)) == ["a"]
    assert ids(ix.search(q="診断", today=TODAY)) == ["a", "c"]  # c's introduction mentions 診断


def test_R_EX_05_bigram_coincidence_is_not_a_match():
    ix = ExpertIndex()
    ix.upsert(doc("x", "x", intro="診断 と 断士"))  # has the bigrams 診断 and 断士, but not 診断士
    assert ix.search(q="診断士", today=TODAY)[0] == 0


def test_R_EX_05_english_words_case_insensitive_and_prefix():
    ix = index()
    assert ids(ix.search(q="SUCCESSION", today=TODAY)) == ["b"]
    assert ids(ix.search(q="turnaro", today=TODAY)) == ["a"]
    assert ids(ix.search(q="family business", today=TODAY)) == ["a"]
    assert ids(ix.search(q="ｊｏｈｎ", today=TODAY)) == ["b"]  # full-width Latin is normalised


def test_R_EX_05_filters_combine():
    ix = index()
    assert ids(ix.search(fields=["finance"], today=TODAY)) == ["a", "b"]
    assert ids(ix.search(fields=["finance"], region="熊本県", today=TODAY)) == ["a"]
    assert ids(ix.search(qualification="税理士", today=TODAY)) == ["c"]
    assert ids(ix.search(q="熊本商工会議所", today=TODAY)) == ["a"]  # the recommending institution


def test_R_EX_05_suspended_never_listed_and_for_dispatch_only_registered_available():
    ix = index()
    assert "d" not in ids(ix.search(today=TODAY))
    assert ids(ix.search(for_dispatch=True, today=TODAY)) == ["a"]  # b is away in May, c is stage 1 only
    assert ids(ix.search(for_dispatch=True, today=date(2026, 6, 1))) == ["a", "b"]
    assert ids(ix.search(for_dispatch=True, today=date(2027, 4, 1))) == []  # FY2026 registrations lapsed
    assert ids(ix.search(available_on=date(2026, 5, 10), today=TODAY)) == ["a", "c"]


def test_R_EX_05_min_rating_and_sort():
    ix = index()
    assert ids(ix.search(min_ratings={"expertise": 4.5}, today=TODAY)) == ["a"]
    assert ids(ix.search(min_ratings={"expertise": 4.7}, today=TODAY)) == []
    ix.set_radar("b", {"averages": {"expertise": 4.9, "manners": 4.9}, "count": 3, "as_of": "2026-04-02"})
    assert [c["expert_id"] for c in ix.search(fields=["finance"], sort="rating", today=TODAY)[1]] == ["b", "a"]
    assert not ix.set_radar("b", {"averages": {"expertise": 1.0}, "count": 1, "as_of": "2026-03-01"})  # stale
    assert ix.search(q="john", today=TODAY)[1][0]["radar"]["averages"]["expertise"] == 4.9


def test_R_EX_05_reindexing_replaces_old_terms_and_remove_frees_the_slot():
    ix = index()
    ix.upsert(doc("a", "山田 花子", ["税理士"], ["tax"], ["熊本県"]))
    assert ix.search(q="診断士", today=TODAY)[0] == 0
    assert ids(ix.search(qualification="税理士", today=TODAY)) == ["a", "c"]
    assert ids(ix.search(min_ratings={"expertise": 4.5}, today=TODAY)) == ["a"]  # ratings survive a re-index
    ix.remove("a")
    ix.upsert(doc("e", "新人", ["弁理士"]))
    assert len(ix) == 4 and ids(ix.search(qualification="弁理士", today=TODAY)) == ["e"]
    assert ix.search(qualification="税理士", today=TODAY)[0] == 1


def test_R_EX_05_pagination_and_total():
    ix = ExpertIndex()
    for i in range(45):
        ix.upsert(doc(f"e{i:02d}", f"専門家{i:02d}", fields=["it_dx"]))
    total, page3 = ix.search(fields=["it_dx"], sort="name", page=3, size=20, today=TODAY)
    assert total == 45 and [c["expert_id"] for c in page3] == [f"e{i}" for i in range(40, 45)]


def test_R_EX_06_an_expert_on_hold_is_hidden_from_matching_but_still_found_in_the_directory():
    ix = index()
    held = doc("a", "山田 花子", ["中小企業診断士"], ["finance"], ["熊本県"])
    held["capacity"] = {"paused": False, "open_cap": 1, "open_ids": ["dsp-1"]}
    ix.upsert(held)
    assert ids(ix.search(fields=["finance"], for_dispatch=True, today=date(2026, 6, 1))) == ["b"]
    assert ids(ix.search(fields=["finance"], today=TODAY)) == ["a", "b"]
    held["capacity"]["open_ids"] = []
    ix.upsert(held)
    assert ids(ix.search(fields=["finance"], for_dispatch=True, today=date(2026, 6, 1))) == ["a", "b"]

"""Once-only profile rules, pure (R-ID-03, R-ANC-04)."""
from identity_service.domain import changed_fields, financials_problem, merge_financials, missing_recent_periods


def p(fy, sales):
    return {"fiscal_year": fy, "sales": sales}


def test_R_ANC_04_the_last_three_closed_periods_are_tracked():
    assert missing_recent_periods([p(2025, 1), p(2024, 1), p(2023, 1)], 2026) == []
    assert missing_recent_periods([p(2025, 1), p(2022, 1)], 2026) == [2024, 2023]
    assert missing_recent_periods([], 2026) == [2025, 2024, 2023]


def test_R_ANC_04_new_figures_replace_their_year_and_older_years_stay():
    merged = merge_financials([p(2023, 1), p(2024, 2)], [p(2024, 20), p(2025, 3)])
    assert merged == [p(2025, 3), p(2024, 20), p(2023, 1)]


def test_R_ANC_04_duplicate_and_future_years_are_refused():
    assert "only once" in financials_problem([p(2024, 1), p(2024, 2)], 2026)
    assert "FY2027" in financials_problem([p(2027, 1)], 2026)
    assert financials_problem([p(2026, 1), p(2025, 1)], 2026) is None


def test_R_ID_03_a_change_names_exactly_the_fields_it_touches():
    old = {"name": "A", "employees": 3, "financials": [p(2025, 1)], "capital": None}
    assert changed_fields(old, {**old, "employees": 4, "capital": 10}) == ["capital", "employees"]
    assert changed_fields(old, dict(old)) == []


def test_R_ID_04_a_client_gets_exactly_the_fields_its_scopes_allow():
    from identity_service.domain import prefill_view

    profile = {"corporate_number": "7000012050002", "name": "A", "postal_code": "860-0001", "address": "x",
               "prefecture": "熊本県", "representative": "r", "capital": 1, "industry": "i", "employees": 3,
               "financials": [p(2025, 1)], "owner": "acc-1", "history": []}
    basic = prefill_view(profile, {"prefill:read"})
    assert "financials" not in basic and "owner" not in basic and basic["name"] == "A" and len(basic) == 9
    assert prefill_view(profile, {"prefill:read", "prefill:financials"})["financials"] == [p(2025, 1)]
    assert prefill_view(profile, {"openid"}) == {}


def test_R_ANC_05_disclosure_visible_only_between_approval_and_revocation():
    from identity_service.domain import disclosure_next, disclosure_visible

    assert disclosure_next("pending", "approve") == "approved" and disclosure_visible("approved")
    assert disclosure_next("approved", "revoke") == "revoked" and not disclosure_visible("revoked")
    assert disclosure_next("pending", "reject") == "rejected" and not disclosure_visible("rejected")
    assert not disclosure_visible("pending")
    assert disclosure_next("revoked", "approve") is None and disclosure_next("pending", "revoke") is None
    assert disclosure_next("rejected", "approve") is None

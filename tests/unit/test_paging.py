"""Cursor paging (R-OPS-01): keys sort by time then id; cursors round-trip; a foreign cursor is a 400."""
from datetime import UTC, datetime, timedelta, timezone

import pytest

from servicekit import paging
from servicekit.problems import Problem


def test_R_OPS_01_keys_sort_by_time_then_id_whatever_the_time_zone():
    t = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)
    jst = t.astimezone(timezone(timedelta(hours=9)))
    assert paging.sort_key(jst, "a") == paging.sort_key(t, "a")
    keys = [paging.sort_key(t, "b"), paging.sort_key(t, "a"), paging.sort_key(t + timedelta(microseconds=1), "a"),
            paging.sort_key(t - timedelta(days=400), "z")]
    assert sorted(keys) == [keys[3], keys[1], keys[0], keys[2]]


def test_R_OPS_01_cursor_round_trip_and_bad_cursor():
    k = paging.sort_key(datetime(2026, 1, 1, tzinfo=UTC), "dsp-1")
    assert paging.decode(paging.encode(k)) == k
    with pytest.raises(Problem) as e:
        paging.decode("%%%")
    assert e.value.status == 400


def test_R_OPS_02_a_trail_entry_is_found_under_every_id_it_names():
    from identity_service.operator import refs_of  # noqa: PLC0415 (identity's module needs no key to import)

    refs = refs_of("dsp-1", "acc-1", "partner-1", {"business_id": "biz-1", "expert_id": "exp-1", "status": "paid",
                                                   "account_ids": ["acc-2", "acc-3"], "institution_id": None})
    assert refs == ["acc-1", "acc-2", "acc-3", "biz-1", "dsp-1", "exp-1", "partner-1"]

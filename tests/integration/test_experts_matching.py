"""Explainable suggestions (R-EX-07) from the experts service on real Kafka + MongoDB: experts registered through the
service's own APIs, their record, ratings and open dispatches learnt from the dispatch and ratings events; an
expert at their cap of open dispatches is not suggested until a dispatch closes, nor on a weekday they do not work
(R-EX-06)."""
from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import httpx
import pytest

from contracts.events.dispatch import DispatchCompleted, DispatchStatusChanged
from contracts.events.ratings import ExpertRadarUpdated
from contracts.vocab import fiscal_year
from tests.integration.test_experts_service import AGENCY, INSTITUTION, auth, platform, publish, register
from tests.support import Namespace, ServiceProcess, eventually

FY = fiscal_year(date.today())


@pytest.fixture(scope="module")
def svc(infra, tmp_path_factory):
    ns = Namespace()
    proc = ServiceProcess("experts", infra, ns, tmp_path_factory.mktemp("experts-matching")).start()
    yield ns, proc
    proc.stop()


def status(dispatch_id: str, expert_id: str, s: str) -> DispatchStatusChanged:
    return DispatchStatusChanged(dispatch_id=dispatch_id, status=s, route="A", fiscal_year=FY, business_id="biz-1",
                                 expert_id=expert_id)


async def suggestions(http, **params) -> dict:
    r = await http.get("/experts/suggestions", params=params, headers=INSTITUTION)
    assert r.status_code == 200, r.text
    return r.json()


async def test_R_EX_07_suggestions_say_why_and_leave_out_an_expert_at_cap(svc, infra):
    ns, proc = svc
    await platform(infra, ns)
    async with httpx.AsyncClient(base_url=proc.url, timeout=10) as http:
        both = {"fields": ["sales_channels", "it_dx"]}
        a = await register(http, "acc-m-a", name="大分 一郎", regions=["大分県"], **both)
        b = await register(http, "acc-m-b", name="福岡 二郎", regions=["福岡県"], fields=["sales_channels"])
        c = await register(http, "acc-m-c", name="大分 三郎", regions=["大分県"], **both)
        d = await register(http, "acc-m-d", name="大分 四郎", regions=["大分県"], fields=["tax"])
        # C takes one open dispatch at a time, and has one (R-EX-06); A has a completed dispatch and ratings
        r = await http.put("/experts/me/capacity", json={"open_cap": 1}, headers=auth("acc-m-c", ["expert"]))
        assert r.status_code == 200, r.text
        now = datetime.now(UTC)
        await publish(infra, ns, status("dsp-c1", c, "accepted"), status("dsp-a1", a, "accepted"),
                      DispatchCompleted(dispatch_id="dsp-a1", fiscal_year=FY, route="A", business_id="biz-1",
                                        business_account_id="acc-biz-1", expert_id=a, completed_at=now),
                      status("dsp-a1", a, "reported"), producer="dispatch")
        await publish(infra, ns, ExpertRadarUpdated(expert_id=a, averages={
            "communication": 4.2, "clarity": 4.0, "expertise": 4.7, "analysis": 3.2, "execution": 4.1, "manners": 4.4},
            count=6, window_days=120, as_of=now), producer="ratings")

        params = {"field": ["sales_channels", "it_dx"], "region": "大分県", "need": ["expertise", "analysis"]}

        async def learnt():
            got = await suggestions(http, **params)
            first = got["items"][0] if got["items"] else {}
            done = (first.get("expert_id") == a and first["reasons"]["record"]["completed_dispatches"] == 1
                    and first["reasons"]["rating"]["counted"] and first["reasons"]["availability"]["open_dispatches"] == 0
                    and c not in [s["expert_id"] for s in got["items"]])
            return got if done else None
        got = await eventually(learnt)
        ids = [s["expert_id"] for s in got["items"]]
        assert ids == [a, b]  # C at its cap and D without a common field are not suggested
        assert got["need"]["block"] == "九州"
        first, second = got["items"]
        ra = first["reasons"]
        assert first["qualified"] and ra["fields"]["matched"] == ["sales_channels", "it_dx"] and not ra["fields"]["missing"]
        assert ra["region"]["match"] == "same_prefecture"
        assert ra["rating"]["count"] == 6 and ra["strengths"] == [{"axis": "expertise", "average": 4.7}]
        assert ra["availability"] == {"on_hold": False, "open_dispatches": 0, "open_cap": None, "capacity_left": None,
                                      "available_on": None, "weekdays": []}
        assert ra["fairness"]["recent_dispatches"] == 1 and ra["fairness"]["penalty"] > 0
        assert any("1 completed dispatches" in line for line in first["summary"])
        rb = second["reasons"]
        assert not second["qualified"] and rb["fields"]["missing"] == ["it_dx"] and rb["region"]["match"] == "same_block"
        assert d not in ids

        # the dispatch closes: C can be suggested again, with the capacity it has left
        await publish(infra, ns, status("dsp-c1", c, "reported"), producer="dispatch")

        async def back():
            got = await suggestions(http, **params)
            mine = [s for s in got["items"] if s["expert_id"] == c]
            return mine[0] if mine else None
        back_c = await eventually(back)
        assert back_c["qualified"] and back_c["reasons"]["availability"]["capacity_left"] == 1

        # R-EX-06 calendar: B takes visits on Mondays only; a Tuesday's suggestions leave B out, a Monday's do not
        r = await http.put("/experts/me/availability", json={"weekdays": [0]}, headers=auth("acc-m-b", ["expert"]))
        assert r.status_code == 200 and r.json()["availability"]["weekdays"] == [0], r.text
        days = [date.today() + timedelta(days=k) for k in range(1, 8)]
        monday, tuesday = (next(d for d in days if d.weekday() == w) for w in (0, 1))
        got = await suggestions(http, **params, on=tuesday.isoformat())
        assert b not in [s["expert_id"] for s in got["items"]] and a in [s["expert_id"] for s in got["items"]]
        got = await suggestions(http, **params, on=monday.isoformat())
        mine = [s for s in got["items"] if s["expert_id"] == b]
        assert mine and mine[0]["reasons"]["availability"]["weekdays"] == [0]
        assert mine[0]["reasons"]["availability"]["available_on"] == monday.isoformat()

        # an unknown prefecture or field is refused in words
        r = await http.get("/experts/suggestions", params={"region": "Kumamoto"}, headers=INSTITUTION)
        assert r.status_code == 422 and "prefecture" in r.json()["detail"]
        r = await http.get("/experts/suggestions", params={"field": "cooking"}, headers=INSTITUTION)
        assert r.status_code == 422
        # R-ANC-02: the restricted directory is closed to businesses, for suggestions too
        r = await http.get("/experts/suggestions", headers=auth("biz-1", ["business"]))
        assert r.status_code == 403
        assert (await http.get("/experts/suggestions", headers=AGENCY)).status_code == 200


async def test_R_EX_07_first_places_are_shared_by_every_replica(svc, infra, tmp_path_factory):
    """The fairness term counts first places in MongoDB: an expert suggested first by one replica carries that
    first place on another replica's suggestions (per-replica memory would show 0 there)."""
    ns, proc = svc
    await platform(infra, ns)
    other = ServiceProcess("experts", infra, ns, tmp_path_factory.mktemp("experts-replica-2")).start()
    try:
        async with (httpx.AsyncClient(base_url=proc.url, timeout=10) as one,
                    httpx.AsyncClient(base_url=other.url, timeout=10) as two):
            e = await register(one, "acc-fp-e", name="長崎 五郎", regions=["長崎県"], fields=["overseas"])
            f = await register(one, "acc-fp-f", name="長崎 六郎", regions=["長崎県"], fields=["overseas"])
            params = {"field": ["overseas"], "region": "長崎県"}

            async def both_known(http):
                got = await suggestions(http, **params)
                return got if {s["expert_id"] for s in got["items"]} == {e, f} else None
            await eventually(lambda: both_known(two))
            first = (await eventually(lambda: both_known(one)))["items"][0]  # replica one counts a first place
            got = await suggestions(two, **params)
            seen = {s["expert_id"]: s["reasons"]["fairness"]["recent_first_places"] for s in got["items"]}
            assert seen[first["expert_id"]] >= 1, seen
            # and replica two's own first place is seen by replica one
            second_first = got["items"][0]["expert_id"]
            before = seen[second_first]
            got = await suggestions(one, **params)
            seen_one = {s["expert_id"]: s["reasons"]["fairness"]["recent_first_places"] for s in got["items"]}
            assert seen_one[second_first] == before + 1, (seen, seen_one)
    finally:
        other.stop()

"""Budget service over HTTP on real Kafka + MongoDB: allocation (R-BUD-01), shares (R-BUD-02, R-PF-04),
reservations through budget.commands (R-DSP-08, R-BUD-03/04), ledger and check (R-BUD-05), close, reports, and
least privilege by place (R-PF-05)."""
from __future__ import annotations

import csv
import io
import json

import httpx
import pytest

from contracts.events.budget import CommitBudget, ReleaseBudget, ReserveBudget, frame_id
from tests.integration.budget_helpers import (BUREAU, MEMBER, OTHER_BUREAU, OUTSIDER, PLATFORM, REP, answers, auth,
                                              bureau, dispatch_member, publish, register_platform, representative)
from tests.support import eventually, read_topic

FID = frame_id(2026, PLATFORM)


@pytest.fixture
async def budget(services, infra, ns):
    svc = services("budget")
    await register_platform(infra, ns)
    async with httpx.AsyncClient(base_url=svc.url, timeout=20) as http:
        yield http


async def allocate(http, fee=1_000_000, travel=200_000):
    return await http.post("/frames", json={"fiscal_year": 2026, "platform_id": PLATFORM, "fee": fee,
                                            "travel": travel, "reason": "FY2026"}, headers=bureau())


async def test_R_BUD_01_R_BUD_02_bureau_allocates_and_representative_shares(budget):
    r = await allocate(budget)
    assert r.status_code == 201, r.text
    f = r.json()
    assert (f["frame_id"], f["representative_id"], f["bureau_id"], f["allocated"]) == (FID, REP, BUREAU, 1_200_000)
    r = await budget.put(f"/frames/{FID}/shares/{MEMBER}", json={"amount": 300_000, "reason": "Q1"},
                         headers=representative())
    assert r.status_code == 200, r.text
    mem = {m["member_id"]: m for m in r.json()["members"]}
    assert mem[MEMBER]["allocated"] == 300_000 and mem[REP]["available"] == 900_000
    r = await allocate(budget, fee=1_500_000)  # a change, not a new frame
    assert r.status_code == 200 and r.json()["allocated"] == 1_700_000
    led = (await budget.get(f"/frames/{FID}/ledger", headers=bureau())).json()
    assert [(e["kind"], e["actor"]) for e in led["entries"]] == [
        ("allocation", "bureau-user"), ("share", "rep-staff"), ("allocation", "bureau-user")]
    assert led["total"] == 3 and led["next_offset"] is None
    # R-OPS-03: pages by offset are range reads on the ledger's gapless seq, each saying where the next begins
    p1 = (await budget.get(f"/frames/{FID}/ledger", params={"limit": 2}, headers=bureau())).json()
    p2 = (await budget.get(f"/frames/{FID}/ledger", params={"limit": 2, "offset": p1["next_offset"]},
                           headers=bureau())).json()
    assert (p1["next_offset"], p2["next_offset"], p2["total"]) == (2, None, 3)
    assert [e["seq"] for e in p1["entries"] + p2["entries"]] == [1, 2, 3]
    chk = (await budget.get(f"/frames/{FID}/check", headers=bureau())).json()
    assert chk["consistent"] is True and chk["violations"] == [] and chk["ledger_entries"] == 3


async def test_R_PF_04_non_representative_gets_403_and_ineligible_member_is_refused(budget):
    assert (await allocate(budget)).status_code == 201
    share = {"amount": 1_000}
    r = await budget.put(f"/frames/{FID}/shares/{MEMBER}", json=share, headers=dispatch_member())
    assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
    r = await budget.put(f"/frames/{FID}/shares/{MEMBER}", json=share, headers=representative("other-pf"))
    assert r.status_code == 403
    r = await budget.put(f"/frames/{FID}/shares/{MEMBER}", json=share, headers=auth("op", ["operator"]))
    assert r.status_code == 403
    r = await budget.post("/frames", json={"fiscal_year": 2026, "platform_id": PLATFORM, "fee": 1, "travel": 1},
                          headers=representative())
    assert r.status_code == 403  # only a bureau allocates
    r = await budget.put(f"/frames/{FID}/shares/{OUTSIDER}", json=share, headers=representative())
    assert r.status_code == 422 and r.json()["code"] == "not_allowed"  # R-PF-04: not dispatch-capable
    assert (await budget.get(f"/frames/{FID}", headers=dispatch_member())).status_code == 200
    assert (await budget.get(f"/frames/{FID}/ledger", headers=dispatch_member())).status_code == 403
    assert (await budget.get(f"/frames/{FID}")).status_code == 401


@pytest.mark.parametrize("body, field", [
    ({"fiscal_year": 2026, "platform_id": PLATFORM, "fee": 1.5, "travel": 0}, "fee"),
    ({"fiscal_year": 2026, "platform_id": PLATFORM, "fee": -1, "travel": 0}, "fee"),
    ({"fiscal_year": 2026, "platform_id": PLATFORM, "fee": "100", "travel": 0}, "fee"),
    ({"fiscal_year": 2026, "platform_id": PLATFORM, "fee": 100}, "travel"),
])
async def test_R_BUD_01_bad_input_gets_a_problem_document(budget, body, field):
    r = await budget.post("/frames", json=body, headers=bureau())
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert field in r.json()["detail"]


async def test_R_BUD_02_share_above_remainder_or_below_use_is_refused_with_409(budget):
    assert (await allocate(budget, fee=100_000, travel=0)).status_code == 201
    r = await budget.put(f"/frames/{FID}/shares/{MEMBER}", json={"amount": 100_001}, headers=representative())
    assert r.status_code == 409 and "unshared" in r.json()["detail"]
    r = await budget.put("/frames/frame-2026-nope/shares/x", json={"amount": 1}, headers=representative())
    assert r.status_code == 404


async def test_R_DSP_08_R_BUD_04_reserve_commit_release_through_kafka_then_close_and_report(budget, infra, ns):
    assert (await allocate(budget, fee=100_000, travel=20_000)).status_code == 201
    assert (await budget.put(f"/frames/{FID}/shares/{MEMBER}", json={"amount": 50_000},
                             headers=representative())).status_code == 200
    cmds = ns.topic("budget.commands")
    await publish(infra.kafka, cmds, [
        ReserveBudget(command_id="c1", frame_id=FID, dispatch_id="d1", member_id=MEMBER, fee=30_000, travel=5_000),
        ReserveBudget(command_id="c2", frame_id=FID, dispatch_id="d2", member_id=MEMBER, fee=30_000, travel=0),
        ReserveBudget(command_id="c3", frame_id=FID, dispatch_id="d3", member_id=OUTSIDER, fee=1, travel=0),
        ReserveBudget(command_id="c4", frame_id=FID, dispatch_id="d4", member_id=REP, fee=40_000, travel=0),
        ReserveBudget(command_id="c5", frame_id=frame_id(2026, "nope"), dispatch_id="d5", member_id=REP, fee=1, travel=0),
        CommitBudget(command_id="k1", frame_id=FID, dispatch_id="d1", fee=25_000, travel=5_000),
        ReleaseBudget(command_id="r4", frame_id=FID, dispatch_id="d4", reason="cancelled"),
    ])
    records = await read_topic(infra.kafka, ns.topic("budget.events"), min_count=9, timeout=30)
    got = answers(records)
    assert got["BudgetReserved"] == {"d1", "d4"} and got["BudgetRefused"] == {"d2", "d3", "d5"}
    assert got["BudgetCommitted"] == {"d1"} and got["BudgetReleased"] == {"d4"}
    refusals = {json.loads(r.value)["payload"]["dispatch_id"]: json.loads(r.value)["payload"]["reason_code"]
                for r in records if json.loads(r.value)["event_type"] == "budget.BudgetRefused"}
    assert refusals == {"d2": "insufficient_balance", "d3": "not_allowed", "d5": "no_frame"}
    f = (await budget.get(f"/frames/{FID}", headers=bureau())).json()
    assert (f["reserved"], f["spent"], f["remaining"]) == (0, 30_000, 90_000)

    r = await budget.get("/reports", params={"by": "member", "fiscal_year": 2026, "format": "csv"}, headers=bureau())
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    by_member = {row["member_id"]: row for row in rows}
    assert by_member[MEMBER]["allocated"] == "50000" and by_member[MEMBER]["spent"] == "30000"
    assert by_member[MEMBER]["remaining"] == "20000" and by_member[REP]["allocated"] == "70000"
    r = await budget.get("/reports", params={"by": "bureau"}, headers=representative())
    assert r.json() == [{"fiscal_year": 2026, "bureau_id": BUREAU, "platform_id": None, "member_id": None,
                         "allocated": 120_000, "reserved": 0, "spent": 30_000, "remaining": 90_000}]
    assert (await budget.get("/reports", headers=dispatch_member())).status_code == 403

    await publish(infra.kafka, cmds, [ReserveBudget(command_id="c6", frame_id=FID, dispatch_id="d6",
                                                    member_id=MEMBER, fee=1_000, travel=0)])
    await read_topic(infra.kafka, ns.topic("budget.events"), min_count=len(records) + 1, timeout=30)
    r = await budget.post(f"/frames/{FID}/close", json={"reason": "FY2026 end"}, headers=auth("ag", ["agency"]))
    assert r.status_code == 200 and [o["dispatch_id"] for o in r.json()["open_reservations"]] == ["d6"]
    assert (await budget.post(f"/frames/{FID}/close", json={}, headers=bureau())).status_code == 409
    await publish(infra.kafka, cmds, [ReserveBudget(command_id="c7", frame_id=FID, dispatch_id="d7",
                                                    member_id=MEMBER, fee=1_000, travel=0)])
    records = await read_topic(infra.kafka, ns.topic("budget.events"), min_count=len(records) + 3, timeout=30)
    last = [json.loads(r.value)["payload"] for r in records if json.loads(r.value)["payload"].get("dispatch_id") == "d7"]
    assert last and last[0]["reason_code"] == "frame_closed"
    chk = (await budget.get(f"/frames/{FID}/check", headers=representative())).json()
    assert chk["consistent"] and chk["violations"] == []


def refused(r: httpx.Response, title: str, *words: str) -> None:
    assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json", r.text
    problem = r.json()
    assert problem["title"] == title and "R-PF-05" in problem["detail"] and all(w in problem["detail"] for w in words)


async def test_R_PF_05_a_bureau_acts_only_on_its_own_block_s_frames_ledgers_checks_and_reports(budget, infra, ns):
    kyushu, nowhere = bureau(OTHER_BUREAU, "kyushu-user"), bureau(None, "nowhere-user")
    assert (await allocate(budget)).status_code == 201  # Kanto's frame, by Kanto's bureau
    await register_platform(infra, ns, "pf-kyushu", block=OTHER_BUREAU)
    r = await budget.post("/frames", json={"fiscal_year": 2026, "platform_id": "pf-kyushu", "fee": 500_000,
                                           "travel": 0}, headers=kyushu)
    assert r.status_code == 201 and r.json()["bureau_id"] == OTHER_BUREAU, r.text
    kyushu_fid = r.json()["frame_id"]

    # every bureau route on Kanto's frame: Kyushu's bureau and a bureau without a block are refused
    calls = [("POST", "/frames", {"fiscal_year": 2026, "platform_id": PLATFORM, "fee": 1, "travel": 1}),
             ("GET", f"/frames/{FID}", None), ("GET", f"/frames/{FID}/ledger", None),
             ("GET", f"/frames/{FID}/check", None), ("POST", f"/frames/{FID}/close", {"reason": "not yours"})]
    for method, path, body in calls:
        refused(await budget.request(method, path, headers=kyushu, json=body), "Not your block", BUREAU, OTHER_BUREAU)
        refused(await budget.request(method, path, headers=nowhere, json=body), "No block", "bureau_id")
    # nothing moved: one allocation in the ledger, the frame open
    f = (await budget.get(f"/frames/{FID}", headers=bureau())).json()
    assert (f["allocated"], f["closed"], f["ledger_entries"]) == (1_200_000, False, 1)
    refused(await budget.get(f"/frames/{kyushu_fid}", headers=bureau()), "Not your block", OTHER_BUREAU)
    # a block is the platform's, as identity announced it: not the caller's to choose, nor a guess for an unknown one
    r = await budget.post("/frames", json={"fiscal_year": 2027, "platform_id": PLATFORM, "fee": 1, "travel": 0,
                                           "bureau_id": OTHER_BUREAU}, headers=bureau())
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json" and BUREAU in r.json()["detail"]
    r = await budget.post("/frames", json={"fiscal_year": 2027, "platform_id": "pf-kyushu", "fee": 1, "travel": 0,
                                           "bureau_id": BUREAU}, headers=bureau())
    refused(r, "Not your block", OTHER_BUREAU)
    r = await budget.post("/frames", json={"fiscal_year": 2026, "platform_id": "pf-unknown", "representative_id": REP,
                                           "fee": 1, "travel": 0}, headers=bureau())
    assert r.status_code == 409 and r.headers["content-type"] == "application/problem+json"

    # reports (JSON and CSV) cover the bureau's block only; asking for another block is refused
    for by in ("platform", "member", "bureau", "fiscal_year"):
        rows = (await budget.get("/reports", params={"by": by}, headers=bureau())).json()
        assert sum(r["allocated"] for r in rows) == 1_200_000, (by, rows)  # Kyushu's 500,000 are not in it
        assert {r["bureau_id"] for r in rows} == ({None} if by == "fiscal_year" else {BUREAU}), (by, rows)
    r = await budget.get("/reports", params={"by": "platform", "format": "csv"}, headers=kyushu)
    assert [(row["platform_id"], row["allocated"]) for row in csv.DictReader(io.StringIO(r.text))] == [("pf-kyushu", "500000")]
    r = await budget.get("/reports", params={"platform_id": PLATFORM}, headers=kyushu)
    assert r.status_code == 200 and r.json() == []
    refused(await budget.get("/reports", params={"bureau_id": BUREAU}, headers=kyushu), "Not your block", BUREAU)
    refused(await budget.get("/reports", params={"format": "csv"}, headers=nowhere), "No block")

    # the agency and operators see every block; the agency closes any frame, the block's bureau its own
    for national in (auth("ag", ["agency"]), auth("op", ["operator"])):
        rows = (await budget.get("/reports", params={"by": "bureau"}, headers=national)).json()
        assert {r["bureau_id"] for r in rows} == {BUREAU, OTHER_BUREAU}
        assert (await budget.get(f"/frames/{kyushu_fid}/ledger", headers=national)).status_code == 200
    assert (await budget.post(f"/frames/{kyushu_fid}/close", json={}, headers=auth("ag", ["agency"]))).status_code == 200
    assert (await budget.post(f"/frames/{FID}/close", json={}, headers=bureau())).status_code == 200


async def test_R_DSP_11_zero_fee_dispatch_is_reserved_and_committed_through_kafka(budget, infra, ns):
    """The expert's own employer with subsidised personnel costs: fee 0 (R-DSP-11). Its reservation of 0 yen must be
    committed, so the dispatch reaches `paid` (its CommitBudget used to be dead-lettered)."""
    assert (await allocate(budget, fee=100_000, travel=20_000)).status_code == 201
    assert (await budget.put(f"/frames/{FID}/shares/{MEMBER}", json={"amount": 50_000},
                             headers=representative())).status_code == 200
    cmds = ns.topic("budget.commands")

    async def answered(kind: str) -> bool:
        records = await read_topic(infra.kafka, ns.topic("budget.events"), min_count=1, timeout=3)
        return "dz" in answers(records).get(kind, set())

    await publish(infra.kafka, cmds, [
        ReserveBudget(command_id="z1", frame_id=FID, dispatch_id="dz", member_id=MEMBER, fee=0, travel=0)])
    await eventually(lambda: answered("BudgetReserved"), timeout=30)
    await publish(infra.kafka, cmds, [CommitBudget(command_id="zk", frame_id=FID, dispatch_id="dz", fee=0, travel=0)])
    await eventually(lambda: answered("BudgetCommitted"), timeout=30)
    assert await read_topic(infra.kafka, ns.topic("budget.commands.dlq"), min_count=1, timeout=2) == []
    assert (await budget.get(f"/frames/{FID}/check", headers=bureau())).json()["consistent"] is True

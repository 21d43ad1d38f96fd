"""EBPM reports (R-REC-07) on the running dispatch service, from read models kept by events: a bureau sees its own
block only, a block with fewer than 5 businesses is suppressed, the CSV downloads with its BOM and bilingual header;
the budget service's execution report answers a bureau for its block."""
from __future__ import annotations

import csv
import io
import uuid
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import httpx
from aiokafka import AIOKafkaProducer
from pymongo import AsyncMongoClient

from contracts import Envelope
from contracts.events.dispatch import DispatchStatusChanged
from contracts.events.identity import BusinessProfileChanged, BusinessRegistered, PlatformMember, PlatformRegistered
from contracts.events.budget import CommitBudget, ReserveBudget, frame_id
from tests.integration.budget_helpers import (BUREAU, OTHER_BUREAU, PLATFORM, REP, bureau, dispatch_member, publish,
                                              register_platform, representative)
from tests.support import eventually, token


def auth(sub: str, *roles: str, **claims) -> dict:
    return {"authorization": f"Bearer {token(sub=sub, roles=list(roles), ttl=1800, **claims)}"}


async def produce_as(infra, ns, messages, producer: str) -> None:
    p = AIOKafkaProducer(bootstrap_servers=infra.kafka)
    await p.start()
    try:
        for m in messages:
            env = Envelope.wrap(m, producer=producer)
            await p.send_and_wait(ns.topic(m.topic), env.model_dump_json().encode(), key=m.key().encode())
    finally:
        await p.stop()


async def test_R_REC_07_bureau_sees_its_block_small_blocks_suppressed_csv_downloads(infra, ns, services):
    svc = services("dispatch", OUTCOME_SWEEP_SECONDS="0.5")
    u = uuid.uuid4().hex[:6]
    block_a, block_b = f"kanto-{u}", f"tohoku-{u}"
    plat_a, plat_b = f"pf-a-{u}", f"pf-b-{u}"
    platforms = [PlatformRegistered(platform_id=pid, name=pid, fiscal_year=2026, bureau_id=b,
                                    representative_id=f"org-{pid}",
                                    members=[PlatformMember(org_id=f"org-{pid}", member_role="representative")])
                 for pid, b in ((plat_a, block_a), (plat_b, block_b))]
    biz_a = [f"biz-a-{u}-{i}" for i in range(9)]
    biz_b = [f"biz-b-{u}-{i}" for i in range(3)]
    businesses = [BusinessRegistered(business_id=b, name=b, prefecture="東京都", industry="製造業", employees=10)
                  for b in biz_a + biz_b]
    await produce_as(infra, ns, [*platforms, *businesses], "identity")
    db = AsyncMongoClient(infra.mongo)[ns.db("dispatch")]

    async def identity_learnt():
        return (await db.platforms.count_documents({"_id": {"$in": [plat_a, plat_b]}}) == 2
                and await db.businesses.count_documents({"industry": "製造業"}) == 12)
    await eventually(identity_learnt, timeout=60)
    events = [DispatchStatusChanged(dispatch_id=f"dsp-{b}", status="paid", route="B", fiscal_year=2026, business_id=b,
                                    expert_id=f"exp-{u}", platform_id=plat_a if b in biz_a else plat_b)
              for b in biz_a + biz_b]
    await produce_as(infra, ns, events, "dispatch")

    async def dispatches_learnt():   # in the worklist, and counted for the reports (R-OPS-03)
        ids = biz_a + biz_b
        return (await db.worklist.count_documents({"_id": {"$in": [e.dispatch_id for e in events]}}) == 12
                and await db.ebpm_businesses.count_documents({"_id": {"$in": ids}, "cells": {"$exists": True}}) == 12
                and await db.ebpm_dirty.count_documents({"_id": {"$in": ids}}) == 0)
    await eventually(dispatches_learnt, timeout=60)

    params = {"by": ["fiscal_year", "block", "industry"], "fiscal_year": 2026}
    async with httpx.AsyncClient(base_url=svc.url, timeout=30) as http:
        r = await http.get("/reports/ebpm/uptake", params=params, headers=auth(f"bur-{u}", "bureau", bureau_id=block_a))
        assert r.status_code == 200, r.text
        body = r.json()
        assert [row["block"] for row in body["rows"]] == [block_a]           # R-PF-05: its own block only
        row = body["rows"][0]
        assert row["industry"] == "製造業" and not row["suppressed"] and abs(row["businesses"] - 9) <= 2
        assert abs(row["paid"] - 9) <= 2

        national = (await http.get("/reports/ebpm/uptake", params=params, headers=auth(f"ag-{u}", "agency"))).json()
        rows = {row["block"]: row for row in national["rows"]}
        assert rows[block_b]["suppressed"] and rows[block_b]["businesses"] is None   # 3 businesses: no figures
        again = (await http.get("/reports/ebpm/uptake", params=params, headers=auth(f"ag-{u}", "agency"))).json()
        assert again["rows"] == national["rows"]                               # the same data, the same figures

        r = await http.get("/reports/ebpm/uptake", params={**params, "format": "csv"},
                           headers=auth(f"ag-{u}", "agency"))
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        assert r.content.startswith(b"\xef\xbb\xbf")
        lines = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
        assert lines[0][:3] == ["年度 / fiscal year", "ブロック / block", "業種 / industry"]
        b_line = next(line for line in lines if len(line) > 1 and line[1] == block_b)
        assert b_line[3:] == ["x"] * (len(lines[0]) - 3)

        r = await http.get("/reports/ebpm/uptake", params={**params, "format": "svg"},
                           headers=auth(f"bur-{u}", "bureau", bureau_id=block_a))
        assert r.status_code == 200 and ET.fromstring(r.text).tag.endswith("svg")

        r = await http.get("/reports/ebpm/uptake", headers=auth(f"bur-{u}", "bureau"))       # a bureau with no block
        assert r.status_code == 403

        # an industry learnt from identity moves the businesses' counted cells (R-OPS-03: counters kept by events)
        await produce_as(infra, ns, [BusinessProfileChanged(business_id=b, profile_version=2, changed=["industry"],
                                                            name=b, prefecture="東京都", industry="小売業", employees=10)
                                     for b in biz_a], "identity")

        async def moved():
            body = (await http.get("/reports/ebpm/uptake", params=params,
                                   headers=auth(f"bur-{u}", "bureau", bureau_id=block_a))).json()
            return [row["industry"] for row in body["rows"]] == ["小売業"]
        await eventually(moved, timeout=60)

        # outcomes (R-REC-08 surveys, as dispatch schedules them when a dispatch is paid): 7 in block A, 3 in block B
        now = datetime.now(UTC)
        await db.outcome_surveys.insert_many([
            {"_id": f"dsp-{b}:3", "dispatch_id": f"dsp-{b}", "months": 3, "business_id": b, "fiscal_year": 2026,
             "block": block_a if b in biz_a else block_b, "field": "sales_channels", "due_at": now,
             "answered_at": now if i % 3 else None, "results": i % 3 == 1, "tally": "pending", "tally_rev": 1}
            for i, b in enumerate(biz_a[:7] + biz_b)])   # as the service writes them: pending for the counters

        async def surveys_counted():
            return await db.outcome_surveys.count_documents({"business_id": {"$in": biz_a + biz_b},
                                                             "tally": "done"}) == 10
        await eventually(surveys_counted, timeout=60)
        out = (await http.get("/reports/ebpm/outcomes", params={"by": ["fiscal_year", "block"], "fiscal_year": 2026},
                              headers=auth(f"bur-{u}", "bureau", bureau_id=block_a))).json()
        assert [row["block"] for row in out["rows"]] == [block_a]
        assert not out["rows"][0]["suppressed"] and abs(out["rows"][0]["businesses"] - 7) <= 2
        out = (await http.get("/reports/ebpm/outcomes", params={"by": ["block"], "fiscal_year": 2026},
                              headers=auth(f"ag-{u}", "agency"))).json()
        assert {row["block"]: row["suppressed"] for row in out["rows"]} == {block_a: False, block_b: True}
        # an institution sees its own requests only: these were route B, requested by no institution
        org = auth(f"inst-{u}", "institution", orgs=[{"org_id": f"org-{u}"}])
        assert (await http.get("/reports/ebpm/outcomes", headers=org)).json()["rows"] == []
        assert (await http.get("/reports/ebpm/uptake", headers=org)).json()["rows"] == []


async def test_R_REC_07_budget_execution_per_block_near_real_time_small_blocks_suppressed(infra, ns, services):
    svc = services("budget")
    await register_platform(infra, ns, PLATFORM, BUREAU)
    await register_platform(infra, ns, "pf-2", OTHER_BUREAU)
    async with httpx.AsyncClient(base_url=svc.url, timeout=30) as http:
        for pid, block in ((PLATFORM, BUREAU), ("pf-2", OTHER_BUREAU)):
            r = await http.post("/frames", json={"fiscal_year": 2026, "platform_id": pid, "fee": 1_000_000,
                                                 "travel": 0, "reason": "FY2026"}, headers=bureau(block))
            assert r.status_code == 201, r.text
        cmds = [ReserveBudget(command_id=f"c{i}", frame_id=frame_id(2026, PLATFORM), dispatch_id=f"d{i}",
                              member_id=REP, fee=50_000 + 1_000 * i, travel=0) for i in range(7)]
        cmds += [CommitBudget(command_id=f"k{i}", frame_id=frame_id(2026, PLATFORM), dispatch_id=f"d{i}",
                              fee=40_000, travel=2_000) for i in range(4)]
        cmds += [ReserveBudget(command_id=f"x{i}", frame_id=frame_id(2026, "pf-2"), dispatch_id=f"x{i}",
                               member_id=REP, fee=70_000, travel=0) for i in range(2)]
        await publish(infra.kafka, ns.topic("budget.commands"), cmds)
        true_reserved = sum(50_000 + 1_000 * i for i in range(4, 7))

        async def booked():
            r = await http.get(f"/frames/{frame_id(2026, PLATFORM)}", headers=bureau())
            return r.json()["spent"] == 4 * 42_000 and r.json()["reserved"] == true_reserved
        await eventually(booked, timeout=30)

        r = await http.get("/reports/ebpm/execution", headers=bureau())        # a bureau: its own block only
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["scope"] == {"block": BUREAU} and [row["block"] for row in body["rows"]] == [BUREAU]
        row = body["rows"][0]
        assert not row["suppressed"] and abs(row["businesses"] - 7) <= 2 and row["allocated"] == 1_000_000
        top_reserved = 56_000   # the largest single dispatch's figure bounds the perturbation
        assert 0.5 * top_reserved <= abs(row["reserved"] - true_reserved) < top_reserved
        assert 0.5 * 42_000 <= abs(row["committed"] - 4 * 42_000) < 42_000
        national = (await http.get("/reports/ebpm/execution", headers=auth("ag", "agency"))).json()
        rows = {row["block"]: row for row in national["rows"]}
        assert rows[OTHER_BUREAU]["suppressed"] and rows[OTHER_BUREAU]["reserved"] is None   # 2 dispatches
        r = await http.get("/reports/ebpm/execution", params={"format": "csv"}, headers=auth("ag", "agency"))
        assert r.status_code == 200 and r.content.startswith(b"\xef\xbb\xbf")
        assert r.content.decode("utf-8-sig").splitlines()[0].startswith("年度 / fiscal year,ブロック / block,")
        r = await http.get("/reports/ebpm/execution", params={"format": "svg"}, headers=bureau())
        assert ET.fromstring(r.text).tag.endswith("svg")
        assert (await http.get("/reports/ebpm/execution", headers=dispatch_member())).status_code == 403
        assert (await http.get("/reports/ebpm/execution", headers=representative())).status_code == 200

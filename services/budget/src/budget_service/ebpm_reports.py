"""EBPM report of budget execution (R-REC-07): allocated, reserved and committed (paid) per fiscal year and block, in
near real time (read from the frames and the append-only ledger at request time), anonymised by `servicekit.ebpm`
and given as JSON, CSV or SVG.

The budget service does not know businesses (its commands carry a dispatch and a member institution) nor their
industry: the contributors of a cell are dispatches — a cell with fewer than 5 dispatches is suppressed, each
dispatch gets the record key — and the report is per fiscal year and block only. Reserved and committed amounts are
perturbed (± 0.5–1.0 × the largest dispatch of the cell); the allocation is the frames' public figure, shown as is
for a cell that is not suppressed.

Who sees what (R-PF-05, R-BUD-05): the agency and operators every block; a bureau its own block; the representative
institution of a platform (with the budget right) its platforms' frames."""
from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query, Request, Response

from budget_service.domain import Balances, report_blocks
from budget_service.http import STAFF, represented_platforms, store_of, svc_of
from servicekit import ebpm, ebpm_keys
from servicekit.auth import Principal, require
from servicekit.problems import Problem

router = APIRouter(tags=["ebpm"])
Dim = Literal["fiscal_year", "block"]
LABELS = {"fiscal_year": ("年度", "fiscal year"), "block": ("ブロック", "block"),
          "businesses": ("派遣件数", "dispatches"), "allocated": ("配分額（円）", "allocated, yen")}
MEASURES = (ebpm.Measure("reserved", "sum", "予約額（円）", "reserved, yen"),
            ebpm.Measure("committed", "sum", "執行額（円）", "committed (paid), yen"))
NOTES = ("Contributors are dispatches (the budget service does not know businesses or their industry): the column "
         "'businesses' counts dispatches, a cell under 5 dispatches is suppressed, and there is no industry "
         "dimension.", "Near real time: computed from the frames and the ledger at the time of the request.")


@router.get("/reports/ebpm/execution", summary="EBPM: budget allocated, reserved and committed per fiscal year and "
            "block, near real time; cells under 5 dispatches suppressed, amounts perturbed (R-REC-07)",
            responses={200: {"content": {"text/csv": {}, "image/svg+xml": {}}}})
async def execution(request: Request, by: list[Dim] | None = Query(None, description="dimensions (repeat)"),
                    fiscal_year: int | None = Query(None, ge=2000, le=2100),
                    format: Literal["json", "csv", "svg"] = "json",
                    chart: Literal["businesses", "reserved", "committed", "allocated"] = "committed",
                    p: Principal = Depends(require(*STAFF, "institution"))):
    dims = tuple(dict.fromkeys(by or ["fiscal_year", "block"]))
    query: dict = {} if fiscal_year is None else {"fiscal_year": fiscal_year}
    block, problem = report_blocks(p.roles, p.bureau_id, None)  # R-PF-05: a bureau: its own block only
    if problem:
        raise Problem(403, "Not your block" if p.bureau_id else "No block", problem)
    if block is not None:
        query["bureau_id"] = block
    scope: dict = {"block": block} if block else {}
    if not p.roles & set(STAFF):
        own = represented_platforms(p)
        if not own:
            raise Problem(403, "Forbidden", "EBPM budget reports are for bureaus, the agency, operators and the "
                          "representatives of a platform.")
        query["platform_id"] = {"$in": sorted(own)}
        scope = {"platforms": sorted(own)}
    store = store_of(request)
    frames = {d["_id"]: d async for d in store.frames.find(query, {"fiscal_year": 1, "bureau_id": 1, "balances": 1})}
    per: dict[tuple, dict] = {}   # (frame, dispatch) -> figures
    async for e in store.ledger_col.find({"frame_id": {"$in": sorted(frames)}, "dispatch_id": {"$ne": None}},
                                         {"frame_id": 1, "dispatch_id": 1, "reserved": 1, "spent_fee": 1,
                                          "spent_travel": 1}):
        if not e.get("dispatch_id"):
            continue
        f = per.setdefault((e["frame_id"], e["dispatch_id"]), {"reserved": 0, "committed": 0})
        f["reserved"] += e.get("reserved", 0)
        f["committed"] += e.get("spent_fee", 0) + e.get("spent_travel", 0)
    table = ebpm.Table(dims, MEASURES, await ebpm_keys.params(svc_of(request).db, svc_of(request).settings), labels=dict(LABELS))

    def key(frame: dict) -> tuple:
        row = {"fiscal_year": frame["fiscal_year"], "block": frame.get("bureau_id") or "—"}
        return tuple(row[d] for d in dims)

    for (frame_id, dispatch_id), f in per.items():
        table.add(key(frames[frame_id]), f"dispatch:{dispatch_id}", reserved=f["reserved"], committed=f["committed"])
    allocated: dict[tuple, int] = {}
    for frame in frames.values():
        allocated[key(frame)] = allocated.get(key(frame), 0) + Balances.from_dict(frame.get("balances", {})).allocated
    report = table.publish()
    report["measures"].insert(1, "allocated")
    for r in report["rows"]:
        r["allocated"] = None if r["suppressed"] else allocated.get(tuple(r[d] for d in dims), 0)
    t = report["total"]
    t["allocated"] = None if t["suppressed"] else sum(allocated.values())
    body, media = ebpm.render(table, report, format, chart=chart, title="予算執行 / budget execution", notes=NOTES)
    if format == "json":
        return {**body, "scope": scope or {"national": True}}
    return Response(body, media_type=media, headers={"content-disposition": 'attachment; filename="ebpm-execution.csv"'}
                    if format == "csv" else {})

"""HTTP handlers of the budget service: allocation, shares, frame detail, ledger, check, close and reports.

Least privilege by place (R-PF-05): a frame belongs to the block of its platform, as identity announced it
(PlatformRegistered.bureau_id, kept in the `platforms` read model and stored on the frame at allocation). A bureau
account (the token's `bureau_id`) allocates, changes, reads, checks and closes only frames of its own block, and
its reports cover its block only; a bureau token without a block is refused. The agency and operators see every
block."""
from __future__ import annotations

import csv
import io
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field, StrictInt

from contracts.events.budget import FrameAllocated, FrameClosed, ShareChanged, frame_id as make_frame_id
from contracts.vocab import MemberRole, Right
from servicekit.auth import Principal, require
from servicekit.problems import Problem

from budget_service.domain import Balances, Frame, place_problem, recompute, report_blocks
from budget_service.store import Conflict, FrameStore, Loaded, now

router = APIRouter(tags=["budget"])
STAFF = ("bureau", "agency", "operator")
# --- request / response models ------------------------------------------------------------------------
class AllocateRequest(BaseModel):
    fiscal_year: int = Field(ge=2000, le=2100, description="Japanese fiscal year (April–March)")
    platform_id: str = Field(min_length=1, max_length=100)
    fee: StrictInt = Field(ge=0, le=10**12, description="fee allocation, whole yen")
    travel: StrictInt = Field(ge=0, le=10**12, description="travel allocation, whole yen")
    representative_id: str | None = Field(default=None, max_length=100,
                                          description="the platform's representative; if given, it must be that one")
    bureau_id: str | None = Field(default=None, max_length=100,
                                  description="the platform's bureau (block); if given, it must be that one (R-PF-05)")
    reason: str = Field(default="", max_length=500)


class ShareRequest(BaseModel):
    amount: StrictInt = Field(ge=0, le=10**12, description="the member's share, whole yen")
    reason: str = Field(default="", max_length=500)


class ReasonRequest(BaseModel):
    reason: str = Field(default="", max_length=500)


class MemberBalance(BaseModel):
    member_id: str
    holds: Literal["share", "unshared remainder"]
    allocated: int
    reserved: int
    spent: int
    available: int


class OpenReservation(BaseModel):
    dispatch_id: str
    member_id: str
    amount: int


class FrameView(BaseModel):
    frame_id: str
    fiscal_year: int
    platform_id: str
    bureau_id: str | None
    representative_id: str
    closed: bool
    allocated_fee: int
    allocated_travel: int
    allocated: int
    shared: int
    reserved: int
    spent: int
    remaining: int
    members: list[MemberBalance]
    open_reservations: list[OpenReservation]
    ledger_entries: int


class CloseResult(BaseModel):
    frame_id: str
    closed: bool
    open_reservations: list[OpenReservation]


class LedgerLine(BaseModel):
    seq: int
    kind: str
    actor: str
    why: str
    at: str
    member_id: str | None
    dispatch_id: str | None
    command_id: str | None
    fee: int
    travel: int
    share: int
    reserved: int
    spent_fee: int
    spent_travel: int


class LedgerPage(BaseModel):
    frame_id: str
    total: int
    entries: list[LedgerLine]
    next_offset: int | None = Field(None, description="the offset of the next page; none after the last entry")


class CheckResult(BaseModel):
    frame_id: str
    consistent: bool = Field(description="balances recomputed from the ledger equal the stored balances (R-BUD-05)")
    stored: dict
    recomputed: dict
    ledger_entries: int
    violations: list[str]


class ReportRow(BaseModel):
    fiscal_year: int
    bureau_id: str | None = None
    platform_id: str | None = None
    member_id: str | None = None
    allocated: int
    reserved: int
    spent: int
    remaining: int


# --- helpers ---------------------------------------------------------------------------------------
def store_of(request: Request) -> FrameStore:
    return request.app.state.frame_store


def svc_of(request: Request):
    return request.app.state.service


def represented_platforms(p: Principal) -> set[str]:
    """Platforms for which the caller acts as representative with the budget right (R-PF-04)."""
    return {o.get("platform_id") for o in p.orgs if o.get("member_role") == MemberRole.REPRESENTATIVE
            and Right.MANAGE_BUDGET in o.get("rights", ())}


def must_represent(p: Principal, platform_id: str) -> None:
    if "institution" not in p.roles or platform_id not in represented_platforms(p):
        raise Problem(403, "Forbidden", f"Only staff of the representative institution of platform {platform_id}, "
                      "with the budget right, may do this.")


def in_place(p: Principal, block: str | None = None, *, any_block: bool = False) -> None:
    """R-PF-05: refuses a bureau acting outside its block (or without one); see contracts.vocab.place_problem."""
    if problem := place_problem(p.roles, p.bureau_id, block, any_block=any_block):
        raise Problem(403, "Not your block" if p.bureau_id else "No block", problem)


async def frame_block(request: Request, frame: Frame) -> str | None:
    """The block a frame belongs to: stored with it at allocation, else (older frames) its platform's, as identity
    announced it."""
    if frame.bureau_id:
        return frame.bureau_id
    platform = await store_of(request).platforms.find_one({"_id": frame.platform_id}, {"bureau_id": 1})
    return (platform or {}).get("bureau_id")


async def may_view(request: Request, p: Principal, frame: Frame, *, members_too: bool) -> None:
    platform_id = frame.platform_id
    if p.roles & set(STAFF):
        in_place(p, await frame_block(request, frame))
        return
    if "institution" in p.roles:
        if platform_id in represented_platforms(p):
            return
        if members_too and p.orgs_with(Right.MANAGE_BUDGET, platform_id):
            return
    raise Problem(403, "Forbidden", f"You may not see the budget of platform {platform_id}.")


async def load_or_404(request: Request, frame_id: str, **needs) -> Loaded:
    loaded = await store_of(request).load(frame_id, **needs)
    if loaded is None:
        raise Problem(404, "Not found", f"No budget frame {frame_id} has been allocated.")
    return loaded


async def run(request: Request, frame_id: str, decide, **needs):
    try:
        return await store_of(request).mutate(frame_id, decide, **needs)
    except Conflict:
        raise Problem(409, "Busy", "The frame was changing at the same moment; please try again.") from None


def view(f: Frame) -> FrameView:
    b = f.balances
    rep = f.representative_id
    holders = sorted(set(b.shares) | set(b.reserved) | set(b.spent_fee) | set(b.spent_travel))
    members = [MemberBalance(member_id=rep, holds="unshared remainder", allocated=b.allocated - b.shared,
                             reserved=b.reserved.get(rep, 0), spent=b.spent(rep), available=f.available(rep))]
    members += [MemberBalance(member_id=m, holds="share", allocated=b.shares.get(m, 0), reserved=b.reserved.get(m, 0),
                              spent=b.spent(m), available=f.available(m)) for m in holders if m != rep]
    return FrameView(frame_id=f.frame_id, fiscal_year=f.fiscal_year, platform_id=f.platform_id, bureau_id=f.bureau_id,
                     representative_id=rep, closed=f.closed, allocated_fee=b.allocated_fee,
                     allocated_travel=b.allocated_travel, allocated=b.allocated, shared=b.shared,
                     reserved=b.reserved_total, spent=b.spent_total, remaining=b.remaining, members=members,
                     open_reservations=open_list(f), ledger_entries=f.entry_count + len(f.new_entries))


def open_list(f: Frame) -> list[OpenReservation]:
    return [OpenReservation(dispatch_id=r.dispatch_id, member_id=r.member_id, amount=r.amount)
            for r in sorted(f.reservations.values(), key=lambda r: r.dispatch_id)]


# --- allocation (R-BUD-01) -------------------------------------------------------------------------------
@router.post("/frames", response_model=FrameView, status_code=200,
             summary="Bureau allocates (or changes) a platform's frame for a fiscal year (R-BUD-01), only in its own block "
                     "(R-PF-05)")
async def allocate(body: AllocateRequest, request: Request, response: Response,
                   p: Principal = Depends(require("bureau"))) -> FrameView:
    in_place(p, any_block=True)
    platform = await store_of(request).platforms.find_one({"_id": body.platform_id})
    if platform is None:
        raise Problem(409, "Platform not known yet", f"The budget service has not learnt platform {body.platform_id} "
                      "from identity yet, so neither its block nor its representative is known (R-PF-05, R-BUD-01); "
                      "try again in a moment.")
    block, rep = platform.get("bureau_id"), platform["representative_id"]
    in_place(p, block)
    if body.bureau_id is not None and body.bureau_id != block:
        raise Problem(422, "Not the platform's block", f"Platform {body.platform_id} belongs to block {block}, "
                      f"not {body.bureau_id}.")
    if body.representative_id is not None and body.representative_id != rep:
        raise Problem(422, "Not the representative", f"The representative of platform {body.platform_id} is "
                      f"{rep}, not {body.representative_id}.")
    fid = make_frame_id(body.fiscal_year, body.platform_id)
    why = body.reason or f"allocation for fiscal year {body.fiscal_year}"
    svc = svc_of(request)

    async def decide(loaded: Loaded | None):
        if loaded is None:
            f = Frame.allocate(frame_id=fid, fiscal_year=body.fiscal_year, platform_id=body.platform_id,
                               representative_id=rep, bureau_id=block,
                               fee=body.fee, travel=body.travel, actor=p.subject, why=why, at=now())
        else:
            f = loaded.frame
            in_place(p, f.bureau_id or block)
            f.change_allocation(fee=body.fee, travel=body.travel, actor=p.subject, why=why, at=now())
        event = FrameAllocated(frame_id=fid, fiscal_year=f.fiscal_year, platform_id=f.platform_id,
                               representative_id=f.representative_id, fee=body.fee, travel=body.travel)
        return f, [svc.event(event, actor=p.subject)] if f.changed() else [], (f, loaded is None)

    f, created = await run(request, fid, decide)
    if created:
        response.status_code = 201
    return view(f)


# --- shares (R-BUD-02, R-PF-04) -----------------------------------------------------------------------------
async def _share(request: Request, frame_id: str, member_id: str, p: Principal, change) -> FrameView:
    loaded = await load_or_404(request, frame_id)
    must_represent(p, loaded.frame.platform_id)
    role = await store_of(request).member_role(loaded.frame.platform_id, member_id)
    svc = svc_of(request)

    async def decide(current: Loaded | None):
        f = current.frame
        change(f, role)
        event = ShareChanged(frame_id=frame_id, member_id=member_id, amount=f.balances.shares.get(member_id, 0))
        return f, [svc.event(event, actor=p.subject)] if f.changed() else [], f

    return view(await run(request, frame_id, decide))


@router.put("/frames/{frame_id}/shares/{member_id}", response_model=FrameView,
            summary="Representative sets a dispatch-capable member's share (raise or lower) (R-BUD-02)")
async def set_share(frame_id: str, member_id: str, body: ShareRequest, request: Request,
                    p: Principal = Depends(require("institution"))) -> FrameView:
    why = body.reason or f"share of {member_id} set to {body.amount} yen"
    return await _share(request, frame_id, member_id, p, lambda f, role: f.set_share(
        member_id, role, body.amount, actor=p.subject, why=why, at=now()))


@router.post("/frames/{frame_id}/shares/{member_id}/return", response_model=FrameView,
             summary="The unused part of a member's share returns to the representative (R-BUD-02)")
async def return_share(frame_id: str, member_id: str, body: ReasonRequest, request: Request,
                       p: Principal = Depends(require("institution"))) -> FrameView:
    why = body.reason or f"unused share of {member_id} returned"
    return await _share(request, frame_id, member_id, p, lambda f, role: f.return_share(
        member_id, actor=p.subject, why=why, at=now()))


# --- reading ----------------------------------------------------------------------------------------------
@router.get("/frames/{frame_id}", response_model=FrameView, summary="A frame with its balances per holder")
async def get_frame(frame_id: str, request: Request,
                    p: Principal = Depends(require(*STAFF, "institution"))) -> FrameView:
    loaded = await load_or_404(request, frame_id, all_open=True)
    await may_view(request, p, loaded.frame, members_too=True)
    return view(loaded.frame)


@router.get("/frames/{frame_id}/ledger", response_model=LedgerPage,
            summary="The frame's append-only ledger: who changed what and why (R-BUD-05)")
async def get_ledger(frame_id: str, request: Request, offset: int = Query(0, ge=0, le=10**9),
                     limit: int = Query(100, ge=1, le=1000),
                     p: Principal = Depends(require(*STAFF, "institution"))) -> LedgerPage:
    loaded = await load_or_404(request, frame_id)
    await may_view(request, p, loaded.frame, members_too=False)
    entries = await store_of(request).ledger(frame_id, offset, limit)
    total = loaded.frame.entry_count
    nxt = offset + len(entries) if entries and offset + len(entries) < total else None
    return LedgerPage(frame_id=frame_id, total=total, entries=[LedgerLine(**e.to_dict()) for e in entries],
                      next_offset=nxt)


@router.get("/frames/{frame_id}/check", response_model=CheckResult,
            summary="Recomputes the balances from the ledger and compares them with the stored ones (R-BUD-05)")
async def check(frame_id: str, request: Request,
                p: Principal = Depends(require(*STAFF, "institution"))) -> CheckResult:
    frame = (await load_or_404(request, frame_id, all_open=True)).frame
    await may_view(request, p, frame, members_too=False)
    entries = await store_of(request).ledger(frame_id)
    stored, again = frame.balances.normalised(), recompute(entries)
    return CheckResult(frame_id=frame_id, consistent=stored == again and len(entries) == frame.entry_count,
                       stored=stored.to_dict(), recomputed=again.to_dict(), ledger_entries=len(entries),
                       violations=frame.violations())


# --- fiscal-year close ---------------------------------------------------------------------------------------
@router.post("/frames/{frame_id}/close", response_model=CloseResult,
             summary="Fiscal-year close: lists open reservations; the frame refuses new ones")
async def close(frame_id: str, body: ReasonRequest, request: Request,
                p: Principal = Depends(require("bureau", "agency"))) -> CloseResult:
    in_place(p, any_block=True)
    frame = (await load_or_404(request, frame_id)).frame
    in_place(p, await frame_block(request, frame))
    svc = svc_of(request)

    async def decide(loaded: Loaded | None):
        f = loaded.frame
        open_ids = f.close(actor=p.subject, why=body.reason or "fiscal year closed", at=now())
        return f, [svc.event(FrameClosed(frame_id=frame_id, open_reservations=open_ids), actor=p.subject)], f

    f = await run(request, frame_id, decide, all_open=True)
    return CloseResult(frame_id=frame_id, closed=True, open_reservations=open_list(f))


# --- reports (R-BUD-05) ---------------------------------------------------------------------------------------
@router.get("/reports", response_model=list[ReportRow],
            summary="Allocated, reserved, spent and remaining per bureau, platform, member or fiscal year; a bureau "
                    "sees its own block only (R-PF-05); format=csv gives text/csv",
            responses={200: {"content": {"text/csv": {}}}})
async def report(request: Request, by: Literal["platform", "member", "bureau", "fiscal_year"] = "platform",
                 fiscal_year: int | None = Query(None, ge=2000, le=2100), bureau_id: str | None = None, platform_id: str | None = None,
                 format: Literal["json", "csv"] = "json",
                 p: Principal = Depends(require(*STAFF, "institution"))):
    query: dict = {}
    if fiscal_year is not None:
        query["fiscal_year"] = fiscal_year
    block, problem = report_blocks(p.roles, p.bureau_id, bureau_id)  # R-PF-05: a bureau's reports: its block only
    if problem:
        raise Problem(403, "Not your block" if p.bureau_id else "No block", problem)
    if block is not None:
        query["bureau_id"] = block
    if not p.roles & set(STAFF):
        own = represented_platforms(p)
        if not own:
            raise Problem(403, "Forbidden", "Reports are for bureaus, the agency, operators and representatives.")
        if platform_id is not None and platform_id not in own:
            raise Problem(403, "Forbidden", f"You may not see the budget of platform {platform_id}.")
        query["platform_id"] = {"$in": sorted(own & {platform_id} if platform_id else own)}
    elif platform_id is not None:
        query["platform_id"] = platform_id
    rows: dict[tuple, dict] = {}
    cursor = store_of(request).frames.find(query, {"fiscal_year": 1, "bureau_id": 1, "platform_id": 1,
                                                   "representative_id": 1, "balances": 1})
    async for doc in cursor:
        for key, fig in report_lines(doc, by):
            acc = rows.setdefault(key, {"allocated": 0, "reserved": 0, "spent": 0, "remaining": 0})
            for k in acc:
                acc[k] += fig[k]
    fields = {"platform": ("fiscal_year", "bureau_id", "platform_id"), "bureau": ("fiscal_year", "bureau_id"),
              "fiscal_year": ("fiscal_year",), "member": ("fiscal_year", "bureau_id", "platform_id", "member_id")}[by]
    out = [ReportRow(**dict(zip(fields, key)), **fig) for key, fig in sorted(rows.items(), key=lambda kv: str(kv[0]))]
    if format == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow([*fields, "allocated", "reserved", "spent", "remaining"])
        for r in out:
            w.writerow([getattr(r, f) or "" for f in fields] + [r.allocated, r.reserved, r.spent, r.remaining])
        return Response(buf.getvalue(), media_type="text/csv",
                        headers={"content-disposition": f'attachment; filename="budget-by-{by}.csv"'})
    return out


def report_lines(doc: dict, by: str):
    """One frame's figures, keyed by the report's grouping."""
    b = Balances.from_dict(doc.get("balances", {}))
    fy, bureau, platform = doc["fiscal_year"], doc.get("bureau_id"), doc["platform_id"]
    if by == "member":
        rep = doc["representative_id"]
        holders = sorted(set(b.shares) | set(b.reserved) | set(b.spent_fee) | set(b.spent_travel) | {rep})
        for m in holders:
            allocated = b.allocated - b.shared if m == rep else b.shares.get(m, 0)
            yield (fy, bureau, platform, m), {"allocated": allocated, "reserved": b.reserved.get(m, 0),
                                              "spent": b.spent(m), "remaining": allocated - b.used(m)}
        return
    key = {"platform": (fy, bureau, platform), "bureau": (fy, bureau), "fiscal_year": (fy,)}[by]
    yield key, {"allocated": b.allocated, "reserved": b.reserved_total, "spent": b.spent_total,
                "remaining": b.remaining}

"""The public directory and finder (R-POR-07; seed 000: 登録、公表): registered regional platforms with their support
areas and members, and support institutions by region, type (①–⑫), certification and speciality. No token needed:
the gateway lets `GET /api/identity/directory/…` pass (deploy/*/haproxy.cfg).

Read model `directory` {_id: entry key, v: the public document}: kept on every change of an organisation or a platform
(`index_org`, `index_platform`; each writes only entries named by `_id` and records the keys it wrote on the source
document, so stale ones are deleted). The keys are built by the domain (`finder_keys`, `platform_keys`) so that each
query is one `_id` range sorted by `_id` with a limit — the index every MongoDB-wire server serves; no query reads a
collection (R-OPS-03). What the entries hold is the domain's whitelist (`public_institution`, `public_platform`).
"""
from __future__ import annotations

from datetime import date

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from pymongo import DeleteOne, UpdateOne

from contracts.vocab import EXPERT_FIELDS, fiscal_year
from identity_service import domain
from servicekit.paging import decode, encode
from servicekit.problems import Problem

router = APIRouter(prefix="/directory", tags=["directory"])


# --- keeping the read model -------------------------------------------------------------------------------------
async def _replace(db, source, source_id: str, old_keys: list[str], entries: dict[str, dict]) -> None:
    ops = [UpdateOne({"_id": k}, {"$set": {"v": v}}, upsert=True) for k, v in entries.items()]
    ops += [DeleteOne({"_id": k}) for k in old_keys if k not in entries]
    if ops:
        await db.directory.bulk_write(ops, ordered=False)
    await source.update_one({"_id": source_id}, {"$set": {"dir_keys": sorted(entries)}})


async def index_org(db, doc: dict) -> None:
    """The finder entries of an organisation (none unless it is a support institution, R-POR-07)."""
    entries = {}
    if domain.listed(doc.get("kind", "")):
        inst = domain.public_institution(doc)
        entries = {k: inst for k in domain.finder_keys(inst)}
    await _replace(db, db.orgs, doc["_id"], doc.get("dir_keys") or [], entries)


async def index_platform(db, platform_id: str) -> None:
    """The directory entries of a platform, read afresh (call after every change of it or of its members)."""
    doc = await db.platforms.find_one({"_id": platform_id})
    if doc is None:
        return
    ids = [m["org_id"] for m in doc.get("members") or []]
    orgs = {o["_id"]: o async for o in db.orgs.find({"_id": {"$in": ids}}, {"name": 1, "kind": 1, "institution_type": 1})}
    pf = domain.public_platform(doc, orgs)
    await _replace(db, db.platforms, platform_id, doc.get("dir_keys") or [], {k: pf for k in domain.platform_keys(pf)})


async def backfill(db) -> None:
    """At start-up: organisations and platforms recorded before the directory existed (or whose indexing a crash
    interrupted) get their entries. Off the request path; reads only documents without `dir_keys`."""
    async for doc in db.orgs.find({"dir_keys": {"$exists": False}}):
        await index_org(db, doc)
    async for doc in db.platforms.find({"dir_keys": {"$exists": False}}, {"_id": 1}):
        await index_platform(db, doc["_id"])


async def _page(db, prefix: str, cursor: str | None, limit: int) -> tuple[list[dict], str | None]:
    rng = domain.page_range(prefix, decode(cursor) if cursor else None)
    if isinstance(rng, str):
        raise Problem(400, "Bad cursor", rng)
    docs = [d async for d in db.directory.find({"_id": rng}).sort("_id", 1).limit(limit + 1)]
    more = len(docs) > limit
    docs = docs[:limit]
    return [d["v"] for d in docs], encode(docs[-1]["_id"]) if more and docs else None


# --- public API -------------------------------------------------------------------------------------------------
class Area(BaseModel):
    prefectures: list[str]
    municipalities: list[str]


class PublicMember(BaseModel):
    org_id: str | None = Field(description="None for an individual member (a person is never named)")
    name: str | None
    kind: str
    institution_type: int | None
    member_role: str


class PublicPlatform(BaseModel):
    platform_id: str
    name: str
    bureau_id: str
    fiscal_years: list[int]
    registered_this_year: bool = Field(description="registered for the current fiscal year (R-PF-03)")
    area: Area
    members: list[PublicMember]


class PlatformPage(BaseModel):
    items: list[PublicPlatform]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; None on the last page")


class PublicInstitution(BaseModel):
    org_id: str
    name: str
    institution_type: int | None = Field(description="①–⑫ (派遣可能構成機関), None for another support institution")
    institution_type_label: str | None
    dispatch_capable: bool
    certified: bool = Field(description="a certified support institution (認定支援機関)")
    prefecture: str | None
    specialities: list[str]


class InstitutionPage(BaseModel):
    items: list[PublicInstitution]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; None on the last page")


CURSOR = Query(None, max_length=800, description="the `next_cursor` of the previous page (none: the first page)")
LIMIT = Query(20, ge=1, le=100)


def _published(pf: dict) -> PublicPlatform:
    return PublicPlatform(**pf, registered_this_year=domain.current_registration(pf["fiscal_years"],
                                                                                 fiscal_year(date.today())))


def _region(prefecture: str | None) -> str | None:
    if problem := domain.prefecture_problem(prefecture):
        raise Problem(422, "Unknown region", problem)
    return prefecture


@router.get("/platforms", response_model=PlatformPage,
            summary="Registered regional platforms with their support areas and members; public (R-POR-07)")
async def list_platforms(request: Request,
                         prefecture: str | None = Query(None, max_length=10, description="only platforms whose support "
                                                                                         "area covers this prefecture"),
                         cursor: str | None = CURSOR, limit: int = LIMIT) -> PlatformPage:
    items, nxt = await _page(request.app.state.service.db, domain.platform_prefix(_region(prefecture)), cursor, limit)
    return PlatformPage(items=[_published(p) for p in items], next_cursor=nxt)


@router.get("/platforms/{platform_id}", response_model=PublicPlatform,
            summary="One registered platform as published: support area and members; public (R-POR-07)")
async def get_platform(platform_id: str, request: Request) -> PublicPlatform:
    doc = await request.app.state.service.db.directory.find_one({"_id": f"{domain.platform_prefix()}#{platform_id}"})
    if doc is None:
        raise Problem(404, "Not found", f"No registered platform {platform_id}.")
    return _published(doc["v"])


@router.get("/institutions", response_model=InstitutionPage,
            summary="Find support institutions by region, type ①–⑫, certification and speciality; public (R-POR-07)")
async def find_institutions(request: Request,
                            prefecture: str | None = Query(None, max_length=10, description="e.g. 鳥取県"),
                            institution_type: int | None = Query(None, ge=1, le=12, description="①–⑫ as 1–12"),
                            certified: bool | None = Query(None, description="only certified (認定支援機関) or only not"),
                            speciality: str | None = Query(None, max_length=40,
                                                           description=f"one of {', '.join(EXPERT_FIELDS)}"),
                            cursor: str | None = CURSOR, limit: int = LIMIT) -> InstitutionPage:
    if speciality is not None and (problems := domain.speciality_problems([speciality])):
        raise Problem(422, "Unknown speciality", problems[0])
    prefix = domain.finder_prefix(_region(prefecture), institution_type, certified, speciality)
    items, nxt = await _page(request.app.state.service.db, prefix, cursor, limit)
    return InstitutionPage(items=[PublicInstitution(**i) for i in items], next_cursor=nxt)

"""Businesses and their once-only profile (R-ID-02, R-ID-03, R-ANC-04): register once, change with a version history."""
from __future__ import annotations

import time
import uuid
from datetime import UTC, date, datetime
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field, field_validator
from pymongo.errors import DuplicateKeyError

from contracts.events.identity import BindingChanged, BusinessProfileChanged, BusinessRegistered
from contracts.vocab import fiscal_year
from identity_service import accounting_exports, audit, bindings, domain, financials_csv
from servicekit import aggregate, paging
from servicekit.auth import Principal, require
from servicekit.problems import Problem
from servicekit.refusals import Rejected
import servicekit.store

router = APIRouter(tags=["businesses"])
OWNERS = ("business", "founder", "operator")
YEN = 10**15  # bounds of a yen amount: larger than any real figure, small enough to stay exact


class FinancialPeriodIn(BaseModel):
    """One fiscal year's figures in yen (R-ANC-04)."""

    fiscal_year: int = Field(ge=1900, le=2100)
    sales: int | None = Field(default=None, ge=-YEN, le=YEN)
    operating_profit: int | None = Field(default=None, ge=-YEN, le=YEN)
    ordinary_profit: int | None = Field(default=None, ge=-YEN, le=YEN)
    net_income: int | None = Field(default=None, ge=-YEN, le=YEN)
    total_assets: int | None = Field(default=None, ge=-YEN, le=YEN)
    # R-REC-06: what the local benchmark's six indicators need besides the above
    depreciation: int | None = Field(default=None, ge=-YEN, le=YEN, description="減価償却費")
    cash: int | None = Field(default=None, ge=-YEN, le=YEN, description="現預金")
    borrowings: int | None = Field(default=None, ge=-YEN, le=YEN, description="有利子負債")
    receivables: int | None = Field(default=None, ge=-YEN, le=YEN, description="売上債権")
    inventory: int | None = Field(default=None, ge=-YEN, le=YEN, description="棚卸資産")
    payables: int | None = Field(default=None, ge=-YEN, le=YEN, description="買入債務")
    equity: int | None = Field(default=None, ge=-YEN, le=YEN, description="純資産")
    employees: int | None = Field(default=None, ge=0, le=10_000_000, description="従業員数 at the period's end")
    source: str | None = Field(default=None, max_length=200, description="provenance, e.g. 'imported from CSV at …'")


class ProfileChange(BaseModel):
    """Fields of the once-only profile (R-ID-03); in a change, omitted fields stay as they are."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    postal_code: str | None = Field(default=None, pattern=r"^[0-9]{3}-?[0-9]{4}$", description="郵便番号, e.g. 860-0001")
    address: str | None = Field(default=None, min_length=1, max_length=300)
    prefecture: str | None = Field(default=None, min_length=1, max_length=20)
    representative: str | None = Field(default=None, min_length=1, max_length=100, description="代表者名")
    capital: int | None = Field(default=None, ge=0, le=YEN, description="資本金 (yen)")
    industry: str | None = Field(default=None, min_length=1, max_length=100)
    employees: int | None = Field(default=None, ge=0, le=10_000_000)
    financials: list[FinancialPeriodIn] | None = Field(
        default=None, max_length=50, description="per fiscal year; a year given replaces that year's figures, others stay")


class BusinessIn(ProfileChange):
    """Once-only basic data of a business (R-ID-03), entered once."""

    corporate_number: str | None = Field(default=None, description="法人番号, 13 digits; omit for sole proprietors and founders")
    name: str = Field(min_length=1, max_length=200)
    prefecture: str = Field(min_length=1, max_length=20)
    industry: str = Field(min_length=1, max_length=100)
    employees: int = Field(ge=0, le=10_000_000)

    @field_validator("corporate_number")
    @classmethod
    def _valid_corporate_number(cls, v: str | None) -> str | None:
        if v is not None and (problem := domain.corporate_number_problem(v)):
            raise ValueError(problem)
        return v


class ProfileChangeIn(ProfileChange):
    expected_version: int | None = Field(default=None, ge=1, le=10**9, description="refuse the change if the profile moved on since")


class BusinessOut(BaseModel):
    business_id: str
    owner: str = Field(description="the account that registered the business")
    status: str = Field(default="active", description="awaiting_proof (a corporation until the letter's code is "
                        "entered, R-ID-07) or active")
    your_role: str | None = Field(default=None, description="prime, member, or None (delegated institution, operator)")
    proof_expires_at: float | None = Field(default=None, description="when the letter's code expires (awaiting_proof)")
    corporate_number: str | None
    name: str
    postal_code: str | None = None
    address: str | None = None
    prefecture: str
    representative: str | None = None
    capital: int | None = None
    industry: str
    employees: int
    financials: list[FinancialPeriodIn] = []
    version: int
    missing_periods: list[int] = Field(description="R-ANC-04: recent closed fiscal years without figures yet")


class VersionOut(BaseModel):
    version: int
    at: datetime
    by: str
    changed: list[str]
    profile: dict
    source: str | None = Field(default=None, description="where the change came from, e.g. 'imported from CSV at …'")


def _profile(doc: dict) -> dict:
    return {f: doc.get(f) for f in domain.PROFILE_FIELDS}


def business_out(doc: dict, who: Principal | None = None) -> BusinessOut:
    fy = fiscal_year(date.today())
    claim = doc.get("prime_claim") or {}
    return BusinessOut(business_id=doc["_id"], owner=doc["owner"], corporate_number=doc.get("corporate_number"),
                       status=doc.get("status", "active"), your_role=bindings.role_in(doc, who.subject) if who else None,
                       proof_expires_at=claim.get("expires_at") if doc.get("status") == "awaiting_proof" else None,
                       version=doc["version"], **{k: v for k, v in _profile(doc).items() if v is not None},
                       missing_periods=domain.missing_recent_periods(doc.get("financials") or [], fy))


def _check_financials(periods: list[dict]) -> None:
    if problem := domain.financials_problem(periods, fiscal_year(date.today())):
        raise Problem(422, "Invalid financial figures", problem)


@router.post("/businesses", status_code=201, response_model=BusinessOut,
             summary="Register a business's once-only basic data (R-ID-03); a corporation's prime account is then "
                     "proven by the code in a letter posted to the head office (R-ID-07)")
async def register_business(body: BusinessIn, request: Request, who: Principal = Depends(require(*OWNERS))) -> BusinessOut:
    svc = request.app.state.service
    data = body.model_dump()
    data["financials"] = domain.merge_financials([], data["financials"] or [])
    _check_financials(data["financials"])
    business_id = domain.business_id_for(body.corporate_number, uuid.uuid4().hex)
    if body.corporate_number and "operator" not in who.roles:
        return await _apply_for_prime(svc, business_id, data, who)
    now = datetime.now(UTC)
    # a sole proprietor or founder is bound at once: the id is new and theirs (an operator's import binds nobody)
    binds = "operator" not in who.roles
    doc = {"_id": business_id, "owner": who.subject, **data, "version": 1, "created_at": now, "status": "active",
           "prime_id": who.subject if binds else None, "member_ids": [],
           "history": [{"version": 1, "at": now, "by": who.subject, "changed": list(domain.PROFILE_FIELDS),
                        "profile": _profile(data)}]}
    events = [svc.event(BusinessRegistered(**{k: data[k] for k in bindings.REGISTERED_FIELDS}, business_id=business_id),
                        actor=who.subject)]
    if binds:
        events.append(svc.event(BindingChanged(business_id=business_id, account_id=who.subject, role="prime"),
                                actor=who.subject))
    try:
        await svc.insert(svc.db.businesses, doc, events=events)
    except DuplicateKeyError:
        raise Problem(409, "Already registered", f"Business {business_id} is already registered.") from None
    return business_out(doc, who)


async def _apply_for_prime(svc, business_id: str, data: dict, who: Principal) -> BusinessOut:
    """R-ID-07: the applicant becomes the prime account only once the letter's code proves it; until then the
    business is `awaiting_proof` and no other service hears of it."""
    if not data.get("address") or not data.get("postal_code"):
        raise Problem(422, "Where should the letter go?", "A corporation's prime account is proven by a letter to its "
                      "registered head office: give postal_code and address.")
    existing = await svc.db.businesses.find_one({"_id": business_id}, {"history": 0, "_outbox": 0})
    now = time.time()
    if existing is not None and existing.get("prime_id"):
        raise Problem(409, "Already registered", f"Business {business_id} already has a prime account; ask it to "
                      "invite you as a member.")
    claim = (existing or {}).get("prime_claim")
    if domain.claim_open(claim, now) and claim["account_id"] != who.subject:
        raise Problem(409, "Already applied for", f"Another account applied to be the prime account of {business_id}; "
                      "its letter is on the way.")
    if existing is None:
        at = datetime.now(UTC)
        doc = {"_id": business_id, "owner": who.subject, **data, "version": 1, "created_at": at,
               "status": "awaiting_proof", "prime_id": None, "member_ids": [],
               "history": [{"version": 1, "at": at, "by": who.subject, "changed": list(domain.PROFILE_FIELDS),
                            "profile": _profile(data)}]}
        doc["prime_claim"] = await bindings.start_prime_claim(svc, doc, who.subject)
        try:
            await svc.insert(svc.db.businesses, doc)
        except DuplicateKeyError:
            raise Problem(409, "Already applied for", f"{business_id} was registered a moment ago; try again.") from None
        return business_out(doc, who)
    # a new letter (the old one expired, was voided, or the business was imported without a prime account)
    letter_doc = existing if existing.get("status") != "awaiting_proof" else {**existing, **data}
    new_claim = await bindings.start_prime_claim(svc, letter_doc, who.subject)
    update = {"prime_claim": new_claim}
    if existing.get("status") == "awaiting_proof":
        update |= {**data, "owner": who.subject}
    guard = {"_id": business_id, "prime_id": None}
    if claim:
        guard["prime_claim.letter_id"] = claim["letter_id"]
    res = await svc.db.businesses.update_one(guard, {"$set": update})
    if res.matched_count != 1:
        raise Problem(409, "Already applied for", f"{business_id} changed meanwhile; try again.")
    return business_out({**existing, **update}, who)


async def owned_business(request: Request, business_id: str, who: Principal, projection: dict | None = None,
                         scope: str | None = "profile:read") -> dict:
    """The business if the caller acts for it (R-ID-07: its prime or a member; or the account awaiting its proof),
    or holds its delegation for `scope` (R-ID-08; None: an act only the business itself may do); operators see every
    business. 404 otherwise, revealing nothing."""
    doc = await request.app.state.service.db.businesses.find_one({"_id": business_id}, projection or {"history": 0})
    if doc is None or not ("operator" in who.roles or bindings.role_in(doc, who.subject)
                           or (doc.get("status") == "awaiting_proof" and doc.get("owner") == who.subject
                               and scope in ("profile:read", "profile:write"))  # reads; a change is refused: 409
                           or (scope and who.delegation(business_id, scope))):
        raise Problem(404, "Not found", f"No business {business_id} visible to you.")
    return doc


@router.get("/businesses", response_model=list[BusinessOut],
            summary="The businesses you registered, by id; the header X-Next-Cursor pages on")
async def my_businesses(request: Request, response: Response, limit: int = Query(100, ge=1, le=paging.MAX_PAGE),
                        cursor: str | None = Query(None, max_length=300),
                        who: Principal = Depends(require(*OWNERS))) -> list[BusinessOut]:
    db = request.app.state.service.db
    mine = {"$or": [bindings.bound_filter(who.subject), {"owner": who.subject, "status": "awaiting_proof"}]}
    docs, nxt = await paging.page(db.businesses, mine, limit=limit, cursor=cursor, newest_first=False,
                                  projection={"history": 0}, field="_id")
    if nxt:
        response.headers["X-Next-Cursor"] = nxt
    return [business_out(d, who) for d in docs]


@router.get("/businesses/{business_id}", response_model=BusinessOut, summary="Read a business's once-only profile")
async def get_business(business_id: str, request: Request, who: Principal = Depends(require(*OWNERS, "institution"))) -> BusinessOut:
    return business_out(await owned_business(request, business_id, who), who)


@router.patch("/businesses/{business_id}", response_model=BusinessOut,
              summary="Change the profile: a new version, the old one kept in the history (R-ID-03)")
async def change_business(business_id: str, body: ProfileChangeIn, request: Request,
                          who: Principal = Depends(require(*OWNERS, "institution"))) -> BusinessOut:
    svc = request.app.state.service
    doc = await owned_business(request, business_id, who, scope="profile:write")
    if doc.get("status") == "awaiting_proof":
        raise Problem(409, "Not proven yet", "Enter the code from the letter first; the profile can change after that.")
    if body.expected_version is not None and body.expected_version != doc["version"]:
        raise Problem(409, "The profile changed meanwhile",
                      f"You edited version {body.expected_version}; the profile is now at version {doc['version']}.")
    given = body.model_dump(exclude_unset=True, exclude={"expected_version"})
    if none := [k for k, v in given.items() if v is None and k in ("name", "prefecture", "industry", "employees")]:
        raise Problem(422, "A required field cannot be emptied", f"{', '.join(none)} must keep a value.")
    return await _save_change(svc, doc, given, who, expected_version=body.expected_version)


async def _save_change(svc, doc: dict, given: dict, who: Principal, source: str | None = None,
                       expected_version: int | None = None) -> BusinessOut:
    """R-ID-03: a new version of the profile with the `given` fields (financials merged by fiscal year), the old
    one kept in the history (with the change's `source` when it came from an import), and BusinessProfileChanged.
    One compare-and-set (`servicekit.aggregate.update`, one attempt): a change saved meanwhile refuses this one."""
    business_id = doc["_id"]

    def decide(doc: dict) -> aggregate.Change | None:
        if expected_version is not None and expected_version != doc["version"]:
            raise Rejected("conflict", "The profile changed meanwhile",
                           f"You edited version {expected_version}; the profile is now at version {doc['version']}.")
        old = _profile(doc)
        new = {**old, **given}
        if "financials" in given:
            new["financials"] = domain.merge_financials(old.get("financials") or [], given["financials"] or [])
            _check_financials(new["financials"])
        changed = domain.changed_fields(old, new)
        if not changed:
            return None
        version = aggregate.version_of(doc) + 1
        event = svc.event(BusinessProfileChanged(business_id=business_id, profile_version=version, changed=changed,
                                                 corporate_number=doc.get("corporate_number"),
                                                 **{k: new[k] for k in ("name", "prefecture", "industry", "employees",
                                                                        "capital", "financials")}), actor=who.subject)
        entry = {"version": version, "at": servicekit.store.now(), "by": who.subject, "changed": changed, "profile": new,
                 **({"source": source} if source else {})}
        return aggregate.Change(set={k: new[k] for k in changed}, push={"history": entry}, events=[event])

    out = await aggregate.update(
        svc, svc.db.businesses, business_id, decide, actor=who.subject, action="identity.BusinessProfileChanged",
        attempts=1, audit=audit.record,
        busy=Rejected("conflict", "The profile changed meanwhile", "Another change was saved first; reload and try again."))
    return business_out(out.doc, who)


class CsvRowError(BaseModel):
    row: int = Field(description="1 is the header row; 0 the file as a whole")
    column: str | None = Field(description="the column as written in the header; None for the whole row or file")
    problem: str


@router.post("/businesses/{business_id}/financials/import", response_model=BusinessOut,
             summary="Import the financial figures of up to three fiscal years from a CSV file (R-ANC-04, R-REC-06; "
                     "layout in docs/financials-csv.md): the portal's layout, or the journal (仕訳) export of 弥生会計, "
                     "マネーフォワード クラウド会計 or freee会計 summed per fiscal year; all rows or nothing, each bad row "
                     "reported",
             openapi_extra={"requestBody": {"required": True, "content": {"text/csv": {"schema": {
                 "type": "string", "example": "fiscal_year,sales,operating_profit\n2024,120000000,6000000\n"}}}}},
             responses={422: {"description": "problem document with `errors`: [{row, column, problem}] and the "
                                             "`layout` read; nothing was applied"}})
async def import_financials(business_id: str, request: Request,
                            layout: Literal["auto", "portal", "yayoi", "moneyforward", "freee"] = Query(
                                "auto", description="the file's layout; auto: told by its first row"),
                            filename: str | None = Query(None, max_length=100, pattern=r"^[^\x00-\x1f]*$",
                                                         description="the file's name, kept in the provenance"),
                            fiscal_year_start_month: int = Query(
                                4, ge=1, le=12, description="journal layouts: the month the business's fiscal year "
                                                            "starts (FY2024 is the year starting in 2024)"),
                            who: Principal = Depends(require(*OWNERS, "institution"))) -> BusinessOut:
    svc = request.app.state.service
    doc = await owned_business(request, business_id, who, scope="profile:write")
    if doc.get("status") == "awaiting_proof":
        raise Problem(409, "Not proven yet", "Enter the code from the letter first; the profile can change after that.")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in ("text/csv", "application/csv", "text/plain"):
        raise Problem(415, "Send a CSV file", f"The body must be text/csv, not {ctype or 'nothing'}.")
    data = await request.body()
    key = accounting_exports.detect(data) if layout == "auto" else layout
    if key == "portal":
        periods, errors = financials_csv.parse(data, fiscal_year(date.today()))
    else:
        periods, errors = accounting_exports.parse(data, key, date.today(), fiscal_year_start_month)
    if errors:
        raise Problem(422, "The CSV file has errors; nothing was imported",
                      f"{len(errors)} problem(s), first: row {errors[0]['row']}"
                      f"{', column ' + errors[0]['column'] if errors[0]['column'] else ''}: {errors[0]['problem']}",
                      errors=[CsvRowError(**e).model_dump() for e in errors], layout=key)
    now = datetime.now(UTC)
    what = "CSV" if key == "portal" else accounting_exports.LAYOUTS[key].label
    named = f" file {filename}" if filename else ""
    source = f"imported from {what}{named} at {now:%Y-%m-%dT%H:%M:%SZ} by {who.subject}"[:200]
    if key != "portal":
        # a journal gives the profit-and-loss figures only: the year's other figures stay as they were, so the
        # change is made on the version read here (a change saved meanwhile refuses this one)
        kept = {p["fiscal_year"]: p for p in doc.get("financials") or []}
        periods = [{**{k: v for k, v in kept.get(p["fiscal_year"], {}).items() if v is not None and k != "source"},
                    **p} for p in periods]
    periods = [FinancialPeriodIn(**p, source=source).model_dump() for p in periods]
    return await _save_change(svc, doc, {"financials": periods}, who, source=source,
                              expected_version=None if key == "portal" else doc["version"])


@router.get("/businesses/{business_id}/history", response_model=list[VersionOut],
            summary="Every version of the profile, newest first (R-ID-03)")
async def business_history(business_id: str, request: Request, who: Principal = Depends(require(*OWNERS, "institution"))) -> list[VersionOut]:
    doc = await owned_business(request, business_id, who, {"owner": 1, "history": 1, "prime_id": 1, "member_ids": 1,
                                                            "status": 1})
    return [VersionOut(**h) for h in reversed(doc.get("history", []))]

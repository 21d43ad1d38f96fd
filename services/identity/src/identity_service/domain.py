"""Identity rules, pure: no I/O. Rule IDs from ../shared/DOMAIN.md."""
from __future__ import annotations

import re
from dataclasses import dataclass

from contracts.vocab import (DISPATCH_CAPABLE_TYPES, EXPERT_FIELDS, PREFECTURES, RIGHTS, MemberRole,  # noqa: F401
                             bureau_may, place_problem)  # (R-PF-05)

_DIGITS13 = re.compile(r"^[0-9]{13}$")


def corporate_number_check_digit(base12: str) -> int:
    """R-ID-02: check = 9 − (Σ Pn·Qn mod 9), Pn the n-th digit from the right, Qn = 1 (odd n) or 2 (even n)."""
    total = sum(int(d) * (1 if n % 2 else 2) for n, d in enumerate(reversed(base12), start=1))
    return 9 - total % 9


def corporate_number_problem(number: str) -> str | None:
    """Why `number` is not a valid corporate number (法人番号), or None if it is (R-ID-02)."""
    if not _DIGITS13.match(number):
        return "a corporate number has exactly 13 digits (0-9), with no spaces or hyphens"
    if int(number[0]) != corporate_number_check_digit(number[1:]):
        return "the check digit (first digit) does not match the other 12 digits; please re-check the number"
    return None


def business_id_for(corporate_number: str | None, new_id: str) -> str:
    """Corporations are identified by their corporate number; sole proprietors and founders get a new id."""
    return f"corp-{corporate_number}" if corporate_number else f"biz-{new_id}"


# --- accounts (R-ID-01, R-ID-06) ---------------------------------------------------------------
ACTOR_KINDS = {"business", "founder", "expert", "institution", "bureau", "agency", "operator"}
MAX_FAILED_LOGINS = 5
LOCKOUT_SECONDS = 15 * 60


def password_problem(password: str) -> str | None:
    if len(password) < 12:
        return "a password needs at least 12 characters"
    if password.isdigit() or password.isalpha():
        return "a password needs both letters and other characters"
    return None


def login_refusal(status: str, failed: int, locked_until: float | None, now: float) -> str | None:
    """Why an account may not log in now, or None."""
    if status == "revoked":
        return "this account has been revoked"
    if locked_until and now < locked_until:
        return "too many failed attempts; the account is locked for a while"
    return None


def after_failed_login(failed: int, now: float) -> tuple[int, float | None]:
    """(new failure count, locked-until) after one more wrong password."""
    failed += 1
    return (0, now + LOCKOUT_SECONDS) if failed >= MAX_FAILED_LOGINS else (failed, None)


# --- account life (R-ID-10): e-mail verification, password reset, TOTP second factor ------------------
VERIFICATION_TTL = 24 * 3600   # a verification link works for a day
RESET_TTL = 60 * 60            # a password-reset link works for an hour, once
LOGIN_TICKET_TTL = 10 * 60     # between the password and the second factor of one login
TOTP_ENROLMENT_TTL = 10 * 60   # a secret shown for enrolment must be confirmed within this time
MAIL_MIN_INTERVAL = 60         # per account and kind of mail: at most one a minute ...
MAIL_DAILY_LIMIT = 5           # ... and five a day (resend and reset requests cannot flood a mailbox)
TOTP_REQUIRED_ROLES = frozenset({"agency", "bureau", "operator"})
TOTP_STEP_SECONDS = 30         # RFC 6238 defaults: 30 s steps, 6 digits, HMAC-SHA1 (what authenticator apps use)
TOTP_DIGITS = 6
TOTP_DRIFT_STEPS = 1           # one step either side is accepted (clock drift, a code typed as it changed)
RECOVERY_CODE_COUNT = 10


def totp_required(roles) -> bool:
    """R-ID-10: agency, bureau and operator accounts must have a second factor."""
    return bool(TOTP_REQUIRED_ROLES & set(roles))


def login_next_step(*, email_verified: bool, federated: bool, totp_enrolled: bool, roles) -> str:
    """R-ID-10: what a login whose first factor succeeded (password, or the upstream provider) needs next:
    'verify_email' (a password account with an unconfirmed address signs in only after confirming it),
    'totp' (enrolled: the code), 'enrol_totp' (required but not enrolled: enrol now), or 'done'.
    A federated sign-in was proven by the upstream provider, which vouches for the person, so it does not
    wait for our e-mail confirmation; the second factor applies to every way in."""
    if not email_verified and not federated:
        return "verify_email"
    if totp_enrolled:
        return "totp"
    if totp_required(roles):
        return "enrol_totp"
    return "done"


def mail_allowed(sent_at: list[float], now: float) -> bool:
    """R-ID-10: whether another mail of one kind may go to an account that was sent mails at `sent_at`."""
    recent = [t for t in sent_at if now - t < 24 * 3600]
    if recent and now - max(recent) < MAIL_MIN_INTERVAL:
        return False
    return len(recent) < MAIL_DAILY_LIMIT


def mail_history(sent_at: list[float], now: float) -> list[float]:
    """The send times to keep after sending one more now (the last day's)."""
    return [t for t in sent_at if now - t < 24 * 3600] + [now]


def totp_code(secret: str, step: int, digits: int = TOTP_DIGITS) -> str:
    """RFC 6238: the HOTP (RFC 4226, HMAC-SHA1) value of time step `step` for a base32 `secret`."""
    import pyotp

    return pyotp.HOTP(secret, digits=digits).at(step)


def totp_step(now: float) -> int:
    return int(now // TOTP_STEP_SECONDS)


def totp_match(secret: str, code: str, now: float, last_step: int | None) -> int | None:
    """R-ID-10: the time step `code` belongs to if it is right for `now` (± drift) and newer than the last
    step used (RFC 6238 §5.2: a code is accepted once); else None."""
    import hmac

    code = normalised_code(code)
    if len(code) != TOTP_DIGITS or not code.isdigit():
        return None
    current = totp_step(now)
    for step in range(current - TOTP_DRIFT_STEPS, current + TOTP_DRIFT_STEPS + 1):
        if (last_step is None or step > last_step) and hmac.compare_digest(totp_code(secret, step), code):
            return step
    return None


def normalised_code(code: str) -> str:
    """A code as typed, without spaces and hyphens, lower case (recovery codes are printed in groups)."""
    return "".join(c for c in code.strip().lower() if c not in " -\t")


def is_recovery_code(code: str) -> bool:
    """Recovery codes are 16 hex digits (64 bits), a TOTP code 6 decimal digits: the form tells them apart."""
    code = normalised_code(code)
    return len(code) == 16 and all(c in "0123456789abcdef" for c in code)


def expired(expires_at: float | None, now: float) -> bool:
    return expires_at is None or now >= expires_at


# --- OAuth 2.0 / OIDC ------------------------------------------------------------------------
def pkce_matches(verifier: str, challenge: str, method: str) -> bool:
    """RFC 7636 S256 (plain is refused: public clients must not send the verifier in the clear)."""
    import base64
    import hashlib

    if method != "S256" or not 43 <= len(verifier) <= 128:
        return False
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == challenge


def granted_scopes(requested: str | None, allowed: list[str]) -> list[str] | None:
    """The scopes to grant: all allowed if none requested; None if any requested scope is not allowed."""
    if not requested:
        return list(allowed)
    wanted = requested.split()
    return None if set(wanted) - set(allowed) else wanted


# --- organisations and regional platforms (R-PF-01..04) ----------------------------------------
ORG_KINDS = ("institution", "body", "individual")


@dataclass(frozen=True)
class PlatformRules:
    """Programme parameters of platform registration (data, not literals in the rules)."""

    min_member_institutions: int = 4   # R-PF-01
    min_dispatch_types: int = 2        # R-PF-01: "more than one type"
    review_after_years: int = 3        # R-PF-03: after ~3 years a review decides on renewal


PLATFORM_RULES = PlatformRules()


@dataclass(frozen=True)
class Org:
    org_id: str
    kind: str
    institution_type: int | None = None
    name: str = ""


def dispatch_capable(org: Org) -> bool:
    """An institution of one of the types ①–⑫ (派遣可能構成機関)."""
    return org.kind == "institution" and org.institution_type in DISPATCH_CAPABLE_TYPES


def member_role_for(org: Org, representative_id: str) -> MemberRole:
    """R-PF-04: a member's role follows from what it is and whether it represents the platform."""
    if org.org_id == representative_id:
        return MemberRole.REPRESENTATIVE
    if dispatch_capable(org):
        return MemberRole.DISPATCH_MEMBER
    return {"institution": MemberRole.INSTITUTION, "body": MemberRole.BODY}.get(org.kind, MemberRole.INDIVIDUAL)


def rights_of(role: str) -> list[str]:
    """R-PF-04: the rights a member role carries (the token's `orgs[].rights`)."""
    return sorted(RIGHTS[MemberRole(role)])


def platform_problems(members: list[Org], representative_id: str, rules: PlatformRules = PLATFORM_RULES) -> list[str]:
    """Why these members cannot form a registered platform (R-PF-01, R-PF-02); empty if they can."""
    problems = []
    if len({m.org_id for m in members}) != len(members):
        problems.append("an organisation is listed twice among the members")
    institutions = [m for m in members if m.kind == "institution"]
    if len(institutions) < rules.min_member_institutions:
        problems.append(f"a platform needs at least {rules.min_member_institutions} member institutions "
                        f"(R-PF-01); it has {len(institutions)}")
    types = {m.institution_type for m in members if dispatch_capable(m)}
    if len(types) < rules.min_dispatch_types:
        problems.append(f"a platform needs dispatch-capable institutions (①–⑫) of at least {rules.min_dispatch_types} "
                        f"different types (R-PF-01); it has {len(types)}")
    rep = next((m for m in members if m.org_id == representative_id), None)
    if rep is None:
        problems.append("the representative institution must be one of the members")
    elif not dispatch_capable(rep):
        problems.append("the representative institution must be dispatch-capable, of a type ①–⑫ (R-PF-02)")
    return problems


def review_due(registered_years: list[int], last_review_year: int | None, fiscal_year: int,
               rules: PlatformRules = PLATFORM_RULES) -> bool:
    """R-PF-03: a renewal needs a review once the platform has run `review_after_years` years since
    its first registration or its last review."""
    since = last_review_year if last_review_year is not None else min(registered_years)
    return fiscal_year - since >= rules.review_after_years


def renewal_problem(registered_years: list[int], last_review_year: int | None, fiscal_year: int,
                    review_approved: bool | None, rules: PlatformRules = PLATFORM_RULES) -> str | None:
    """R-PF-03: registration lasts one fiscal year; renewal is for a later year, and after ~3 years only
    with a favourable review."""
    if fiscal_year in registered_years:
        return f"the platform is already registered for FY{fiscal_year}"
    if fiscal_year < max(registered_years):
        return f"renewal must be for a fiscal year after FY{max(registered_years)}"
    if review_due(registered_years, last_review_year, fiscal_year, rules):
        if review_approved is None:
            return (f"the platform has been registered for {rules.review_after_years} years: renewal needs a "
                    "review decision (review_approved) first (R-PF-03)")
        if not review_approved:
            return "the review decided against renewal (R-PF-03)"
    return None


def removal_problem(members: list[Org], representative_id: str, org_id: str,
                    rules: PlatformRules = PLATFORM_RULES) -> str | None:
    """A member may leave only if the platform still meets R-PF-01/02 without it."""
    if org_id == representative_id:
        return "the representative institution cannot leave; appoint another representative first"
    remaining = [m for m in members if m.org_id != org_id]
    problems = platform_problems(remaining, representative_id, rules)
    return "without this member " + "; ".join(problems) if problems else None


def memberships_claim(org_id: str, platforms: list[dict], fiscal_year: int) -> list[dict]:
    """R-PF-04: the token's `orgs` claim, one entry per membership of `org_id` in a platform registered
    for `fiscal_year` (a lapsed registration carries no rights)."""
    out = []
    for p in platforms:
        if fiscal_year not in p["fiscal_years"]:
            continue
        for m in p["members"]:
            if m["org_id"] == org_id:
                out.append({"org_id": org_id, "platform_id": p["platform_id"], "member_role": m["member_role"],
                            "rights": rights_of(m["member_role"])})
    return out


# --- finder and directory (R-POR-07) ------------------------------------------------------------
# What the public sees: registered platforms with their support areas and members, and the support institutions
# found by region, type, certification and speciality. Only organisations' public facts are published: never staff
# accounts, never an individual member's name or id (a person), never contact persons.
INSTITUTION_TYPE_LABELS = {
    1: "商工会・都道府県商工会連合会", 2: "商工会議所", 3: "都道府県中小企業団体中央会", 4: "都道府県商店街振興組合連合会",
    5: "都道府県等中小企業支援センター", 6: "信用保証協会", 7: "認定支援機関（一般・公益社団法人、財団法人）",
    8: "認定支援機関（地方銀行・第二地方銀行・信用金庫・信用組合）", 9: "認定支援機関（大学）", 10: "認定支援機関（NPO法人）",
    11: "認定支援機関（その他の法人）", 12: "弁護士会（ひまわりほっとダイヤル）等、派遣実績のある機関",
}
CERTIFIED_TYPES = frozenset({7, 8, 9, 10, 11})  # ⑦–⑪ are certified support institutions (認定支援機関) by definition
MUNICIPALITY_SUFFIXES = ("市", "区", "町", "村")
ANY = "*"


def certified(institution_type: int | None, declared: bool | None) -> bool:
    """R-POR-07: ⑦–⑪ are certified by what they are; any other institution is certified if it says so."""
    return institution_type in CERTIFIED_TYPES or bool(declared)


def certification_problem(kind: str, institution_type: int | None, declared: bool | None) -> str | None:
    """R-POR-07: only a support institution can be certified, and ⑦–⑪ cannot be declared uncertified."""
    if declared is not None and kind != "institution":
        return "only a support institution can be certified (認定支援機関); leave certified out for a body or individual"
    if declared is False and institution_type in CERTIFIED_TYPES:
        return f"an institution of type {institution_type} (⑦–⑪) is a certified support institution by definition"
    return None


def speciality_problems(specialities: list[str]) -> list[str]:
    """R-POR-07: specialities are words of the shared field list (contracts.vocab.EXPERT_FIELDS), each once."""
    problems = [f"unknown speciality '{s}': use one of {', '.join(EXPERT_FIELDS)}"
                for s in dict.fromkeys(specialities) if s not in EXPERT_FIELDS]
    if len(set(specialities)) != len(specialities):
        problems.append("a speciality is listed twice")
    return problems


def prefecture_problem(prefecture: str | None) -> str | None:
    """R-POR-07: a region is one of the 47 prefectures, written as in Japanese (e.g. 鳥取県, 東京都)."""
    if prefecture is not None and prefecture not in PREFECTURES:
        return f"unknown prefecture '{prefecture}': write it as in Japanese, e.g. 鳥取県, 東京都, 北海道"
    return None


def area_problems(prefectures: list[str], municipalities: list[str]) -> list[str]:
    """R-POR-07: a platform's support area is one or more prefectures, optionally narrowed to municipalities
    within them, each written with its prefecture (鳥取県米子市, 東京都千代田区); empty list: nothing wrong."""
    problems = []
    if not prefectures:
        problems.append("a support area names at least one prefecture")
    problems += [p for p in map(prefecture_problem, dict.fromkeys(prefectures)) if p]
    if len(set(prefectures)) != len(prefectures):
        problems.append("a prefecture is listed twice in the support area")
    for m in dict.fromkeys(municipalities):
        pref = next((p for p in prefectures if m.startswith(p)), None)
        rest = m[len(pref):] if pref else ""
        if pref is None:
            problems.append(f"municipality '{m}' is not written with one of the area's prefectures (e.g. 鳥取県米子市)")
        elif not rest or not rest.endswith(MUNICIPALITY_SUFFIXES) or len(rest) < 2:
            problems.append(f"'{m}' is not a municipality: after the prefecture comes a 市, 区, 町 or 村")
    if len(set(municipalities)) != len(municipalities):
        problems.append("a municipality is listed twice in the support area")
    return problems


def listed(kind: str) -> bool:
    """R-POR-07: the finder lists support institutions only; bodies appear as platform members, individuals never by
    name (they are people)."""
    return kind == "institution"


def public_institution(doc: dict) -> dict:
    """R-POR-07: what the public sees of a support institution: its public facts only (whitelist)."""
    t = doc.get("institution_type")
    return {"org_id": doc["_id"], "name": doc.get("name", ""), "institution_type": t,
            "institution_type_label": INSTITUTION_TYPE_LABELS.get(t), "dispatch_capable": t in DISPATCH_CAPABLE_TYPES,
            "certified": certified(t, doc.get("certified")), "prefecture": doc.get("prefecture"),
            "specialities": sorted(doc.get("specialities") or [], key=EXPERT_FIELDS.index)}


def public_member(org: dict | None, member: dict) -> dict:
    """R-POR-07: a platform member as published: an organisation by name and type; an individual member only as
    such (no name, no id); an organisation no longer on record only by its role."""
    if org is None or org.get("kind") == "individual":
        return {"org_id": None, "name": None, "kind": (org or {}).get("kind", "individual"),
                "institution_type": None, "member_role": member["member_role"]}
    return {"org_id": org["_id"], "name": org.get("name", ""), "kind": org["kind"],
            "institution_type": org.get("institution_type"), "member_role": member["member_role"]}


def public_platform(doc: dict, orgs: dict[str, dict]) -> dict:
    """R-POR-07 (seed 000: 登録、公表): a registered platform as published, with its support area and members."""
    area = doc.get("area") or {}
    return {"platform_id": doc["_id"], "name": doc["name"], "bureau_id": doc["bureau_id"],
            "fiscal_years": sorted(doc.get("fiscal_years") or []),
            "area": {"prefectures": area.get("prefectures") or [], "municipalities": area.get("municipalities") or []},
            "members": [public_member(orgs.get(m["org_id"]), m) for m in doc.get("members") or []]}


def _type_key(t: int | None) -> str:
    return f"{t:02d}" if t else "--"


def finder_prefix(prefecture: str | None = None, institution_type: int | None = None, certified_: bool | None = None,
                  speciality: str | None = None) -> str:
    """R-POR-07: the index range of one finder query (None: any). Every query is one `_id` range read."""
    return (f"in|{prefecture or ANY}|{_type_key(institution_type) if institution_type else ANY}|"
            f"{ANY if certified_ is None else int(certified_)}|{speciality or ANY}")


def finder_keys(inst: dict) -> list[str]:
    """R-POR-07: the index entries of a published institution: one per combination of its facts and "any", so every
    filter combination is a prefix; within a prefix, entries sort by name (then id: names may repeat)."""
    keys = []
    for p in dict.fromkeys([ANY, inst.get("prefecture") or ANY]):
        for t in dict.fromkeys([ANY, _type_key(inst.get("institution_type"))]):
            for c in (ANY, str(int(inst["certified"]))):
                for s in [ANY, *inst.get("specialities", [])]:
                    keys.append(f"in|{p}|{t}|{c}|{s}#{inst['name']}#{inst['org_id']}")
    return keys


def platform_prefix(prefecture: str | None = None) -> str:
    return f"pf|{prefecture or ANY}"


def platform_keys(platform: dict) -> list[str]:
    """R-POR-07: the directory entries of a platform: all platforms, and by each prefecture of its support area."""
    return [f"{platform_prefix(p)}#{platform['platform_id']}"
            for p in [ANY, *platform["area"]["prefectures"]]]


def page_range(prefix: str, after: str | None) -> dict | str:
    """R-POR-07 paging: the `_id` range of the page after `after` within `prefix` (an index range, no skip);
    a string (the problem) if `after` is not a cursor of this query."""
    if after is None:
        return {"$gt": prefix + "#", "$lt": prefix + "$"}  # "$" sorts right after "#": exactly the prefix's entries
    if not after.startswith(prefix + "#"):
        return "the cursor belongs to another query; start again without it"
    return {"$gt": after, "$lt": prefix + "$"}


def current_registration(fiscal_years: list[int], fiscal_year: int) -> bool:
    """R-PF-03 as published: a platform is registered this fiscal year if its registration covers it."""
    return fiscal_year in fiscal_years


# --- least privilege by place (R-PF-05): bureau_may, place_problem and NATIONAL_ROLES live in contracts.vocab ------


# --- once-only business profile (R-ID-03, R-ANC-04) ----------------------------------------------
RECENT_PERIODS = 3  # R-ANC-04: the last three periods (直近・前期・前々期)
PROFILE_FIELDS = ("name", "postal_code", "address", "prefecture", "representative", "capital", "industry",
                  "employees", "financials")


def financials_problem(periods: list[dict], current_fiscal_year: int) -> str | None:
    """Why these per-fiscal-year figures cannot be stored, or None (R-ANC-04)."""
    years = [p["fiscal_year"] for p in periods]
    if len(set(years)) != len(years):
        return "each fiscal year may appear only once in the financial figures"
    if future := [y for y in years if y > current_fiscal_year]:
        return f"financial figures for a fiscal year that has not started (FY{future[0]}) cannot be entered"
    return None


def merge_financials(old: list[dict], new: list[dict]) -> list[dict]:
    """New figures replace the same fiscal year's old ones; earlier years are kept (history never shrinks)."""
    by_year = {p["fiscal_year"]: p for p in old} | {p["fiscal_year"]: p for p in new}
    return [by_year[y] for y in sorted(by_year, reverse=True)]


def missing_recent_periods(periods: list[dict], current_fiscal_year: int, n: int = RECENT_PERIODS) -> list[int]:
    """R-ANC-04: which of the last `n` closed fiscal years have no figures yet (for the profile's completeness)."""
    have = {p["fiscal_year"] for p in periods}
    return [y for y in range(current_fiscal_year - 1, current_fiscal_year - 1 - n, -1) if y not in have]


def changed_fields(old: dict, new: dict) -> list[str]:
    """R-ID-03: the profile fields a change touches (recorded in the version history and the event)."""
    return [f for f in PROFILE_FIELDS if old.get(f) != new.get(f)]


# --- consent-based prefill (R-ID-04) ----------------------------------------------------------------
# Which profile fields each client scope opens (data: a new scope is a new row, not new code).
PREFILL_SCOPES: dict[str, tuple[str, ...]] = {
    "prefill:read": ("corporate_number", "name", "postal_code", "address", "prefecture", "representative",
                     "capital", "industry", "employees"),
    "prefill:financials": ("financials",),
}


def prefill_fields(scopes: set[str] | frozenset[str]) -> list[str]:
    """R-ID-04: exactly the fields the client's scopes allow, in a stable order."""
    return [f for scope, fields in PREFILL_SCOPES.items() if scope in scopes for f in fields]


def prefill_view(profile: dict, scopes: set[str] | frozenset[str]) -> dict:
    """R-ID-04: the part of a profile a consented client receives; nothing outside its scopes."""
    return {f: profile.get(f) for f in prefill_fields(scopes)}


# --- data-disclosure requests (R-ANC-05) -------------------------------------------------------------
# action -> (status it applies to, status it leads to); the business decides, and may revoke later
DISCLOSURE_TRANSITIONS: dict[str, tuple[str, str]] = {
    "approve": ("pending", "approved"),
    "reject": ("pending", "rejected"),
    "revoke": ("approved", "revoked"),
}


def disclosure_next(status: str, action: str) -> str | None:
    """R-ANC-05: the request's status after the business's `action`, or None if not possible now."""
    before, after = DISCLOSURE_TRANSITIONS[action]
    return after if status == before else None


def disclosure_visible(status: str) -> bool:
    """R-ANC-05: the institution sees the data only while the request stands approved."""
    return status == "approved"


# --- who the business is (R-ID-07, R-ID-08) ---------------------------------------------------
PROOF_TTL_SECONDS = 14 * 24 * 3600  # the letter's code: two weeks from issue (post takes days)
PROOF_TRIES = 3                     # wrong codes before the claim is locked and a new letter is needed
PROOF_CODE_DIGITS = 8
MAX_DELEGATION_DAYS = 365
MAX_TOKEN_DELEGATIONS = 200          # delegations carried in one access token; more are not listed in it


def proof_code(random_int: int) -> str:
    """The letter's one-time code: PROOF_CODE_DIGITS decimal digits, easy to type from paper."""
    return f"{random_int % 10**PROOF_CODE_DIGITS:0{PROOF_CODE_DIGITS}d}"


def proof_outcome(claim: dict | None, account_id: str, code_matches: bool, now: float) -> str:
    """R-ID-07: what a code typed by `account_id` does to a prime claim:
    'proven', 'wrong' (one try fewer), 'locked' (the last try failed), or why it is refused:
    'no_claim', 'not_yours', 'expired', 'locked_before'."""
    if not claim:
        return "no_claim"
    if claim["account_id"] != account_id:
        return "not_yours"
    if claim.get("tries_left", 0) <= 0:
        return "locked_before"
    if now > claim["expires_at"]:
        return "expired"
    if code_matches:
        return "proven"
    return "locked" if claim["tries_left"] <= 1 else "wrong"


def claim_open(claim: dict | None, now: float) -> bool:
    """A pending prime claim that still blocks another applicant (not expired, not locked)."""
    return bool(claim) and claim.get("tries_left", 0) > 0 and now <= claim["expires_at"]


def effective_roles(kind: str, roles: list[str], org_id: str | None) -> list[str]:
    """The roles a token carries. 'institution' is not a self-chosen kind: an institution-staff account holds the role
    only once a registered organisation has linked it (R-ID-07, item 3 of the trust issue)."""
    if kind == "institution" and not org_id:
        return [r for r in roles if r != "institution"]
    return list(roles)


def delegation_problem(scopes: list[str], days: int) -> str | None:
    """R-ID-08: scoped and time-limited; sign-off and rating are never delegable (they are not in the vocabulary)."""
    from contracts.vocab import DELEGATION_SCOPES

    if not scopes:
        return "name at least one thing the institution may do for you"
    if unknown := sorted(set(scopes) - set(DELEGATION_SCOPES)):
        return (f"these cannot be delegated: {', '.join(unknown)}; delegable are {', '.join(DELEGATION_SCOPES)} "
                "(signing off visits and rating the expert stay the business's own acts)")
    if not 1 <= days <= MAX_DELEGATION_DAYS:
        return f"a delegation lasts 1 to {MAX_DELEGATION_DAYS} days"
    return None


def business_claim(business_docs: list[dict], account_id: str) -> list[dict]:
    """The token's `biz` claim: each business the account is bound to, with its role."""
    out = []
    for d in business_docs:
        if d.get("prime_id") == account_id:
            out.append({"id": d["_id"], "role": "prime"})
        elif account_id in (d.get("member_ids") or ()):
            out.append({"id": d["_id"], "role": "member"})
    return sorted(out, key=lambda b: b["id"])


def audience(scopes: list[str], first_party: bool, resource: str | None = None) -> str:
    """R-EXT-02 audience per service: a first-party portal token is for every service; a third-party client's token
    for the one service that serves its scopes (RFC 8707: `resource` may name it; a token for scopes of several
    services needs one token per service, each asked for with its `resource`). Raises ValueError (invalid_target)."""
    from contracts.vocab import ALL_SERVICES, SCOPE_SERVICE, service_audience

    if first_party:
        if resource not in (None, ALL_SERVICES):
            raise ValueError("the portal's tokens are for every service; name no resource")
        return ALL_SERVICES
    served = sorted({service_audience(SCOPE_SERVICE.get(s, "identity")) for s in scopes} or
                    {service_audience("identity")})
    if resource is None:
        if len(served) > 1:
            raise ValueError(f"these scopes are served by several APIs: ask one token per resource ({', '.join(served)})")
        return served[0]
    if resource not in served:
        raise ValueError(f"resource must be one of the APIs your scopes open: {', '.join(served)}")
    return resource


def token_scopes(granted: list[str], first_party: bool) -> list[str]:
    """A first-party portal front end's user token also carries `portal` (the user's full rights); a third-party
    client's token carries exactly the scopes the user granted it, never `portal`."""
    from contracts.vocab import PORTAL_SCOPE

    scopes = [s for s in granted if s != PORTAL_SCOPE]
    return [*scopes, PORTAL_SCOPE] if first_party else scopes

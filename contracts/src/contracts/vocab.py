"""Shared vocabulary every service speaks: actor roles, platform member roles and their rights,
fiscal years, rating axes, expert fields. Rules that belong to one service live in that service's
domain; only the words (and the R-PF-04 rights table, which the token carries) are shared here.
"""
from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum


class Role(StrEnum):
    """Account kinds (R-ID-01); the token's `roles` claim holds these."""

    BUSINESS = "business"
    FOUNDER = "founder"
    EXPERT = "expert"
    INSTITUTION = "institution"  # staff acting for a support institution
    BUREAU = "bureau"            # regional bureau of economy, trade and industry
    AGENCY = "agency"            # processing agency (事務処理機関)
    OPERATOR = "operator"        # platform operations


class MemberRole(StrEnum):
    """An organisation's role inside a regional platform (R-PF-04)."""

    REPRESENTATIVE = "representative"
    DISPATCH_MEMBER = "dispatch_member"  # other dispatch-capable member (types ①–⑫)
    INSTITUTION = "institution"          # other institution (broad SME support)
    BODY = "body"                        # other body / corporation
    INDIVIDUAL = "individual"


class Right(StrEnum):
    MANAGE_BUDGET = "manage_budget"          # representative: the whole frame; dispatch member: its share
    REQUEST_DISPATCH = "request_dispatch"
    RECOMMEND_EXPERTS = "recommend_experts"
    JOINT_ACTIVITIES = "joint_activities"


# R-PF-04: what each member role may do. The token's `orgs` claim carries the rights of each membership.
RIGHTS: dict[MemberRole, frozenset[Right]] = {
    MemberRole.REPRESENTATIVE: frozenset(Right),
    MemberRole.DISPATCH_MEMBER: frozenset(Right),
    MemberRole.INSTITUTION: frozenset({Right.RECOMMEND_EXPERTS, Right.JOINT_ACTIVITIES}),
    MemberRole.BODY: frozenset({Right.RECOMMEND_EXPERTS, Right.JOINT_ACTIVITIES}),
    MemberRole.INDIVIDUAL: frozenset({Right.JOINT_ACTIVITIES}),
}

# Institution types that may dispatch (派遣可能構成機関), ①–⑫.
DISPATCH_CAPABLE_TYPES = frozenset(range(1, 13))


def fiscal_year(d: date | datetime) -> int:
    """Japanese fiscal year (April–March): 2026-03-31 is FY2025, 2026-04-01 is FY2026."""
    return d.year if d.month >= 4 else d.year - 1


# R-RAT-01: the six axes a business (and a route-A institution) rates, each 1–5.
RATING_AXES = ("communication", "clarity", "expertise", "analysis", "execution", "manners")

# R-RAT-04: the four items institutions evaluate (private until fiscal-year end).
INSTITUTION_EVALUATION_ITEMS = ("issue_handling", "strategy_building", "knowledge", "execution_capability")

# Expert fields: a controlled vocabulary (R-EX-03/05).
EXPERT_FIELDS = ("management", "finance", "tax", "legal", "ip", "sales_channels", "product_development",
                 "it_dx", "business_succession", "hr", "overseas", "manufacturing", "startup", "other")

# The 47 prefectures (都道府県), in the national code order (JIS X 0401): a support area, an institution's region
# and a case's region are named with these words (R-POR-07, R-POR-08).
PREFECTURES = ("北海道", "青森県", "岩手県", "宮城県", "秋田県", "山形県", "福島県", "茨城県", "栃木県", "群馬県", "埼玉県",
               "千葉県", "東京都", "神奈川県", "新潟県", "富山県", "石川県", "福井県", "山梨県", "長野県", "岐阜県", "静岡県",
               "愛知県", "三重県", "滋賀県", "京都府", "大阪府", "兵庫県", "奈良県", "和歌山県", "鳥取県", "島根県", "岡山県",
               "広島県", "山口県", "徳島県", "香川県", "愛媛県", "高知県", "福岡県", "佐賀県", "長崎県", "熊本県", "大分県",
               "宮崎県", "鹿児島県", "沖縄県")

# R-ID-08: what a business may let an institution's staff do for it (代行). Signing off visits and rating the
# expert are never delegable: they stay the business's own acts.
DELEGATION_SCOPES = ("profile:read", "profile:write", "dispatch:request", "dispatch:read")

# Scopes of user tokens. `portal`: the first-party portal front ends act with the user's full rights; a
# third-party client's user token never carries it and reaches only the routes its consented scopes open.
PORTAL_SCOPE = "portal"

# R-EXT-02 audience per service (RFC 8707 resource indicators). A first-party portal token is for every service
# (`ALL_SERVICES`); a third-party client's token is for the one service that serves its scopes, named
# `urn:smeportal:<service>`, and every other service (and the gateway in front of it) refuses it.
ALL_SERVICES = "smeportal"
SCOPE_SERVICE = {"openid": "identity", "profile": "identity", "email": "identity", "prefill:read": "identity",
                 "prefill:financials": "identity", "audit:read": "identity"}


def service_audience(service: str) -> str:
    return f"urn:smeportal:{service}"


# R-PF-05 least privilege by place: the one rule every service applies to bureau accounts (the token's `bureau_id`).
NATIONAL_ROLES = frozenset({"operator", "agency"})  # act on every block (the agency only where its role lets it at all)


def bureau_may(principal_bureau: str | None, block: str | None) -> bool:
    """R-PF-05: a bureau acts on a platform (its frames, ledgers, reports) only if it belongs to the bureau's own
    block. A bureau without a block, or something of no known block, matches nothing."""
    return bool(principal_bureau) and principal_bureau == block


def place_problem(roles, principal_bureau: str | None, blocks=(), *, any_block: bool = False) -> str | None:
    """R-PF-05: why the caller may not act on something of `blocks` (one block, or the blocks of every platform
    concerned; None: of no known block), or None if it may. Operators and the agency act nationally; a bureau only
    within its own block (`any_block`: nothing of a block is concerned yet, e.g. a report it filters to its block),
    and a bureau token without a block on nothing at all. Other roles are not limited by place here (R-PF-04
    decides for institutions)."""
    roles = set(roles)
    if roles & NATIONAL_ROLES or "bureau" not in roles:
        return None
    if not principal_bureau:
        return ("This bureau account carries no block (bureau_id) in its token, so it may act on no block's "
                "platforms, frames or reports (R-PF-05); an operator gives every bureau account its block.")
    if any_block:
        return None
    blocks = (blocks,) if blocks is None or isinstance(blocks, str) else tuple(blocks)
    foreign = sorted({b for b in blocks if b and not bureau_may(principal_bureau, b)})
    if foreign or any(not b for b in blocks):
        where = f"block {', '.join(foreign)}" if foreign else "no known block"
        return (f"This belongs to {where}; a bureau account of block {principal_bureau} acts only on its own "
                "block's platforms, frames and reports (R-PF-05).")
    return None

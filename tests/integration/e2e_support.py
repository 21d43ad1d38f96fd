"""What the end-to-end stories through the gateway share: tokens of a role, platform membership claims, and a
response check that says which call failed and how."""
from __future__ import annotations

import httpx

from contracts.vocab import RIGHTS, MemberRole
from tests.support import token


def bearer(sub: str, *roles: str, orgs=(), **claims) -> dict:
    return {"authorization": f"Bearer {token(sub=sub, roles=list(roles), orgs=list(orgs), ttl=1800, **claims)}"}


def claim(org_id: str, platform_id: str, role: MemberRole) -> dict:
    return {"org_id": org_id, "platform_id": platform_id, "member_role": role.value,
            "rights": sorted(r.value for r in RIGHTS[role])}


async def ok(response: httpx.Response, *codes: int) -> dict:
    assert response.status_code in (codes or (200, 201)), f"{response.request.method} {response.request.url}: " \
                                                          f"{response.status_code} {response.text}"
    return response.json()

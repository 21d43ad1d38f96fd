"""R-OPS-03 / R-OPS-01: lists that used to stop at a fixed count (the mailroom's letters stopped at 500, a business's
disclosure requests at 200, the agency's review queues at 200) page on with a cursor, and what was stored before the
lists were paged is keyed once when the service starts, so paging sees it too."""
from __future__ import annotations

import time
import uuid

import httpx
from pymongo import AsyncMongoClient

from tests.integration.identity_support import bearer, start_identity


async def _pages(http: httpx.AsyncClient, path: str, headers: dict, limit: int) -> list[list[dict]]:
    pages, cursor = [], None
    for _ in range(20):
        r = await http.get(path, headers=headers, params={"limit": limit, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        pages.append(r.json())
        cursor = r.headers.get("x-next-cursor")
        if not cursor:
            return pages
    raise AssertionError("the list never ended")


async def test_R_OPS_03_the_mailroom_pages_through_every_letter_old_and_new_oldest_first(services, infra, ns):
    # 7 letters written before the list was paged: no `key`, as an older version stored them
    client = AsyncMongoClient(infra.mongo)
    t0 = time.time() - 3600
    old = [{"_id": f"ltr-old{i}-{uuid.uuid4().hex[:6]}", "business_id": f"biz-{i}", "account_id": "acc-1",
            "kind": "prime_proof", "status": "to_post", "created_at": t0 + i, "postal_code": "100-0001",
            "address": "東京都千代田区", "pdf": b"%PDF-1.4"} for i in range(7)]
    await client[ns.db("identity")].letters.insert_many(old)
    await client[ns.db("identity")].letters.insert_one({**old[0], "_id": "ltr-posted", "status": "posted"})
    identity = start_identity(services)
    try:
        async with httpx.AsyncClient(base_url=identity.url, timeout=15) as http:
            pages = await _pages(http, "/letters", bearer(), limit=3)
            assert [len(p) for p in pages] == [3, 3, 1]
            ids = [letter["letter_id"] for p in pages for letter in p]
            assert ids == [d["_id"] for d in old]  # every one once, oldest first, the posted one not among them
            # a cursor this list never returned is refused in words, not a 500
            r = await http.get("/letters", headers=bearer(), params={"cursor": "%%%"})
            assert r.status_code == 400 and "cursor" in r.json()["detail"]
        keyed = await client[ns.db("identity")].letters.count_documents({"key": {"$exists": True}})
        assert keyed == 8  # the marker makes the next start skip the pass
        assert await client[ns.db("identity")].migrations.find_one({"_id": "paging-key:letters"})
    finally:
        await client.close()

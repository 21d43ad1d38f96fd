"""Cursor paging for lists that must never stop at a fixed count (R-OPS-01).

Each listed document carries `key`: a string that sorts the list and never changes once written (the time the item
arrived, then its id, so two items never tie). A page asks for `key` below (newest first) or above the last one it
returned, so items that change or arrive while a client pages are neither repeated nor skipped, and every page costs
one indexed range read, however deep it is (no skip).
"""
from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime

from servicekit.problems import Problem

MAX_PAGE = 500


def sort_key(at: datetime, item_id: str) -> str:
    """`20261130T023100.123456Z|<id>`: sorts by time, then id."""
    return f"{at.astimezone(UTC).strftime('%Y%m%dT%H%M%S.%fZ')}|{item_id}"


def encode(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def decode(cursor: str) -> str:
    try:
        key = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode()
    except (ValueError, binascii.Error, UnicodeDecodeError):
        key = ""
    if "|" not in key:
        raise Problem(400, "Bad cursor", "The cursor is not one this list returned; start again without it.")
    return key


async def page(col, filt: dict, *, limit: int, cursor: str | None = None, newest_first: bool = True,
               projection: dict | None = None, field: str = "key") -> tuple[list[dict], str | None]:
    """One page of `col` matching `filt`, ordered by `field` (`key`, or another unique string such as `_id`); the
    cursor of the next page, or None at the end."""
    limit = max(1, min(limit, MAX_PAGE))
    if cursor:
        after = decode(cursor)
        if field != "key":
            after = after.split("|", 1)[1]
        filt = {**filt, field: {"$lt" if newest_first else "$gt": after}}
    docs = [d async for d in col.find(filt, projection).sort(field, -1 if newest_first else 1).limit(limit + 1)]
    more = len(docs) > limit
    docs = docs[:limit]
    if not more:
        return docs, None
    last = docs[-1][field]
    return docs, encode(last if field == "key" else f"{field}|{last}")


async def add_keys(db, col_name: str, at_field: str) -> int:
    """Once per collection (a marker in `migrations` says it is done): gives documents written before their list was
    paged a `key` from their time field (a datetime or epoch seconds) and id. Returns how many were keyed."""
    marker = f"paging-key:{col_name}"
    if await db.migrations.find_one({"_id": marker}, {"_id": 1}):
        return 0
    col, n = db[col_name], 0
    async for d in col.find({"key": {"$exists": False}}, {at_field: 1}):
        at = d.get(at_field)
        if isinstance(at, (int, float)):
            at = datetime.fromtimestamp(at, UTC)
        elif isinstance(at, datetime) and at.tzinfo is None:
            at = at.replace(tzinfo=UTC)  # MongoDB returns naive UTC datetimes
        elif not isinstance(at, datetime):
            at = datetime(1970, 1, 1, tzinfo=UTC)
        await col.update_one({"_id": d["_id"], "key": {"$exists": False}}, {"$set": {"key": sort_key(at, d["_id"])}})
        n += 1
    await db.migrations.update_one({"_id": marker}, {"$set": {"keyed": n, "at": datetime.now(UTC)}}, upsert=True)
    return n

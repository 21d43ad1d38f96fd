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
               projection: dict | None = None) -> tuple[list[dict], str | None]:
    """One page of `col` matching `filt`, ordered by `key`; the cursor of the next page, or None at the end."""
    limit = max(1, min(limit, MAX_PAGE))
    if cursor:
        filt = {**filt, "key": {"$lt" if newest_first else "$gt": decode(cursor)}}
    docs = [d async for d in col.find(filt, projection).sort("key", -1 if newest_first else 1).limit(limit + 1)]
    more = len(docs) > limit
    docs = docs[:limit]
    return docs, encode(docs[-1]["key"]) if more else None

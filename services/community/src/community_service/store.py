"""MongoDB access of the community service. Every list is one `_id` range of an index collection (threads by
category, postings by their filters, a thread's posts, the report queue, a posting's interests), so no request reads
a whole collection however large it grows (R-OPS-03); documents are then read by `_id`."""
from __future__ import annotations

import base64
import binascii
import uuid
from datetime import UTC, datetime

from pymongo.errors import BulkWriteError, DuplicateKeyError

from servicekit.refusals import Rejected

UPPER = "~"  # sorts after every character an index id continues with after its prefix (digits, letters, '|', '.')


def now() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def encode(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode(cursor: str, prefix: str) -> str:
    try:
        key = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode()
    except (ValueError, binascii.Error, UnicodeDecodeError):
        key = ""
    if not key.startswith(prefix):
        raise Rejected("invalid", "Bad cursor", "The cursor is not one this list returned; start again without it.")
    return key


async def page(col, prefix: str, *, after: str | None, limit: int, projection: dict | None = None
               ) -> tuple[list[dict], str | None]:
    """One page of the documents whose `_id` starts with `prefix`, in `_id` order, and the next page's cursor."""
    low = decode(after, prefix) if after else prefix
    filt = {"_id": {"$gt": low, "$lt": prefix + UPPER}}
    docs = [d async for d in col.find(filt, projection).sort("_id", 1).limit(limit + 1)]
    more = len(docs) > limit
    docs = docs[:limit]
    return docs, encode(docs[-1]["_id"]) if more and docs else None


async def by_ids(col, ids: list[str], projection: dict | None = None) -> list[dict]:
    """Documents by id, in the order of `ids` (ids without a document are left out)."""
    if not ids:
        return []
    found = {d["_id"]: d async for d in col.find({"_id": {"$in": ids}}, projection)}
    return [found[i] for i in ids if i in found]


async def put_index(col, ids: list[str], item_id: str) -> None:
    try:
        await col.insert_many([{"_id": i, "item": item_id} for i in ids], ordered=False)
    except (BulkWriteError, DuplicateKeyError):
        pass  # already listed


async def drop_index(col, ids: list[str]) -> None:
    if ids:
        await col.delete_many({"_id": {"$in": ids}})

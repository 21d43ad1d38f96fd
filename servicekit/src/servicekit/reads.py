"""Reads by `_id` that concurrent requests share (the DataLoader pattern).

Under load, many requests read the same collections by `_id` at the same moment: the deny list on every
authenticated request, the expert, the membership, the business's people on every dispatch request. Each
`find_one` is a round trip and a command the database parses, plans and answers on its own. `ByIds` sends
them as one `find({_id: {$in: [...]}})`:

- A caller's ids join the read that goes out next. While a read is out, the ids asked meanwhile wait for it
  to come back and then go out together. One caller alone waits no longer than with its own `find_one`; under
  load the reads grow instead of multiplying.
- A read goes out after every caller in it asked, so it sees every write acknowledged before any of them asked:
  what a caller gets is as fresh as its own `find_one` would have been.
- A failed read fails each of its callers with the driver's error (HTTP answers 503, consumers retry), and the
  next read goes out for the callers that came later.
- `$in` on `_id` is served by the `_id` index on MongoDB and on the local server.
"""
from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

MAX_IDS = 1000  # per read: keeps the statement the local server builds well under SQLite's variable limit


class ByIds:
    """Documents of one collection by `_id`, read together for concurrent callers. `projection`: the fields every
    caller may need (one projection per reader)."""

    def __init__(self, col: AsyncCollection, projection: dict | None = None, max_ids: int = MAX_IDS):
        self.col, self.projection, self.max_ids = col, projection, max_ids
        self._waiting: deque[tuple[list, asyncio.Future]] = deque()
        self._reader: asyncio.Task | None = None

    async def many(self, ids: Iterable[Any]) -> dict[Any, dict]:
        """The documents with these ids that exist, by id. Callers that asked for the same id get the same object:
        read it, do not change it (copy it first)."""
        ids = list(dict.fromkeys(ids))
        if not ids:
            return {}
        answer = asyncio.get_running_loop().create_future()
        self._waiting.append((ids, answer))
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read())
        return await answer

    async def one(self, _id: Any) -> dict | None:
        return (await self.many([_id])).get(_id)

    async def _read(self) -> None:
        while self._waiting:
            batch, wanted = [], set()
            while self._waiting and (not batch or len(wanted) + len(self._waiting[0][0]) <= self.max_ids):
                ids, answer = self._waiting.popleft()
                if not answer.done():  # a caller that gave up (cancelled) is not read for
                    batch.append((ids, answer))
                    wanted.update(ids)
            if not batch:
                continue
            try:
                found = {d["_id"]: d async for d in self.col.find({"_id": {"$in": list(wanted)}}, self.projection)}
            except asyncio.CancelledError:
                for _, answer in batch:
                    answer.cancel()
                for _, answer in self._waiting:
                    answer.cancel()
                raise
            except Exception as e:  # the driver's error, for each caller to handle as its own find_one's
                for _, answer in batch:
                    if not answer.done():
                        answer.set_exception(e)
                continue
            for ids, answer in batch:
                if not answer.done():
                    answer.set_result({i: found[i] for i in ids if i in found})

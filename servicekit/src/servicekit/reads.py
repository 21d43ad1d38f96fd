"""Reads by `_id` and inserts that concurrent requests share (the DataLoader pattern, and group commit).

Under load, many requests read the same collections by `_id` at the same moment: the deny list on every
authenticated request, the expert, the membership, the business's people on every dispatch request. Each
`find_one` is a round trip and a command the database parses, plans and answers on its own. `ByIds` sends
them as one `find({_id: {$in: [...]}})`. Likewise each new dispatch is an insert of its document and one of its free
slot: `Inserts` sends concurrent requests' documents of one collection as one `insert_many`.

- A caller's request joins the command that goes out next. While a command is out, the requests made meanwhile wait
  for it to come back and then go out together. One caller alone waits no longer than with its own command; under
  load the commands grow instead of multiplying.
- A command goes out after every caller in it asked, so a read sees every write acknowledged before any of them
  asked: what a caller gets is as fresh as its own `find_one` would have been. Each inserted document is its own
  atomic write, as with `insert_one`; one refused (a duplicate key) fails only its caller, with the error
  `insert_one` would have raised.
- A failed command fails each of its callers with the driver's error (HTTP answers 503, consumers retry), and the
  next command goes out for the callers that came later.
- `$in` on `_id` is served by the `_id` index on MongoDB and on the local server.
"""
from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError, WriteError

MAX_IDS = 1000  # per read: keeps the statement the local server builds well under SQLite's variable limit
MAX_INSERTS = 500  # documents per shared insert


class Shared:
    """One command at a time for many callers: `ask(item)` waits for the command its item goes out in. A subclass says
    what one command does with its items (`run`: one result or exception per item, in order) and how much an item
    weighs against `limit` per command (`weight`)."""

    def __init__(self, limit: int):
        self.limit = limit
        self._waiting: deque[tuple[Any, asyncio.Future]] = deque()
        self._worker: asyncio.Task | None = None

    def weight(self, item) -> int:
        return 1

    async def run(self, items: list) -> list:
        raise NotImplementedError

    async def ask(self, item):
        answer = asyncio.get_running_loop().create_future()
        self._waiting.append((item, answer))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work())
        return await answer

    async def _work(self) -> None:
        while self._waiting:
            batch, weight = [], 0
            while self._waiting and (not batch or weight + self.weight(self._waiting[0][0]) <= self.limit):
                item, answer = self._waiting.popleft()
                if not answer.done():  # a caller that gave up (cancelled) is not asked for
                    batch.append((item, answer))
                    weight += self.weight(item)
            if not batch:
                continue
            try:
                results = await self.run([item for item, _ in batch])
            except asyncio.CancelledError:
                for _, answer in [*batch, *self._waiting]:
                    answer.cancel()
                raise
            except Exception as e:  # the driver's error, for each caller to handle as its own command's
                results = [e] * len(batch)
            for (_, answer), result in zip(batch, results):
                if answer.done():
                    continue
                if isinstance(result, Exception):
                    answer.set_exception(result)
                else:
                    answer.set_result(result)


class ByIds(Shared):
    """Documents of one collection by `_id`, read together for concurrent callers. `projection`: the fields every
    caller may need (one projection per reader)."""

    def __init__(self, col: AsyncCollection, projection: dict | None = None, max_ids: int = MAX_IDS):
        super().__init__(max_ids)
        self.col, self.projection = col, projection

    async def many(self, ids: Iterable[Any]) -> dict[Any, dict]:
        """The documents with these ids that exist, by id. Callers that asked for the same id get the same object:
        read it, do not change it (copy it first)."""
        ids = list(dict.fromkeys(ids))
        return await self.ask(ids) if ids else {}

    async def one(self, _id: Any) -> dict | None:
        return (await self.many([_id])).get(_id)

    def weight(self, ids: list) -> int:
        return len(ids)

    async def run(self, asked: list[list]) -> list[dict]:
        wanted = list(dict.fromkeys(i for ids in asked for i in ids))
        found = {d["_id"]: d async for d in self.col.find({"_id": {"$in": wanted}}, self.projection)}
        return [{i: found[i] for i in ids if i in found} for ids in asked]


class Inserts(Shared):
    """New documents of one collection, inserted together for concurrent callers (`insert_many`, unordered: each
    document succeeds or fails on its own)."""

    def __init__(self, col: AsyncCollection, max_docs: int = MAX_INSERTS):
        super().__init__(max_docs)
        self.col = col

    async def one(self, doc: dict) -> None:
        """Inserts `doc` (its `_id` set in place if it had none); raises what `insert_one` would: DuplicateKeyError for
        a key taken, WriteError for another refusal, the driver's error when the command failed."""
        await self.ask(doc)

    async def run(self, docs: list[dict]) -> list:
        try:
            await self.col.insert_many(docs, ordered=False)
            return [None] * len(docs)
        except BulkWriteError as e:
            out: list = [None] * len(docs)
            for err in e.details.get("writeErrors", []):
                kind = DuplicateKeyError if err.get("code") == 11000 else WriteError
                out[err["index"]] = kind(err.get("errmsg", "write refused"), err.get("code"), err)
            return out

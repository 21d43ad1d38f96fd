"""servicekit.reads.ByIds on the real MongoDB-wire server: concurrent reads by `_id` go out as one `find`, each caller
gets exactly its own documents, a read sees every write acknowledged before it was asked, and a failed read fails its
callers without stopping the ones that come after (R-OPS-03: the request path's reads grow with load instead of
multiplying). `Inserts` likewise for new documents: one `insert_many`, each document failing only its own caller."""
from __future__ import annotations

import asyncio

import pytest
from pymongo import AsyncMongoClient, monitoring
from pymongo.errors import DuplicateKeyError, OperationFailure

from servicekit.reads import ByIds, Inserts


class Finds(monitoring.CommandListener):
    def __init__(self):
        self.finds: list[dict] = []
        self.inserts: list[dict] = []

    def started(self, event):
        if event.command_name == "find":
            self.finds.append(event.command)
        elif event.command_name == "insert":
            self.inserts.append(event.command)

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


@pytest.fixture
async def col(infra, ns):
    finds = Finds()
    client = AsyncMongoClient(infra.mongo, tz_aware=True, event_listeners=[finds])
    col = client[ns.db("reads")].things
    await col.insert_many([{"_id": f"t{i}", "n": i, "secret": "x"} for i in range(50)])
    finds.finds.clear()
    yield col, finds
    await client.close()


async def test_R_OPS_03_concurrent_reads_by_id_go_out_together_and_each_caller_gets_its_own(col):
    col, finds = col
    reader = ByIds(col, {"n": 1})
    asks = [[f"t{i}", f"t{i + 1}", "missing"] for i in range(0, 40, 2)] + [["t0"]]  # t0 asked twice
    got = await asyncio.gather(*(reader.many(ids) for ids in asks))
    for ids, found in zip(asks, got):
        assert sorted(found) == sorted(i for i in ids if i != "missing")
        assert all(d == {"_id": i, "n": int(i[1:])} for i, d in found.items())  # the reader's projection
    # the first caller's read goes out at once, everyone else's waits for it and goes out as one more
    assert len(finds.finds) <= 2, [f["filter"] for f in finds.finds]
    assert await reader.one("t7") == {"_id": "t7", "n": 7} and await reader.one("nope") is None


async def test_R_OPS_03_a_shared_read_sees_what_was_written_before_it_was_asked(col):
    col, finds = col
    reader = ByIds(col)

    async def write_then_read(i: int):
        await col.update_one({"_id": f"t{i}"}, {"$set": {"n": -i}})
        return await reader.one(f"t{i}")

    async def read_while_others_write(i: int):  # keeps a read out while the writers above acknowledge theirs
        return await reader.many([f"t{j}" for j in range(40, 50)])

    got = await asyncio.gather(*(write_then_read(i) for i in range(1, 20)), read_while_others_write(0))
    assert [d["n"] for d in got[:-1]] == [-i for i in range(1, 20)]


async def test_R_OPS_03_a_failed_read_fails_its_callers_and_the_next_read_still_goes_out(col):
    col, finds = col
    broken = ByIds(col, {"n": 1, "secret": 0})  # mixing inclusion and exclusion: the server refuses the read
    first = await asyncio.gather(*(broken.one(f"t{i}") for i in range(5)), return_exceptions=True)
    assert all(isinstance(e, OperationFailure) for e in first), first
    broken.projection = {"n": 1}
    assert await broken.one("t3") == {"_id": "t3", "n": 3}


async def test_R_OPS_03_a_caller_that_gives_up_does_not_stop_the_others(col):
    col, finds = col
    reader = ByIds(col, {"n": 1})
    first = asyncio.ensure_future(reader.one("t1"))  # its read goes out
    await asyncio.sleep(0)
    gone = asyncio.ensure_future(reader.one("t2"))  # waits for the next read
    stays = asyncio.ensure_future(reader.one("t3"))
    await asyncio.sleep(0)
    gone.cancel()
    assert (await first)["n"] == 1 and (await stays)["n"] == 3
    assert "t2" not in str([f["filter"] for f in finds.finds][1:])  # nobody was left to read it for


async def test_R_OPS_03_reads_stay_under_the_id_limit_per_command(col):
    col, finds = col
    reader = ByIds(col, {"n": 1}, max_ids=10)
    got = await asyncio.gather(*(reader.many([f"t{j}" for j in range(i, i + 4)]) for i in range(0, 40, 4)))
    assert all(len(g) == 4 for g in got)
    assert all(len(f["filter"]["_id"]["$in"]) <= 10 for f in finds.finds) and len(finds.finds) >= 4


async def test_R_OPS_03_concurrent_inserts_go_out_together_and_a_taken_key_fails_only_its_caller(col):
    col, finds = col
    inserter = Inserts(col)
    finds.inserts.clear()
    docs = [{"_id": f"new{i}", "n": i} for i in range(30)] + [{"_id": "t5", "n": -1}]  # t5 is taken
    got = await asyncio.gather(*(inserter.one(d) for d in docs), return_exceptions=True)
    assert got[:30] == [None] * 30 and isinstance(got[30], DuplicateKeyError)
    assert len(finds.inserts) <= 2  # the first caller's at once, the others' together
    assert await col.count_documents({"_id": {"$regex": "^new"}}) == 30 and (await col.find_one({"_id": "t5"}))["n"] == 5

    # two requests racing for one key (two claims of the same free slot) in one command: one wins, as with insert_one
    first = asyncio.ensure_future(inserter.one({"_id": "lead"}))  # goes out alone; the racers wait and go together
    await asyncio.sleep(0)
    race = await asyncio.gather(inserter.one({"_id": "slot", "by": "a"}), inserter.one({"_id": "slot", "by": "b"}),
                                return_exceptions=True)
    await first
    assert race[0] is None and isinstance(race[1], DuplicateKeyError)
    assert (await col.find_one({"_id": "slot"}))["by"] == "a"
    assert len(finds.inserts[-1]["documents"]) == 2

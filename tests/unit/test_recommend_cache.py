"""The replica's cache of shared read models (R-OPS-03: a recommendation or a diagnosis reads only the business's own
profile): an entry past its time is served while one background read renews it; past STALE_SECONDS it is read in
the request again."""
import asyncio
from types import SimpleNamespace

from recommend_service import store


async def test_R_OPS_03_stale_entry_served_while_one_background_read_renews_it(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(store.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(store, "_cache", {})
    monkeypatch.setattr(store, "_renewing", {})
    db, reads, gate = SimpleNamespace(name="db-cache-test"), [], asyncio.Event()

    async def load():
        reads.append(clock[0])
        if len(reads) > 1:
            await gate.wait()  # the renewal is slow: requests meanwhile must not wait for it
        return f"v{len(reads)}"

    assert await store.cached(db, "segment", "s1", load) == "v1"  # first read: in the request
    clock[0] += store.CACHE_SECONDS - 1
    assert await store.cached(db, "segment", "s1", load) == "v1" and len(reads) == 1  # fresh: no read
    clock[0] += 2  # past its time
    got = [await asyncio.wait_for(store.cached(db, "segment", "s1", load), 2) for _ in range(3)]
    assert got == ["v1"] * 3  # served stale, at once
    await asyncio.sleep(0)
    assert len(reads) == 2  # ONE renewal for all three
    gate.set()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert await store.cached(db, "segment", "s1", load) == "v2"  # the renewed value

    clock[0] += store.STALE_SECONDS + 1  # far too old (the database away, say): read in the request
    assert await store.cached(db, "segment", "s1", load) == "v3" and len(reads) == 3

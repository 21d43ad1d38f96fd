"""A started service's long-lived objects are out of the cyclic garbage collector's reach (servicekit.service)."""
from __future__ import annotations

import gc

from servicekit.service import settle_gc


def test_settle_gc_freezes_what_is_alive_at_start_so_full_collections_skip_it():
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    alive = [{"n": i} for i in range(10_000)]  # long-lived state, as a service's modules, app and clients are
    try:
        settle_gc()
        assert gc.get_freeze_count() >= len(alive)
        assert all(not any(o is d for o in gc.get_objects(2)) for d in alive[:3])  # no generation holds them
    finally:
        gc.unfreeze()

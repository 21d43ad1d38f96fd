"""The loop every clock of the dispatch service runs: a sweep each `interval` seconds; while the database is away,
back off (doubling, at most 60 intervals) and log the failure streak at its 1st, 10th and 100th failure only."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable


async def every(interval: float, sweep: Callable[[], Awaitable[int]], *, log: logging.Logger, did: str, unit: str,
                failed: str) -> None:
    failures = 0
    while True:
        try:
            if n := await sweep():
                log.info(did, extra={"fields": {unit: n}})
            failures = 0
        except Exception:
            failures += 1
            if failures in (1, 10, 100):
                log.exception(failed, extra={"fields": {"failures_in_a_row": failures}})
        await asyncio.sleep(interval * min(2 ** failures, 60) if failures else interval)

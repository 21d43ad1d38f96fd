"""What this process must look at again later, kept in memory so that the saga's clocks read only that, by `_id`.

The dispatches it left waiting for a budget answer (the re-send clock, R-DSP-14) and the free-dispatch slots it claimed
(the slot reconciler, R-DSP-03) are a few thousand at any time; the dispatches and slots stored are every one of a
national year's. A clock that filtered the whole collection on every pass (`status: {$in: …}`, `settled: {$ne: true}`)
read all of them each time on the local server, which answers only `_id` from an index, and cost more with each month
of history. Instead each write records here what it leaves behind, the clocks read what is due by `_id`, and a full
scan (indexed on MongoDB) runs at start and then seldom (`FULL_SCAN_SECONDS`, never more than 1/SCAN_SHARE of the
time) as the safety net for what another replica, or this process before a restart, left behind.
"""
from __future__ import annotations

import time

from servicekit.outbox import paced

FULL_SCAN_SECONDS = 600.0  # the safety-net scans' interval (longer when a scan takes more than 1/SCAN_SHARE of it)


class Watch:
    """Keys (dispatch or slot ids) and since when (monotonic seconds) each is watched."""

    def __init__(self) -> None:
        self._since: dict[str, float] = {}

    def add(self, key: str, since: float | None = None) -> None:
        self._since[key] = time.monotonic() if since is None else since

    def drop(self, key: str) -> None:
        self._since.pop(key, None)

    def due(self, older_than: float) -> list[str]:
        """The keys watched since before `older_than` (monotonic seconds), oldest first."""
        return [k for _, k in sorted((s, k) for k, s in self._since.items() if s <= older_than)]

    def __contains__(self, key: str) -> bool:
        return key in self._since

    def __len__(self) -> int:
        return len(self._since)


class Every:
    """When the next safety-net scan is due: at once, then as `servicekit.outbox.paced` says after the last one."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.next = seconds, 0.0

    def due(self) -> bool:
        return time.monotonic() >= self.next

    def done(self, began: float) -> None:
        at = time.monotonic()
        self.next = at + paced(self.seconds, at - began)

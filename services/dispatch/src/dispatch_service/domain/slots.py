"""Free-dispatch slots (R-DSP-03) that no crash can strand, pure.

A slot is claimed (its own document, a duplicate-key insert: never more than the cap) before the dispatch that holds
it is written; a crash in between would keep it claimed for good. And a dispatch that gives its free dispatch back
writes `counts_free: False` and `slot_release: "pending"` in the same update as its new status, then deletes the slot;
a crash in between would keep it too. The reconciler (dispatch_service.saga) settles both after a grace period.
"""
from __future__ import annotations

GRACE_SECONDS = 60.0  # longer than any request takes from claim to write
RELEASE_PENDING = "pending"


def holds_slot(dispatch: dict | None) -> bool:
    """Does this dispatch (None: never written) legitimately hold its free-dispatch slot? Accepted dispatches set
    `counts_free: True`; a request still being screened has no such flag yet (the grace period covers it)."""
    return dispatch is not None and dispatch.get("counts_free") is True


def gives_back() -> dict:
    """The `$set` part every path that returns a free dispatch writes together with its status change."""
    return {"counts_free": False, "slot_release": RELEASE_PENDING}

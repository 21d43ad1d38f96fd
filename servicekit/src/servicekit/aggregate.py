"""One way to change an aggregate document: read → decide → compare-and-set, with its events in the same write.

    out = await aggregate.update(svc, svc.db.dispatches, dispatch_id, decide, actor=who.subject, action="dispatch.changed")

`decide(doc)` (sync or async, pure as far as possible) returns a `Change` — fields to set, unset, increment or push,
the outbox entries of its events (`svc.event(...)`), an audit payload — or None for "nothing to do"; it may raise
`Rejected`. The change is written by ONE `update_one` guarded by the version read (`{_id, version: read}`), the
version goes up by one, the events ride in the same update (`servicekit.store.with_outbox`), and a change that
publishes no event gets an audit entry (`servicekit.store.record_audit`; events are audited by the outbox relay).
On a concurrent change the document is read again and `decide` asked again, up to `attempts` times; then the
caller's `busy` refusal (a `Rejected("conflict", …)`) is raised. A missing document raises the caller's `missing`
refusal, or with `create=True` asks `decide(None)` and inserts what it returns (version 1).

One version field: `version`. Documents stored before it (their version under `_rev`, `v` or `_v`) are read as
that version and written back with `version` (the old field is removed in the same guarded write).
"""
from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pymongo.errors import DuplicateKeyError

from servicekit.refusals import Rejected
from servicekit.store import record_audit

VERSION = "version"
LEGACY_VERSIONS = ("_rev", "v", "_v")  # where documents written before `version` keep theirs

BUSY = Rejected("conflict", "Changed concurrently", "The record changed while you acted on it; please try again.")
NOT_FOUND = Rejected("not_found", "Not found", "There is no such record.")


@dataclass
class Change:
    """What a decision does to the document. Field paths (`a.b`) may be used in `set`, `unset`, `inc`, `push`."""
    set: dict = field(default_factory=dict)
    unset: list[str] = field(default_factory=list)
    inc: dict = field(default_factory=dict)
    push: dict = field(default_factory=dict)          # field -> value, or {"$each": [...], ...}
    add_to_set: dict = field(default_factory=dict)
    events: list[dict] = field(default_factory=list)  # outbox entries, written with the change
    audit: dict | None = None                         # audit payload when there are no events (default: scalars set)
    action: str | None = None                         # the audit action, if not the caller's
    where: dict = field(default_factory=dict)         # further conditions the write is guarded by


@dataclass
class Outcome:
    """`doc`: the document after the change (fields set at the top level merged in; dotted paths, pushes and
    increments are not — pass `reload=True` to read it back), or as read when `change` is None."""
    doc: dict | None
    change: Change | None = None

    @property
    def changed(self) -> bool:
        return self.change is not None


def fresh(r: Rejected) -> Rejected:
    """A new exception each time (a shared instance would carry one raise's traceback into the next)."""
    return Rejected(r.kind, r.title, r.detail, **r.extra)


def version_of(doc: dict | None, name: str = VERSION) -> int:
    """The version a stored document is at (0 for none), reading the field older documents used."""
    if not doc:
        return 0
    if doc.get(name) is not None:
        return doc[name]
    return next((doc[f] for f in LEGACY_VERSIONS if f != name and doc.get(f) is not None), 0)


def guard(doc: dict, name: str = VERSION) -> tuple[dict, dict, list[str]]:
    """The filter matching `doc` only at the version read, the `$set` of the next version, and legacy fields to drop."""
    if doc.get(name) is not None:
        return {"_id": doc["_id"], name: doc[name]}, {name: doc[name] + 1}, []
    legacy = next((f for f in LEGACY_VERSIONS if f != name and doc.get(f) is not None), None)
    if legacy is None:  # never versioned: only while it still is not
        return {"_id": doc["_id"], name: None}, {name: 1}, []
    return {"_id": doc["_id"], name: None, legacy: doc[legacy]}, {name: doc[legacy] + 1}, [legacy]


def update_document(change: Change, version_set: dict, drop: list[str] = ()) -> dict:
    """The MongoDB update of a Change (without its events)."""
    update: dict[str, dict] = {"$set": {**change.set, **version_set}}
    unset = {k: "" for k in [*change.unset, *drop]}
    if unset:
        update["$unset"] = unset
    if change.inc:
        update["$inc"] = dict(change.inc)
    if change.push:
        update["$push"] = dict(change.push)
    if change.add_to_set:
        update["$addToSet"] = dict(change.add_to_set)
    return update


def default_audit(change: Change) -> dict:
    """The plain values set (a field path `a.b` is not a valid key of a stored document: `a/b`)."""
    return {k.replace(".", "/"): v for k, v in change.set.items() if isinstance(v, (str, int, float, bool))}


def after(doc: dict, change: Change, version_set: dict, drop: list[str] = ()) -> dict:
    out = {**doc, **{k: v for k, v in change.set.items() if "." not in k}, **version_set}
    for k in [*change.unset, *drop]:
        out.pop(k, None)
    return out


async def _decided(decide, doc):
    out = decide(doc)
    return await out if inspect.isawaitable(out) else out


Decide = Callable[[dict | None], Awaitable[Change | None] | Change | None]


async def update(svc, col, doc_id: Any, decide: Decide, *, actor: str | None, action: str, attempts: int = 8, version: str = VERSION, missing: Rejected = NOT_FOUND, busy: Rejected = BUSY,
                 create: bool = False, projection: dict | None = None, reload: bool = False,
                 audit=record_audit) -> Outcome:
    """Read → `decide` → one guarded write with its events (and an audit entry when it has none), retried on a
    concurrent change; see the module's docstring. `audit`: an audit writer with `record_audit`'s signature (a
    service that also copies its entries elsewhere passes its own). The events' cause is the caller's business:
    `decide` makes the outbox entries (`svc.event(msg, actor=…, cause=…)`)."""
    if projection is None:
        projection = {"_seen": 0}  # the outbox is read to know whether it was empty (see Service.write)
    for _ in range(attempts):
        doc = await col.find_one({"_id": doc_id}, projection)
        outbox_was_empty = doc is not None and svc.nothing_to_publish(doc.pop("_outbox", None))
        if doc is None and not create:
            raise fresh(missing)
        change = await _decided(decide, doc)
        if change is None:
            return Outcome(doc)
        if doc is None:
            new = {"_id": doc_id, **change.set, version: 1}
            try:
                await svc.insert(col, new, events=change.events)
            except DuplicateKeyError:
                continue  # created meanwhile: decide again on what is there
            written = new
        else:
            filter_, version_set, drop = guard(doc, version)
            res = await svc.write(col, {**filter_, **change.where}, update_document(change, version_set, drop),
                                  events=change.events, outbox_was_empty=outbox_was_empty)
            if res.matched_count != 1:
                continue
            written = after(doc, change, version_set, drop)
        if not change.events:
            await audit(svc.db, actor=actor, action=change.action or action, key=str(doc_id),
                        payload=change.audit if change.audit is not None else default_audit(change))
        if reload:
            written = await col.find_one({"_id": doc_id}, projection)
            if written is not None:
                written.pop("_outbox", None)
        return Outcome(written, change)
    raise fresh(busy)


async def create(svc, col, doc: dict, *, events: list[dict] = (), actor: str | None, action: str,
                 duplicate: Rejected | None = None, audit_payload: dict | None = None, version: str = VERSION,
                 audit=record_audit) -> dict:
    """Inserts a new aggregate at version 1 with its events (one write); without events, an audit entry. A
    duplicate `_id` (or unique key) raises `duplicate` when given, else the driver's DuplicateKeyError."""
    doc = {**doc, version: 1}
    try:
        await svc.insert(col, doc, events=list(events))
    except DuplicateKeyError:
        if duplicate is None:
            raise
        raise fresh(duplicate) from None
    if not events:
        await audit(svc.db, actor=actor, action=action, key=str(doc["_id"]),
                    payload=audit_payload if audit_payload is not None else {})
    return doc

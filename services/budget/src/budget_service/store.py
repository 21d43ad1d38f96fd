"""MongoDB access for frames: one document per frame holds its balances, ledger, answers and outbox.

Why one document (R-BUD-03, R-BUD-05): FerretDB (and a sharded MongoDB without transactions) makes only
a single-document update atomic. So every change to a frame is ONE conditional `update_one`:

    filter  {_id: frame_id, version: v}          # the version this decision was computed from
    $set    state (balances, shares, open reservations), version: v + 1
    $push   ledger: new entries, answers: new command answers, _outbox: the events to publish

The balances and the ledger lines that explain them are therefore written together or not at all, so
`recompute(ledger) == balances` holds after any crash. If another writer (a second replica, an HTTP
request, a redelivered command) moved the frame in between, the filter matches nothing, and the caller
reloads and decides again: two writers can never both spend the same yen. The answers array makes a
command id idempotent across redelivery and restarts. A frame lives for one fiscal year, so its
ledger stays far below the 16 MB document limit (a few hundred bytes per dispatch step).
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from pymongo.errors import DuplicateKeyError

from budget_service.domain import Answer, Entry, Frame

CONFLICT_RETRIES = 50
HEAVY = {"ledger": 0, "_outbox": 0, "_seen": 0}


def now() -> str:
    return datetime.now(UTC).isoformat()


class Conflict(Exception):
    """The frame kept changing under us; the caller may try again."""


@dataclass
class Loaded:
    frame: Frame
    version: int


class FrameStore:
    def __init__(self, svc):
        self.svc = svc
        self.frames = svc.db.frames
        self.orphans = svc.db.orphan_answers  # answers to commands for frames that do not exist
        self.members = svc.db.members
        self.platforms = svc.db.platforms

    async def indexes(self) -> None:
        for key in ("fiscal_year", "platform_id", "bureau_id"):
            await self.frames.create_index(key)
        await self.members.create_index("platform_id")

    async def load(self, frame_id: str) -> Loaded | None:
        doc = await self.frames.find_one({"_id": frame_id}, HEAVY)
        if doc is None:
            return None
        return Loaded(Frame.from_state(frame_id, doc, doc.get("answers", [])), doc["version"])

    async def save(self, loaded: Loaded | None, frame: Frame, events: list[dict]) -> bool:
        """Writes the frame's changes if nobody changed it since it was loaded; False otherwise."""
        ledger = [e.to_dict() for e in frame.new_entries]
        answers = [a.to_dict() for a in frame.new_answers]
        if loaded is None:
            doc = {"_id": frame.frame_id, "version": 1, **frame.state(), "ledger": ledger, "answers": answers}
            try:
                await self.svc.insert(self.frames, doc, events=events)
            except DuplicateKeyError:
                return False
            return True
        push = {k: {"$each": v} for k, v in (("ledger", ledger), ("answers", answers)) if v}
        update = {"$set": {**frame.state(), "version": loaded.version + 1}}
        if push:
            update["$push"] = push
        res = await self.svc.write(self.frames, {"_id": frame.frame_id, "version": loaded.version}, update,
                                   events=events)
        return res.matched_count == 1

    async def mutate(self, frame_id: str, decide: Callable[[Loaded | None], Awaitable[tuple]]):
        """Load → decide → conditional write, again on conflict. `decide` returns (frame or None, events,
        result); a None frame or a frame without new entries/answers writes nothing but the events."""
        for _ in range(CONFLICT_RETRIES):
            loaded = await self.load(frame_id)
            frame, events, result = await decide(loaded)
            if frame is None or not (frame.new_entries or frame.new_answers):
                if events and loaded is not None:  # e.g. a duplicate command: answer again, change nothing
                    await self.svc.write(self.frames, {"_id": frame_id}, {}, events=events)
                return result
            if await self.save(loaded, frame, events):
                return result
        raise Conflict(f"frame {frame_id} kept changing; try again")

    async def ledger(self, frame_id: str) -> list[Entry] | None:
        doc = await self.frames.find_one({"_id": frame_id}, {"ledger": 1})
        return None if doc is None else [Entry.from_dict(e) for e in doc.get("ledger", [])]

    async def raw(self, frame_id: str) -> dict | None:
        return await self.frames.find_one({"_id": frame_id}, {"_outbox": 0, "answers": 0})

    async def member_role(self, platform_id: str, org_id: str) -> str | None:
        doc = await self.members.find_one({"_id": member_key(platform_id, org_id)})
        return doc.get("member_role") if doc else None

    async def orphan_answer(self, command_id: str) -> Answer | None:
        doc = await self.orphans.find_one({"_id": command_id})
        return Answer.from_dict(doc["answer"]) if doc else None

    async def record_orphan_answer(self, frame_id: str, answer: Answer, events: list[dict]) -> Answer:
        """Answers a command for a frame that does not exist, once per command id; a repeat gets the first."""
        try:
            await self.svc.insert(self.orphans, {"_id": answer.command_id, "frame_id": frame_id,
                                                 "answer": answer.to_dict(), "at": now()}, events=events)
            return answer
        except DuplicateKeyError:  # answered before: the same answer again, nothing else
            await self.svc.write(self.orphans, {"_id": answer.command_id}, {}, events=events)
            return await self.orphan_answer(answer.command_id)


def member_key(platform_id: str, org_id: str) -> str:
    return f"{platform_id}|{org_id}"

"""MongoDB access for frames: the frame document is the single source of truth for balances; ledger
entries, command answers and reservations are their own documents, written idempotently from it.

Why this shape (R-BUD-03, R-BUD-05). FerretDB (and MongoDB without transactions) makes only a
single-document update atomic, and FerretDB rewrites a whole document on every update, so a frame that
embedded its ever-growing ledger would get slower with every dispatch. So every change to a frame is
ONE conditional update of a small document:

    filter  {_id: frame_id, version: v}        # the version the decision was computed from
    $set    balances, version: v + 1,
            pending: {entries, answers, reservations}   # exactly what this step adds elsewhere (stored packed:
                                                        # compressed JSON, see `packed`)
    $push   _outbox: the events of this step            # a repeated command's answer again: the same, version + 1

If another writer (a second replica, an HTTP request, a redelivered command) moved the frame in between,
the filter matches nothing and the caller reloads and decides again, so two writers can never both
spend the same yen. Right after, and again by whoever loads the frame next if the writer crashed, the
`pending` step is materialised by INSERTS under deterministic ids (ledger entry: frame id + sequence;
reservation: frame id + dispatch id + "open", its settlement: + "settled"; answer: command id; every look-up
is then a read by `_id`, which stays fast however many there are), so doing it twice changes
nothing, and the frame document is the only document ever updated (the local server serialises updates
globally, so one update per step keeps throughput up). They are written in that order, so the presence of
the step's last document proves the step complete. Every load completes the last step before deciding,
so a decision always sees every answer and reservation of the versions before it: a command id is
answered once, across redelivery, restarts and replicas.
`GET /frames/{id}/check` reconciles: the ledger's sum must equal the frame's balances.
"""
from __future__ import annotations

import json
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from pymongo import ASCENDING
from pymongo.errors import BulkWriteError, DuplicateKeyError

from servicekit.faults import Transient

from budget_service.domain import Answer, Entry, Frame

CONFLICT_RETRIES = 50


def now() -> str:
    return datetime.now(UTC).isoformat()


class Conflict(Transient):
    """The frame kept changing under us; the caller may try again (a consumer retries it, never dead-letters)."""


@dataclass
class Loaded:
    frame: Frame
    version: int
    outbox_was_empty: bool = False  # nothing waited to be published when it was loaded (see `Service.write`)


def member_key(platform_id: str, org_id: str) -> str:
    return f"{platform_id}|{org_id}"


def entry_id(frame_id: str, seq: int) -> str:
    return f"{frame_id}:{seq:09d}"


def reservation_id(frame_id: str, dispatch_id: str, phase: str) -> str:
    """A dispatch's reservation ("open") and its settlement ("settled"): each written once."""
    return f"{frame_id}:{dispatch_id}:{phase}"


async def insert_all(col, docs: list[dict]) -> None:
    """Inserts `docs` in one round trip; one that is already there is the same document, written before (by us
    before a crash, or by a concurrent loader)."""
    try:
        await col.insert_many(docs, ordered=False)
    except BulkWriteError as e:
        if any(w["code"] != 11000 for w in e.details.get("writeErrors", [])):
            raise


def packed(pending: dict) -> bytes:
    """A frame's `pending` step as stored: compressed JSON, one binary value. The local server (FerretDB) decodes and
    re-encodes the whole frame document wherever it reads or rewrites it (the load, the update, the relay's read and
    clear); the step's hundreds of small documents cost it a tree each time, a string its escapes, this a few KB."""
    return zlib.compress(json.dumps(pending, separators=(",", ":")).encode(), 1)


def step(stored) -> dict:
    """The `pending` step back (older frames stored a document)."""
    return json.loads(zlib.decompress(stored)) if isinstance(stored, bytes) else (stored or {})


class FrameStore:
    def __init__(self, svc):
        self.svc = svc
        db = svc.db
        self.frames, self.ledger_col, self.answers = db.frames, db.ledger, db.answers
        self.reservations = db.reservations
        self.orphans = db.orphan_answers  # answers to commands for frames that do not exist (with their outbox)
        self.members, self.platforms = db.members, db.platforms

    async def indexes(self) -> None:
        for key in ("fiscal_year", "platform_id", "bureau_id"):
            await self.frames.create_index(key)
        await self.ledger_col.create_index([("frame_id", ASCENDING), ("seq", ASCENDING)])
        await self.reservations.create_index([("frame_id", ASCENDING), ("version", ASCENDING)])
        await self.members.create_index("platform_id")

    # --- loading ---------------------------------------------------------------------------------------
    async def frame_doc(self, frame_id: str) -> dict | None:
        """The frame document, with its last step materialised (a crashed writer's work is finished here)."""
        doc = await self.frames.find_one({"_id": frame_id})
        if doc is None:
            return None
        doc["outbox_was_empty"] = self.svc.nothing_to_publish(doc.pop("_outbox", None))
        doc["pending"] = pending = step(doc.get("pending"))
        if pending and not await self._complete(frame_id, doc["version"], pending):
            await self._materialize(frame_id, doc["version"], pending)
        return doc

    async def load(self, frame_id: str, *, command_id: str | None = None, dispatch_id: str | None = None,
                   all_open: bool = False) -> Loaded | None:
        """The frame with what a decision needs: the answer to `command_id` if any, the open reservation of
        `dispatch_id`, or every open reservation."""
        doc = await self.frame_doc(frame_id)
        if doc is None:
            return None
        answers, settled = [], {}
        if command_id is not None:
            a = await self.answer(command_id)
            answers = [a.to_dict()] if a else []
        if all_open:
            reservations = await self.open_reservations(frame_id)
        elif dispatch_id is not None:
            opened = await self.reservations.find_one({"_id": reservation_id(frame_id, dispatch_id, "open")})
            done = opened and await self.reservations.find_one({"_id": reservation_id(frame_id, dispatch_id, "settled")})
            reservations = [opened] if opened and not done else []
            settled = {dispatch_id: done["state"]} if done else {}
        else:
            reservations = []
        return Loaded(Frame.from_state(frame_id, doc, answers, reservations, settled if dispatch_id else None),
                      doc["version"], doc["outbox_was_empty"])

    async def load_for(self, frame_id: str, command_ids: list[str], dispatch_ids: list[str]) -> Loaded | None:
        """The frame with what a batch of commands needs: the earlier answers of `command_ids`, and the open
        reservation or settlement of each of `dispatch_ids` (three reads by `_id`, whatever the batch's size)."""
        doc = await self.frame_doc(frame_id)
        if doc is None:
            return None
        ids = [reservation_id(frame_id, d, phase) for d in dict.fromkeys(dispatch_ids) for phase in ("open", "settled")]
        answers = [d["answer"] async for d in self.answers.find({"_id": {"$in": list(dict.fromkeys(command_ids))}})]
        found = {r["_id"]: r async for r in self.reservations.find({"_id": {"$in": ids}})}
        reservations, settled = [], {}
        for d in dict.fromkeys(dispatch_ids):
            opened, done = (found.get(reservation_id(frame_id, d, p)) for p in ("open", "settled"))
            if done:
                settled[d] = done["state"]
            elif opened:
                reservations.append(opened)
        return Loaded(Frame.from_state(frame_id, doc, answers, reservations, settled), doc["version"],
                      doc["outbox_was_empty"])

    async def spender(self, frame_id: str, dispatch_id: str) -> str | None:
        """The member whose spending a committed dispatch was (a refund returns to it, R-DSP-13)."""
        done = await self.reservations.find_one({"_id": reservation_id(frame_id, dispatch_id, "settled")})
        return done["member_id"] if done and done.get("state") == "committed" else None

    async def answer(self, command_id: str) -> Answer | None:
        doc = await self.answers.find_one({"_id": command_id}) or await self.orphans.find_one({"_id": command_id})
        return Answer.from_dict(doc["answer"]) if doc else None

    async def open_reservations(self, frame_id: str) -> list[dict]:
        states: dict[str, dict] = {}
        async for r in self.reservations.find({"frame_id": frame_id}).sort("version", 1):
            states[r["dispatch_id"]] = r  # the settlement (a later version) wins over the opening
        return [r for _, r in sorted(states.items()) if r["state"] == "open"]

    # --- writing ---------------------------------------------------------------------------------------
    async def save(self, loaded: Loaded | None, frame: Frame, events: list[dict]) -> bool:
        """Writes the frame's step if nobody changed the frame since it was loaded; False otherwise."""
        version = 1 if loaded is None else loaded.version + 1
        pending = {"entries": [e.to_dict() for e in frame.new_entries],
                   "answers": [a.to_dict() for a in frame.new_answers],
                   "reservations": [{"state": s, **asdict(r)} for s, r in frame.reservation_changes]}
        fields = {**frame.state(), "version": version, "pending": packed(pending)}
        if loaded is None:
            try:
                await self.svc.insert(self.frames, {"_id": frame.frame_id, **fields}, events=events)
            except DuplicateKeyError:
                return False
        else:
            res = await self.svc.write(self.frames, {"_id": frame.frame_id, "version": loaded.version},
                                       {"$set": fields}, events=events, outbox_was_empty=loaded.outbox_was_empty)
            if res.matched_count != 1:
                return False
        await self._materialize(frame.frame_id, version, pending)
        return True

    def _documents(self, frame_id: str, version: int, pending: dict) -> list[tuple]:
        """The step's documents in write order (the last one proves the step complete)."""
        docs = [(self.ledger_col, {"_id": entry_id(frame_id, e["seq"]), "frame_id": frame_id, **e})
                for e in pending.get("entries", [])]
        docs += [(self.reservations, {"_id": reservation_id(frame_id, r["dispatch_id"], "open" if r["state"] == "open"
                                                            else "settled"),
                                      "frame_id": frame_id, "version": version, **r})
                 for r in pending.get("reservations", [])]
        docs += [(self.answers, {"_id": a["command_id"], "frame_id": frame_id, "version": version, "answer": a})
                 for a in pending.get("answers", [])]
        return docs

    async def _complete(self, frame_id: str, version: int, pending: dict) -> bool:
        docs = self._documents(frame_id, version, pending)
        return not docs or await docs[-1][0].find_one({"_id": docs[-1][1]["_id"]}, {"_id": 1}) is not None

    async def _materialize(self, frame_id: str, version: int, pending: dict) -> None:
        """Idempotent: inserts under deterministic ids. One insert per collection (a batch's step has hundreds of
        documents), in the step's write order, and the step's last document alone after all others are in."""
        docs = self._documents(frame_id, version, pending)
        runs: list[tuple] = []
        for col, doc in docs[:-1]:
            if runs and runs[-1][0] is col:
                runs[-1][1].append(doc)
            else:
                runs.append((col, [doc]))
        runs += [(col, [doc]) for col, doc in docs[-1:]]
        for col, run in runs:
            await insert_all(col, run)

    async def _echo(self, loaded: Loaded, frame_id: str, events: list[dict]) -> bool:
        """Sends answers again (repeated commands) through the frame's outbox, guarded and moving the version like
        every write that adds events (so a writer that saw the outbox empty knows what it holds, `Service.write`).
        The step on the frame was completed by the load, so the version moving changes nothing else. False when the
        frame changed since it was loaded."""
        res = await self.svc.write(self.frames, {"_id": frame_id, "version": loaded.version},
                                   {"$inc": {"version": 1}}, events=events, outbox_was_empty=loaded.outbox_was_empty)
        return res.matched_count == 1

    async def mutate(self, frame_id: str, decide: Callable[[Loaded | None], Awaitable[tuple]], **needs):
        """Load → decide → conditional write, again on conflict. `decide` returns (frame or None, events,
        result); a frame without a new step (e.g. a duplicate command) writes only its events (`_echo`)."""
        for _ in range(CONFLICT_RETRIES):
            loaded = await self.load(frame_id, **needs)
            frame, events, result = await decide(loaded)
            if frame is None or not frame.changed():
                if events and loaded is not None and not await self._echo(loaded, frame_id, events):
                    continue  # a duplicate command: the original answer again, once the frame held still
                return result
            if await self.save(loaded, frame, events):
                return result
        raise Conflict(f"frame {frame_id} kept changing; try again")

    async def mutate_batch(self, frame_id: str, command_ids: list[str], dispatch_ids: list[str],
                           decide: Callable[[Loaded], Awaitable[tuple[Frame, list[dict]]]]) -> bool:
        """Load → decide a batch of commands in memory → ONE conditional write of the frame (with the ledger
        entries, reservations and answers of the whole batch, and its events), again on conflict. False when
        the frame does not exist (the caller answers those commands one by one)."""
        for _ in range(CONFLICT_RETRIES):
            loaded = await self.load_for(frame_id, command_ids, dispatch_ids)
            if loaded is None:
                return False
            frame, events = await decide(loaded)
            if not frame.changed():  # only repeats: their original answers again
                if events and not await self._echo(loaded, frame_id, events):
                    continue
                return True
            if await self.save(loaded, frame, events):
                return True
        raise Conflict(f"frame {frame_id} kept changing; try again")

    async def record_orphan_answer(self, frame_id: str, answer: Answer, events: list[dict]) -> Answer:
        """Answers a command for a frame that does not exist, once per command id; a repeat gets the first."""
        try:
            await self.svc.insert(self.orphans, {"_id": answer.command_id, "frame_id": frame_id,
                                                 "answer": answer.to_dict(), "at": now()}, events=events)
            return answer
        except DuplicateKeyError:  # answered before: the same answer again, nothing else
            await self.svc.write(self.orphans, {"_id": answer.command_id}, {}, events=events)
            return await self.answer(answer.command_id)

    # --- reading for HTTP ---------------------------------------------------------------------------------
    async def ledger(self, frame_id: str, offset: int = 0, limit: int = 0) -> list[Entry]:
        """Entries after the first `offset`: the ledger's seq runs 1, 2, 3… with no gap (each is written with its
        frame), so this is one indexed range read however deep it starts, never a skip (R-OPS-03)."""
        cursor = self.ledger_col.find({"frame_id": frame_id, "seq": {"$gt": offset}}).sort("seq", 1)
        if limit:
            cursor = cursor.limit(limit)
        return [Entry.from_dict(d) async for d in cursor]

    async def member_role(self, platform_id: str, org_id: str) -> str | None:
        doc = await self.members.find_one({"_id": member_key(platform_id, org_id)})
        return doc.get("member_role") if doc else None

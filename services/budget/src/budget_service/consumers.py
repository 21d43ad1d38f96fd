"""Kafka handlers of the budget service: budget commands (the single writer of frames) and platform
memberships from identity (who may hold budget, R-PF-04).

Commands arrive in batches (what one poll returned): a frame's reserve, commit and release commands of a
batch are decided one by one on the frame in memory and written with ONE conditional update (`on_commands`,
`FrameStore.mutate_batch`); a refund, or a batch that fails, goes one command at a time. Either way, each command
is decided on the frame as loaded (with the command's earlier answer, if any, and the
dispatch's open reservation) and written with one conditional update (see store.py);
its answer goes out through the frame's outbox. A command id already answered is answered again with the
original answer and moves nothing, whether it comes from Kafka redelivery, a restart or a second publish.
"""
from __future__ import annotations

import logging
import uuid

from contracts import Envelope
from contracts.events.budget import (BudgetCommitted, BudgetRefunded, BudgetRefused, BudgetReleased, BudgetReserved,
                                     CommitBudget, CreditRefund, ReleaseBudget, ReserveBudget)
from contracts.events.identity import MembershipChanged, PlatformRegistered
from servicekit.bus import processing
from servicekit.store import apply_once

from budget_service.domain import Answer
from budget_service.store import FrameStore, Loaded, member_key, now

log = logging.getLogger("budget.consumers")


def answer_event(frame_id: str, a: Answer):
    """The event that carries a command's answer; None for a command that moved nothing and needs no answer."""
    if a.kind == "reserved":
        return BudgetReserved(frame_id=frame_id, dispatch_id=a.dispatch_id, command_id=a.command_id,
                              member_id=a.member_id or "", amount=a.amount)
    if a.kind == "refused":
        return BudgetRefused(frame_id=frame_id, dispatch_id=a.dispatch_id, command_id=a.command_id,
                             reason_code=a.reason_code, reason=a.reason)
    if a.kind == "committed":
        return BudgetCommitted(frame_id=frame_id, dispatch_id=a.dispatch_id, command_id=a.command_id,
                               spent=a.spent, returned=a.returned, uncovered=a.uncovered)
    if a.kind == "released":
        return BudgetReleased(frame_id=frame_id, dispatch_id=a.dispatch_id, command_id=a.command_id, amount=a.amount)
    if a.kind == "refunded":
        return BudgetRefunded(frame_id=frame_id, dispatch_id=a.dispatch_id, command_id=a.command_id, amount=a.amount)
    return None


def answer_event_id(command_id: str) -> str:
    """One event id per command's answer: a command retried after a database outage, redelivered or sent twice
    is answered again with the same event, which every consumer drops as a repeat (answered once)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"smeportal:budget-answer:{command_id}"))


def handlers(svc, store: FrameStore):
    def actor(env: Envelope) -> str:
        return env.actor or f"service:{env.producer}"

    def events_for(frame_id: str, a: Answer, env: Envelope) -> list[dict]:
        msg = answer_event(frame_id, a)
        if msg is None:
            log.warning("command moved nothing", extra={"fields": {"command_id": a.command_id, "why": a.reason}})
            return []
        return [svc.event(msg, actor=env.actor, cause=env, event_id=answer_event_id(a.command_id))]

    async def on_reserve(env: Envelope, cmd: ReserveBudget) -> None:
        async def decide(loaded: Loaded | None):
            if loaded is None:
                a = Answer("refused", cmd.command_id, cmd.dispatch_id, cmd.member_id, cmd.fee + cmd.travel,
                           reason_code="no_frame", reason=f"No budget frame {cmd.frame_id} has been allocated.")
                await store.record_orphan_answer(cmd.frame_id, a, events_for(cmd.frame_id, a, env))
                return None, [], a
            frame = loaded.frame
            role = await store.member_role(frame.platform_id, cmd.member_id)
            a = frame.reserve(command_id=cmd.command_id, dispatch_id=cmd.dispatch_id, member_id=cmd.member_id,
                              member_role=role, fee=cmd.fee, travel=cmd.travel, actor=actor(env), at=now())
            return frame, events_for(cmd.frame_id, a, env), a

        await store.mutate(cmd.frame_id, decide, command_id=cmd.command_id, dispatch_id=cmd.dispatch_id)

    async def settle(env: Envelope, cmd, apply) -> None:
        async def decide(loaded: Loaded | None):
            if loaded is None:
                log.warning("settlement for a missing frame", extra={"fields": {"frame_id": cmd.frame_id}})
                return None, [], None
            a = apply(loaded.frame)
            return loaded.frame, events_for(cmd.frame_id, a, env), a

        await store.mutate(cmd.frame_id, decide, command_id=cmd.command_id, dispatch_id=cmd.dispatch_id)

    async def on_commit(env: Envelope, cmd: CommitBudget) -> None:
        await settle(env, cmd, lambda f: f.commit(command_id=cmd.command_id, dispatch_id=cmd.dispatch_id,
                                                  fee=cmd.fee, travel=cmd.travel, actor=actor(env), at=now()))

    async def on_release(env: Envelope, cmd: ReleaseBudget) -> None:
        await settle(env, cmd, lambda f: f.release(command_id=cmd.command_id, dispatch_id=cmd.dispatch_id,
                                                   reason=cmd.reason, actor=actor(env), at=now()))

    async def on_refund(env: Envelope, cmd: CreditRefund) -> None:
        member = await store.spender(cmd.frame_id, cmd.dispatch_id)
        await settle(env, cmd, lambda f: f.credit_refund(command_id=cmd.command_id, dispatch_id=cmd.dispatch_id,
                                                         member_id=member or "", amount=cmd.amount, actor=actor(env),
                                                         at=now()))

    # --- a batch of commands (what one poll returned): per frame, decided in memory and written once ------------
    def decide_one(frame, env: Envelope, cmd, role: str | None) -> Answer:
        if isinstance(cmd, ReserveBudget):
            return frame.reserve(command_id=cmd.command_id, dispatch_id=cmd.dispatch_id, member_id=cmd.member_id,
                                 member_role=role, fee=cmd.fee, travel=cmd.travel, actor=actor(env), at=now())
        if isinstance(cmd, CommitBudget):
            return frame.commit(command_id=cmd.command_id, dispatch_id=cmd.dispatch_id, fee=cmd.fee,
                                travel=cmd.travel, actor=actor(env), at=now())
        return frame.release(command_id=cmd.command_id, dispatch_id=cmd.dispatch_id, reason=cmd.reason,
                             actor=actor(env), at=now())

    async def on_commands(items: list[tuple[Envelope, object]]) -> None:
        """Reserve, commit and release commands of a batch, frame by frame in their order: the frame applies them
        one by one in memory (the same rules as one at a time) and is written once, answers one per command id."""
        by_frame: dict[str, list] = {}
        for env, cmd in items:
            by_frame.setdefault(cmd.frame_id, []).append((env, cmd))
        for frame_id, group in by_frame.items():
            roles: dict[str, str | None] = {}

            async def decide(loaded: Loaded, frame_id=frame_id, group=group, roles=roles):
                frame, events = loaded.frame, {}
                for env, cmd in group:
                    if isinstance(cmd, ReserveBudget) and cmd.member_id not in roles:
                        roles[cmd.member_id] = await store.member_role(frame.platform_id, cmd.member_id)
                    with processing(env):  # the command's own trace goes on through its answer
                        a = decide_one(frame, env, cmd, roles.get(getattr(cmd, "member_id", None)))
                        for e in events_for(frame_id, a, env):
                            events.setdefault(e["event_id"], e)  # a command twice in the batch: answered once
                return frame, list(events.values())

            if not await store.mutate_batch(frame_id, [c.command_id for _, c in group],
                                            [c.dispatch_id for _, c in group], decide):
                for env, cmd in group:  # no such frame: answered (or logged) one by one, as always
                    await single[type(cmd)](env, cmd)

    # --- platform memberships (R-PF-04): a read model, idempotent by event id ----------------------------
    async def on_platform(env: Envelope, e: PlatformRegistered) -> None:
        await apply_once(store.platforms, e.platform_id, env.event_id, {"$set": {
            "name": e.name, "fiscal_year": e.fiscal_year, "bureau_id": e.bureau_id,
            "representative_id": e.representative_id}})
        for m in e.members:
            await apply_once(store.members, member_key(e.platform_id, m.org_id), env.event_id, {"$set": {
                "platform_id": e.platform_id, "org_id": m.org_id, "member_role": m.member_role}})

    async def on_membership(env: Envelope, e: MembershipChanged) -> None:
        await apply_once(store.members, member_key(e.platform_id, e.org_id), env.event_id, {"$set": {
            "platform_id": e.platform_id, "org_id": e.org_id, "member_role": e.member_role}})

    single = {ReserveBudget: on_reserve, CommitBudget: on_commit, ReleaseBudget: on_release, CreditRefund: on_refund}
    batch = {ReserveBudget: on_commands, CommitBudget: on_commands, ReleaseBudget: on_commands}
    return single, batch, {PlatformRegistered: on_platform, MembershipChanged: on_membership}

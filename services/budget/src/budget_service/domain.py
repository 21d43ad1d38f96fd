"""Budget frames as pure rules (R-BUD-01..05, R-DSP-08): allocation, shares, reservations and the ledger.

No I/O here: the store loads a `Frame`, calls one operation, and writes back the frame's new state
together with the ledger entries and answers the operation produced (one conditional update).

Decisions (documented here because they shape every balance):
- A frame is ONE pool of yen: fee + travel allocations are kept (and reported) separately, but a
  reservation draws fee + travel from the same pool, as the commands carry both for one dispatch.
- Holders: the representative draws from the unshared remainder (allocation − Σ shares); any other
  member draws from its own share (R-BUD-02). "used" = reserved + spent of a holder.
- Commit above the reservation (R-BUD-04): the extra is taken from the holder's available balance and
  capped there; what cannot be covered is reported as `uncovered` and never spent (R-BUD-03 wins:
  the agency settles it outside the frame). Below the reservation, the difference returns.
- Idempotency: every command id's answer is remembered; a duplicate gets the original answer and moves
  nothing. A second reservation for a dispatch that already holds one gets that reservation back.
- Amounts are integer yen; floats are refused.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

from contracts.vocab import NATIONAL_ROLES, RIGHTS, MemberRole, Right, bureau_may, place_problem  # noqa: F401 (R-PF-05)
from servicekit.refusals import Rejected


@dataclass(frozen=True)
class Params:
    """Programme parameters as data (R-PF-04): the member roles that may hold and spend budget."""

    budget_roles: frozenset[str] = frozenset(
        r.value for r, rights in RIGHTS.items() if {Right.MANAGE_BUDGET, Right.REQUEST_DISPATCH} <= rights)


DEFAULT_PARAMS = Params()


REFUSAL_KINDS = {"invalid_amount": "invalid", "not_allowed": "invalid", "below_commitments": "conflict",
                 "insufficient_balance": "conflict", "frame_closed": "conflict"}


def refused(code: str, message: str) -> Rejected:
    """A refused change: `Rejected` with a `code` for programs and a message for people."""
    return Rejected(REFUSAL_KINDS.get(code, "conflict"), "The budget change was refused", message, code=code)


def _yen(value, what: str) -> int:
    """Integer yen only, never floats or negatives."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise refused("invalid_amount", f"{what} must be a whole number of yen, got {value!r}.")
    if value < 0:
        raise refused("invalid_amount", f"{what} cannot be negative (got {value}).")
    return value


# --- least privilege by place (R-PF-05): the rule is shared (contracts.vocab); reports are budget's own -------
def report_blocks(roles, principal_bureau: str | None, asked: str | None) -> tuple[str | None, str | None]:
    """R-PF-05, R-BUD-05: (the block a report is limited to or None for every block, why it is refused or None).
    A bureau's reports cover its own block only, whatever it asks for; asking for another block is refused."""
    if problem := place_problem(roles, principal_bureau, any_block=True):
        return None, problem
    if set(roles) & NATIONAL_ROLES or "bureau" not in roles:
        return asked, None
    if asked is not None and asked != principal_bureau:
        return None, place_problem(roles, principal_bureau, asked)
    return principal_bureau, None


@dataclass
class Entry:
    """One append-only ledger line (R-BUD-05): the signed change it made, who made it and why."""

    seq: int
    kind: Literal["allocation", "share", "reservation", "commit", "release", "refund", "close"]
    actor: str
    why: str
    at: str
    member_id: str | None = None       # the holder concerned (share / reservation / spending)
    dispatch_id: str | None = None
    command_id: str | None = None
    fee: int = 0                       # change of the allocated fee
    travel: int = 0                    # change of the allocated travel
    share: int = 0                     # change of member_id's share
    reserved: int = 0                  # change of member_id's reservations
    spent_fee: int = 0                 # fee spending of member_id
    spent_travel: int = 0              # travel spending of member_id

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Entry":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass
class Balances:
    """What a frame holds, per holder; derivable from the ledger (`recompute`)."""

    allocated_fee: int = 0
    allocated_travel: int = 0
    shares: dict[str, int] = field(default_factory=dict)
    reserved: dict[str, int] = field(default_factory=dict)
    spent_fee: dict[str, int] = field(default_factory=dict)
    spent_travel: dict[str, int] = field(default_factory=dict)

    @property
    def allocated(self) -> int:
        return self.allocated_fee + self.allocated_travel

    @property
    def shared(self) -> int:
        return sum(self.shares.values())

    @property
    def reserved_total(self) -> int:
        return sum(self.reserved.values())

    @property
    def spent_total(self) -> int:
        return sum(self.spent_fee.values()) + sum(self.spent_travel.values())

    @property
    def remaining(self) -> int:
        return self.allocated - self.reserved_total - self.spent_total

    def spent(self, holder: str) -> int:
        return self.spent_fee.get(holder, 0) + self.spent_travel.get(holder, 0)

    def used(self, holder: str) -> int:
        return self.reserved.get(holder, 0) + self.spent(holder)

    def normalised(self) -> "Balances":
        """Zero entries dropped, so two balances compare equal whatever history produced them."""
        nz = lambda d: {k: v for k, v in sorted(d.items()) if v}  # noqa: E731
        return Balances(self.allocated_fee, self.allocated_travel, nz(self.shares), nz(self.reserved),
                        nz(self.spent_fee), nz(self.spent_travel))

    def to_dict(self) -> dict:
        pairs = lambda d: [{"member_id": k, "amount": v} for k, v in sorted(d.items()) if v]  # noqa: E731
        return {"allocated_fee": self.allocated_fee, "allocated_travel": self.allocated_travel,
                "shares": pairs(self.shares), "reserved": pairs(self.reserved),
                "spent_fee": pairs(self.spent_fee), "spent_travel": pairs(self.spent_travel),
                # totals, stored for reports and queries; derived, never read back
                "allocated": self.allocated, "reserved_total": self.reserved_total,
                "spent_total": self.spent_total, "remaining": self.remaining}

    @classmethod
    def from_dict(cls, d: dict) -> "Balances":
        m = lambda name: {p["member_id"]: p["amount"] for p in d.get(name, [])}  # noqa: E731
        return cls(d.get("allocated_fee", 0), d.get("allocated_travel", 0), m("shares"), m("reserved"),
                   m("spent_fee"), m("spent_travel"))


def _add(d: dict[str, int], key: str | None, delta: int) -> None:
    if key is not None and delta:
        d[key] = d.get(key, 0) + delta


def recompute(entries: list[Entry]) -> Balances:
    """R-BUD-05: a frame's balances from its ledger alone."""
    b = Balances()
    for e in entries:
        b.allocated_fee += e.fee
        b.allocated_travel += e.travel
        _add(b.shares, e.member_id, e.share)
        _add(b.reserved, e.member_id, e.reserved)
        _add(b.spent_fee, e.member_id, e.spent_fee)
        _add(b.spent_travel, e.member_id, e.spent_travel)
    return b.normalised()


@dataclass
class Reservation:
    dispatch_id: str
    member_id: str
    amount: int
    fee: int
    travel: int
    command_id: str


@dataclass
class Answer:
    """The answer to one budget command; a duplicate command gets this same answer again."""

    kind: Literal["reserved", "refused", "committed", "released", "refunded", "ignored"]
    command_id: str
    dispatch_id: str
    member_id: str | None = None
    amount: int = 0
    reason_code: str | None = None
    reason: str = ""
    spent: int = 0
    returned: int = 0
    uncovered: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Answer":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass
class Frame:
    """A platform's budget frame for one fiscal year (R-BUD-01)."""

    frame_id: str
    fiscal_year: int
    platform_id: str
    representative_id: str
    bureau_id: str | None = None
    balances: Balances = field(default_factory=Balances)
    reservations: dict[str, Reservation] = field(default_factory=dict)
    settled: dict[str, str] = field(default_factory=dict)   # dispatch id -> "committed" / "released"
    answers: dict[str, Answer] = field(default_factory=dict)
    closed: bool = False
    entry_count: int = 0                  # ledger entries already stored
    new_entries: list[Entry] = field(default_factory=list)   # produced since load, to be appended
    new_answers: list[Answer] = field(default_factory=list)
    # reservations opened or settled since load: (state, reservation), state "open"/"committed"/"released"
    reservation_changes: list[tuple[str, Reservation]] = field(default_factory=list)

    # --- reading --------------------------------------------------------------------------------
    def available(self, holder: str) -> int:
        """R-BUD-02: the representative may use what it has not given away; a member, its share."""
        b = self.balances
        if holder == self.representative_id:
            return b.allocated - b.shared - b.used(self.representative_id)
        return b.shares.get(holder, 0) - b.used(holder)

    def open_reservations(self) -> list[str]:
        return sorted(self.reservations)

    def changed(self) -> bool:
        return bool(self.new_entries or self.new_answers)

    def violations(self, all_reservations_loaded: bool = True) -> list[str]:
        """R-BUD-03 invariants; empty when the frame is sound."""
        b, out = self.balances, []
        if b.reserved_total + b.spent_total > b.allocated:
            out.append(f"overspent: reserved {b.reserved_total} + spent {b.spent_total} > allocated {b.allocated}")
        holders = set(b.shares) | set(b.reserved) | set(b.spent_fee) | set(b.spent_travel) | {self.representative_id}
        for h in holders:
            if self.available(h) < 0:
                out.append(f"holder {h} uses more than it holds")
        for name in ("shares", "reserved", "spent_fee", "spent_travel"):
            if any(v < 0 for v in getattr(b, name).values()):
                out.append(f"negative {name}")
        if b.allocated - b.shared < 0:
            out.append("shares exceed the allocation")
        if all_reservations_loaded and sum(r.amount for r in self.reservations.values()) != b.reserved_total:
            out.append("open reservations do not add up to the reserved balance")
        return out

    # --- helpers ---------------------------------------------------------------------------------
    def _entry(self, kind, actor: str, why: str, at: str, **deltas) -> Entry:
        e = Entry(seq=self.entry_count + len(self.new_entries) + 1, kind=kind, actor=actor, why=why, at=at, **deltas)
        self.new_entries.append(e)
        return e

    def _answer(self, a: Answer) -> Answer:
        self.answers[a.command_id] = a
        self.new_answers.append(a)
        return a

    def _open(self) -> None:
        if self.closed:
            raise refused("frame_closed", f"The frame {self.frame_id} is closed for fiscal year {self.fiscal_year}.")

    # --- R-BUD-01: allocation by the bureau ---------------------------------------------------------
    @classmethod
    def allocate(cls, *, frame_id: str, fiscal_year: int, platform_id: str, representative_id: str,
                 bureau_id: str | None, fee: int, travel: int, actor: str, why: str, at: str) -> "Frame":
        """R-BUD-01: a bureau allocates fee + travel for a fiscal year to the platform's representative."""
        f = cls(frame_id=frame_id, fiscal_year=fiscal_year, platform_id=platform_id,
                representative_id=representative_id, bureau_id=bureau_id)
        f.change_allocation(fee=fee, travel=travel, actor=actor, why=why, at=at)
        return f

    def change_allocation(self, *, fee: int, travel: int, actor: str, why: str, at: str) -> None:
        """R-BUD-01/03: a bureau changes the frame; it never shrinks below what is shared or used."""
        fee, travel = _yen(fee, "The fee allocation"), _yen(travel, "The travel allocation")
        self._open()
        b = self.balances
        floor = b.shared + b.used(self.representative_id)
        if fee + travel < floor:
            raise refused("below_commitments",
                              f"The frame cannot be lowered to {fee + travel} yen: {b.shared} yen are shared with "
                              f"members and the representative uses {b.used(self.representative_id)} yen.")
        d_fee, d_travel = fee - b.allocated_fee, travel - b.allocated_travel
        if not d_fee and not d_travel:
            return
        b.allocated_fee, b.allocated_travel = fee, travel
        self._entry("allocation", actor, why, at, fee=d_fee, travel=d_travel)

    # --- R-BUD-02: shares ------------------------------------------------------------------------------
    def set_share(self, member_id: str, member_role: str | None, amount: int, *, actor: str, why: str, at: str,
                  params: Params = DEFAULT_PARAMS) -> int:
        """R-BUD-02 / R-PF-04: the representative gives a dispatch-capable member a share; lowered never below
        what the member has reserved + spent, raised only from the unshared remainder."""
        amount = _yen(amount, "The share")
        self._open()
        if member_id == self.representative_id:
            raise refused("not_allowed", "The representative uses the unshared remainder; it takes no share.")
        if member_role not in params.budget_roles:
            raise refused("not_allowed", f"Member {member_id} may not manage a dispatch budget (R-PF-04: only "
                              "the representative and dispatch-capable members may).")
        b = self.balances
        old = b.shares.get(member_id, 0)
        if amount < b.used(member_id):
            raise refused("below_commitments", f"Member {member_id} has already reserved or spent "
                              f"{b.used(member_id)} yen; its share cannot go below that.")
        if amount - old > self.available(self.representative_id):
            raise refused("insufficient_balance", f"Only {self.available(self.representative_id)} yen are "
                              f"unshared and unused; the share can rise by at most that.")
        if amount != old:
            b.shares[member_id] = amount
            self._entry("share", actor, why, at, member_id=member_id, share=amount - old)
        return amount

    def return_share(self, member_id: str, *, actor: str, why: str, at: str) -> int:
        """R-BUD-02: the unused part of a member's share goes back to the representative."""
        self._open()
        if member_id == self.representative_id:
            raise refused("not_allowed", "The representative holds the unshared remainder; it has no share to return.")
        b = self.balances
        old, keep = b.shares.get(member_id, 0), b.used(member_id)
        if old != keep:
            b.shares[member_id] = keep
            self._entry("share", actor, why, at, member_id=member_id, share=keep - old)
        return old - keep

    # --- reservations (R-DSP-08, R-BUD-03/04) --------------------------------------------------------------
    def reserve(self, *, command_id: str, dispatch_id: str, member_id: str, member_role: str | None,
                fee: int, travel: int, actor: str, at: str, params: Params = DEFAULT_PARAMS) -> Answer:
        """R-DSP-08 / R-BUD-02 / R-BUD-03: holds fee + travel of a dispatch within the member's budget, or refuses."""
        if command_id in self.answers:
            return self.answers[command_id]
        fee, travel = _yen(fee, "The fee"), _yen(travel, "Travel costs")
        if dispatch_id in self.reservations:  # the same dispatch asked again under a new command id
            r = self.reservations[dispatch_id]
            return self._answer(Answer("reserved", command_id, dispatch_id, r.member_id, r.amount))
        refuse = lambda code, reason: self._answer(Answer("refused", command_id, dispatch_id, member_id,  # noqa: E731
                                                          fee + travel, reason_code=code, reason=reason))
        if dispatch_id in self.settled:  # a dispatch's budget is settled once; a new dispatch has a new id
            return refuse("not_allowed", f"Dispatch {dispatch_id} has already had its budget "
                                         f"{self.settled[dispatch_id]}.")
        if self.closed:
            return refuse("frame_closed", f"The budget frame of fiscal year {self.fiscal_year} is closed.")
        role = member_role or (MemberRole.REPRESENTATIVE.value if member_id == self.representative_id else None)
        if role not in params.budget_roles:
            return refuse("not_allowed", f"Institution {member_id} may not dispatch on this platform's budget "
                                         "(R-PF-04: only the representative and dispatch-capable members).")
        amount, available = fee + travel, self.available(member_id)
        if amount > available:
            return refuse("insufficient_balance", f"The dispatch needs {amount} yen but only {available} yen are "
                                                  "available in this institution's budget.")
        self.balances.reserved[member_id] = self.balances.reserved.get(member_id, 0) + amount
        self.reservations[dispatch_id] = r = Reservation(dispatch_id, member_id, amount, fee, travel, command_id)
        self.reservation_changes.append(("open", r))
        self._entry("reservation", actor, f"reserved for dispatch {dispatch_id}", at, member_id=member_id,
                    dispatch_id=dispatch_id, command_id=command_id, reserved=amount)
        return self._answer(Answer("reserved", command_id, dispatch_id, member_id, amount))

    def commit(self, *, command_id: str, dispatch_id: str, fee: int, travel: int, actor: str, at: str) -> Answer:
        """R-BUD-04: the confirmed fee + travel become spending; the difference returns. Above the reservation,
        the extra comes only from the holder's available balance (R-BUD-03), the rest is `uncovered`."""
        if command_id in self.answers:
            return self.answers[command_id]
        fee, travel = _yen(fee, "The fee"), _yen(travel, "Travel costs")
        r = self.reservations.get(dispatch_id)
        if r is None:
            return self._answer(Answer("ignored", command_id, dispatch_id,
                                       reason=f"dispatch {dispatch_id} holds no open reservation"))
        b = self.balances
        del self.reservations[dispatch_id]
        self.reservation_changes.append(("committed", r))
        self.settled[dispatch_id] = "committed"
        _add(b.reserved, r.member_id, -r.amount)  # a zero reservation has no stored entry (R-DSP-11)
        actual = fee + travel
        spend = min(actual, self.available(r.member_id))  # available now includes the released reservation
        spend_fee = min(fee, spend)
        spend_travel = spend - spend_fee
        _add(b.spent_fee, r.member_id, spend_fee)
        _add(b.spent_travel, r.member_id, spend_travel)
        returned, uncovered = max(r.amount - spend, 0), actual - spend
        why = f"dispatch {dispatch_id} confirmed: {actual} yen actual, {r.amount} reserved"
        if uncovered:
            why += f", {uncovered} yen not covered by the frame"
        self._entry("commit", actor, why, at, member_id=r.member_id, dispatch_id=dispatch_id, command_id=command_id,
                    reserved=-r.amount, spent_fee=spend_fee, spent_travel=spend_travel)
        return self._answer(Answer("committed", command_id, dispatch_id, r.member_id, r.amount,
                                   spent=spend, returned=returned, uncovered=uncovered))

    def release(self, *, command_id: str, dispatch_id: str, reason: str, actor: str, at: str) -> Answer:
        """R-BUD-04 / R-DSP-14: a cancelled dispatch's reservation returns to the frame."""
        if command_id in self.answers:
            return self.answers[command_id]
        r = self.reservations.pop(dispatch_id, None)
        if r is None:
            return self._answer(Answer("ignored", command_id, dispatch_id,
                                       reason=f"dispatch {dispatch_id} holds no open reservation"))
        self.reservation_changes.append(("released", r))
        self.settled[dispatch_id] = "released"
        _add(self.balances.reserved, r.member_id, -r.amount)
        self._entry("release", actor, f"dispatch {dispatch_id} released: {reason or 'cancelled'}", at,
                    member_id=r.member_id, dispatch_id=dispatch_id, command_id=command_id, reserved=-r.amount)
        return self._answer(Answer("released", command_id, dispatch_id, r.member_id, r.amount))

    def credit_refund(self, *, command_id: str, dispatch_id: str, member_id: str, amount: int, actor: str,
                      at: str) -> Answer:
        """R-DSP-13, R-BUD-05: a refund repaid after fraud returns to the frame as negative spending of the member that
        spent it (fee first, then travel), never more than that member spent. Allowed on a closed frame too: the
        money of that fiscal year comes back to that year's ledger."""
        if command_id in self.answers:
            return self.answers[command_id]
        amount = _yen(amount, "The refund")
        if self.settled.get(dispatch_id) != "committed":
            return self._answer(Answer("ignored", command_id, dispatch_id, member_id,
                                       reason=f"dispatch {dispatch_id} has no committed spending in this frame"))
        b = self.balances
        back_fee = min(amount, b.spent_fee.get(member_id, 0))
        back_travel = min(amount - back_fee, b.spent_travel.get(member_id, 0))
        _add(b.spent_fee, member_id, -back_fee)
        _add(b.spent_travel, member_id, -back_travel)
        self._entry("refund", actor, f"dispatch {dispatch_id}: refund of {back_fee + back_travel} yen repaid after "
                    "fraud (R-DSP-13)", at, member_id=member_id, dispatch_id=dispatch_id, command_id=command_id,
                    spent_fee=-back_fee, spent_travel=-back_travel)
        return self._answer(Answer("refunded", command_id, dispatch_id, member_id, back_fee + back_travel))

    def close(self, *, actor: str, why: str, at: str) -> list[str]:
        """Fiscal-year close: no new reservations; open ones may still be committed or released."""
        self._open()
        self.closed = True
        self._entry("close", actor, why or "fiscal year closed", at)
        return self.open_reservations()

    # --- persistence shape (plain dicts; the store decides where they live) --------------------------
    def state(self) -> dict:
        """The frame's own fields as stored; reservations, answers and ledger entries are stored apart."""
        return {"fiscal_year": self.fiscal_year, "platform_id": self.platform_id, "bureau_id": self.bureau_id,
                "representative_id": self.representative_id, "closed": self.closed,
                "balances": self.balances.to_dict(),
                "entry_count": self.entry_count + len(self.new_entries)}

    @classmethod
    def from_state(cls, frame_id: str, doc: dict, answers: list[dict] = (), reservations: list[dict] = (),
                   settled: dict[str, str] | None = None) -> "Frame":
        """A frame with the answers, open and settled reservations the caller needs (all, or the relevant ones)."""
        return cls(frame_id=frame_id, fiscal_year=doc["fiscal_year"], platform_id=doc["platform_id"],
                   representative_id=doc["representative_id"], bureau_id=doc.get("bureau_id"),
                   balances=Balances.from_dict(doc.get("balances", {})),
                   reservations={r["dispatch_id"]: Reservation(**{k: r[k] for k in Reservation.__dataclass_fields__})
                                 for r in reservations},
                   settled=dict(settled or {}),
                   answers={a["command_id"]: Answer.from_dict(a) for a in answers},
                   closed=doc.get("closed", False), entry_count=doc.get("entry_count", 0))

"""Pure bookkeeping of learning business profiles in batches (R-OPS-03, issue 22 item 1): no I/O, data in, answers
out. `store.learn_profiles` does the reads and writes around it (its docstring has the write protocol).

- `fold`: a business's new events of a batch, in order, applied to its stored read-model state exactly as one event
  at a time would (same segment, peer group, indicators, pushes R-NOT-01), giving its one `$set` and the net move of
  its contribution to the peer sketches (`peer_groups`, `industry_peers`).
- `merge`: the contributions of a whole batch, one `$inc` per group document.
- contributions are kept as `[{"c": collection, "g": group, "inc": [{"k": path, "n": n}, ...]}]` (a list, because
  sketch paths hold dots, which a stored field name may not; of documents, because FerretDB stores no nested arrays).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from recommend_service import benchmark, diagnosis, domain

GROUPS = ("peer_groups", "industry_peers")  # the shared aggregate documents a profile contributes to


def sketch_moves(old_group: str | None, old_values: dict | None, group: str, values: dict,
                 keys: tuple[str, ...]) -> dict[str, dict]:
    """The `$inc` per group document that moves one business's figures out of its old group's sketch and into the
    new one's (one document when the group is the same; unchanged figures cancel out; empty moves left out)."""
    moves: dict[str, dict] = {}
    if old_group:
        moves[old_group] = {**{f"sketch.{k}": n for k, n in diagnosis.sketch_delta(old_values, None, keys).items()},
                            "n": -1}
    inc = moves.setdefault(group, {})
    for k, n in {**{f"sketch.{k}": n for k, n in diagnosis.sketch_delta(None, values, keys).items()}, "n": 1}.items():
        inc[k] = inc.get(k, 0) + n
    out = {g: {k: n for k, n in inc.items() if n} for g, inc in moves.items()}
    return {g: inc for g, inc in out.items() if inc}


@dataclass
class Folded:
    """What a business's new events of a batch change: its `$set`, the programmes newly pushed (with the event that
    pushed each, for the Notify's cause), and the contribution moves from the stored state to the final one."""
    set: dict = field(default_factory=dict)
    notified: list[str] = field(default_factory=list)
    pushes: list[tuple[int, dict]] = field(default_factory=list)  # (index of the event in `events`, programme)
    owner: str | None = None
    segment: str | None = None
    moves: list[dict] = field(default_factory=list)


def fold(old: dict, events: list[tuple[dict, str | None]], candidates: dict[str, list[dict]]) -> Folded:
    """`old`: the stored profile document ({} for a new business); `events`: (profile as the event gives it, owner
    the event names) in order; `candidates`: each segment's candidate programmes. The same transition as one event
    at a time: the owner is the first one known, financials stay when an event carries none, a programme is pushed
    once per business (to an owned business) when it matches well enough."""
    out = Folded(owner=old.get("owner"))
    notified = set(old.get("notified") or [])
    financials = old.get("financials") or []
    for i, (profile, owner) in enumerate(events):
        out.owner = out.owner or owner
        size = domain.size_class(profile["industry"], profile["employees"])
        seg = domain.segment(profile["industry"], size, profile["prefecture"])
        group = domain.peer_group(profile["industry"], size)
        if "financials" in profile:
            financials = profile["financials"]
        cands = candidates[seg]
        ids = set(domain.to_push(cands, {**profile, "size": size}, notified)) if out.owner else set()
        for p in cands:
            if p["programme_id"] in ids:
                out.pushes.append((i, p))
                out.notified.append(p["programme_id"])
                notified.add(p["programme_id"])
        out.set.update({**profile, "owner": out.owner, "size": size, "segment": seg, "peer_group": group,
                        "indicators": diagnosis.indicators(financials, profile["employees"]),
                        "industry_group": profile["industry"],
                        "bench_values": benchmark.values(financials, profile["employees"])})
        out.segment = seg
    if events:
        s = out.set
        peer = sketch_moves(old.get("peer_group"), old.get("indicators") if old.get("peer_group") else None,
                            s["peer_group"], s["indicators"], diagnosis.INDICATORS)
        industry = sketch_moves(old.get("industry_group"), old.get("bench_values"), s["industry_group"],
                                s["bench_values"], benchmark.KEYS)
        out.moves = [*as_contributions("peer_groups", peer), *as_contributions("industry_peers", industry)]
    return out


def as_contributions(collection: str, moves: dict[str, dict]) -> list[dict]:
    return [{"c": collection, "g": g, "inc": [{"k": k, "n": n} for k, n in sorted(inc.items())]}
            for g, inc in sorted(moves.items())]


def merge(contributions: list[dict]) -> dict[tuple[str, str], dict[str, int]]:
    """(collection, group) -> the one `$inc` of the batch (deltas of every business added up; a group whose deltas
    cancel out is still listed, with an empty `$inc`: its write still records the batch, see store)."""
    out: dict[tuple[str, str], dict[str, int]] = {}
    for c in contributions:
        inc = out.setdefault((c["c"], c["g"]), {})
        for d in c["inc"]:
            inc[d["k"]] = inc.get(d["k"], 0) + d["n"]
    return {key: {k: n for k, n in inc.items() if n} for key, inc in out.items()}

"""R-BUD-03 / R-BUD-05 property: random interleavings of allocate, sub-allocate, reserve, commit, release,
close and duplicate deliveries never overspend a frame, and the balances always equal the ledger's sum."""
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from budget_service.domain import Frame, recompute
from servicekit.refusals import Rejected

AT = "2026-05-01T00:00:00Z"
REP = "rep"
MEMBERS = {"rep": "representative", "m1": "dispatch_member", "m2": "dispatch_member", "x": "institution"}
yen = st.integers(min_value=0, max_value=60_000)

op = st.one_of(
    st.tuples(st.just("allocate"), yen, yen),
    st.tuples(st.just("share"), st.sampled_from(sorted(MEMBERS)), yen),
    st.tuples(st.just("return"), st.sampled_from(sorted(MEMBERS))),
    st.tuples(st.just("reserve"), st.sampled_from(sorted(MEMBERS)), yen, yen),
    st.tuples(st.just("commit"), st.integers(0, 30), yen, yen),
    st.tuples(st.just("release"), st.integers(0, 30)),
    st.tuples(st.just("duplicate"), st.integers(0, 60)),
    st.tuples(st.just("close")),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.tuples(yen, yen), st.lists(op, max_size=60))
def test_R_BUD_03_R_BUD_05_random_interleavings_never_overspend_and_ledger_matches(initial, ops):
    f = Frame.allocate(frame_id="f", fiscal_year=2026, platform_id="p", representative_id=REP, bureau_id="b",
                       fee=initial[0], travel=initial[1], actor="bureau", why="", at=AT)
    sent: list[tuple] = []     # every command delivered, so duplicates can be replayed
    answers: dict[str, object] = {}
    for i, o in enumerate(ops):
        before = (f.balances.normalised(), len(f.new_entries))
        try:
            if o[0] == "allocate":
                f.change_allocation(fee=o[1], travel=o[2], actor="bureau", why="change", at=AT)
            elif o[0] == "share":
                f.set_share(o[1], MEMBERS[o[1]], o[2], actor="rep", why="share", at=AT)
            elif o[0] == "return":
                f.return_share(o[1], actor="rep", why="return", at=AT)
        except Rejected:
            assert (f.balances.normalised(), len(f.new_entries)) == before  # a refused change changes nothing
        if o[0] == "reserve":
            sent.append(("reserve", f"c{i}", f"d{i}", o[1], o[2], o[3]))
        elif o[0] == "commit":
            sent.append(("commit", f"c{i}", target(sent, o[1]), o[2], o[3]))
        elif o[0] == "release":
            sent.append(("release", f"c{i}", target(sent, o[1])))
        elif o[0] == "close":
            if not f.closed:
                f.close(actor="bureau", why="close", at=AT)
        elif o[0] == "duplicate" and sent:
            cmd = sent[o[1] % len(sent)]
            a = deliver(f, cmd)
            assert a == answers[cmd[1]]  # the original answer ...
            assert (f.balances.normalised(), len(f.new_entries)) == before  # ... and nothing moved
            continue
        if sent and sent[-1][1] == f"c{i}":
            answers[f"c{i}"] = deliver(f, sent[-1])
        # after every step: never overspent, and the ledger explains every balance
        assert f.violations() == []
        b = f.balances
        assert b.reserved_total + b.spent_total <= b.allocated
        assert recompute(f.new_entries) == b.normalised()


def target(sent: list[tuple], n: int) -> str:
    """Mostly a dispatch that asked for a reservation (open, settled or refused), sometimes an unknown one."""
    asked = [c[2] for c in sent if c[0] == "reserve"]
    return asked[n % len(asked)] if asked and n < 27 else f"unknown-{n}"


def deliver(f: Frame, cmd: tuple):
    if cmd[0] == "reserve":
        _, cid, did, m, fee, travel = cmd
        return f.reserve(command_id=cid, dispatch_id=did, member_id=m, member_role=MEMBERS[m], fee=fee,
                         travel=travel, actor="dispatch", at=AT)
    if cmd[0] == "commit":
        _, cid, did, fee, travel = cmd
        return f.commit(command_id=cid, dispatch_id=did, fee=fee, travel=travel, actor="agency", at=AT)
    _, cid, did = cmd
    return f.release(command_id=cid, dispatch_id=did, reason="", actor="dispatch", at=AT)

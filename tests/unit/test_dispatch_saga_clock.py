"""The saga's clock, pure (R-DSP-08, R-DSP-14): unanswered budget commands are re-sent, then made visible."""
from datetime import UTC, datetime, timedelta

from dispatch_service.domain import can
from dispatch_service.domain.saga import UNANSWERED, SagaParams, overdue, waiting_for

T0 = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)
P = SagaParams(answer_seconds=60, max_attempts=3)


def accepted(attempts=1, sent=T0) -> dict:
    return {"status": "accepted", "reserve": {"command_id": "r1", "sent_at": sent, "attempts": attempts}}


def test_R_DSP_08_a_reservation_unanswered_in_time_is_resent_with_the_same_command():
    assert overdue(accepted(), T0 + timedelta(seconds=59), P) is None
    assert overdue(accepted(), T0 + timedelta(seconds=60), P) == "resend"
    assert overdue(accepted(attempts=2), T0 + timedelta(seconds=61), P) == "resend"


def test_R_DSP_14_after_the_last_attempt_the_dispatch_shows_budget_unanswered():
    assert overdue(accepted(attempts=3), T0 + timedelta(seconds=61), P) == "give_up"
    assert can("accepted", UNANSWERED) and can("confirmed", UNANSWERED)
    # the agency's retry goes back to waiting; a late answer still applies
    assert all(can(UNANSWERED, s) for s in ("accepted", "confirmed", "reserved", "refused", "paid"))
    assert not can(UNANSWERED, "approved")
    assert overdue({**accepted(attempts=3), "status": UNANSWERED}, T0 + timedelta(days=1), P) is None  # no loop


def test_R_DSP_14_answered_or_other_states_need_nothing():
    assert waiting_for({**accepted(), "reserved": {"amount": 1}}) is None
    assert waiting_for({"status": "approved", "reserve": {"command_id": "r1"}, "reserved": {"amount": 1}}) is None
    assert overdue({"status": "scheduled"}, T0 + timedelta(days=1), P) is None


def test_R_DSP_08_a_payment_command_waits_the_same_way():
    confirmed = {"status": "confirmed", "reserve": {"command_id": "r1"}, "reserved": {"amount": 1},
                 "commit": {"command_id": "c1", "sent_at": T0, "attempts": 1}}
    assert waiting_for(confirmed) == "commit"
    assert overdue(confirmed, T0 + timedelta(seconds=61), P) == "resend"
    assert waiting_for({**confirmed, "payment": {"spent": 1}}) is None


def test_R_DSP_03_a_slot_is_held_only_by_a_written_accepted_dispatch():
    from dispatch_service.domain.slots import gives_back, holds_slot

    assert holds_slot({"counts_free": True})
    assert not holds_slot(None)  # claimed, then the process died before the request was written
    assert not holds_slot({"status": "requested"})  # screened but never accepted
    assert not holds_slot({"counts_free": False})  # gave it back
    assert gives_back() == {"counts_free": False, "slot_release": "pending"}  # written with the status change


def test_R_DSP_14_the_clock_watches_what_it_must_look_at_again_and_finds_it_when_due():
    from dispatch_service.watch import Every, Watch

    w = Watch()
    w.add("d-1", since=100.0), w.add("d-2", since=40.0), w.add("d-3", since=70.0)
    assert w.due(older_than=70.0) == ["d-2", "d-3"]  # oldest first; d-1 not yet
    w.drop("d-2"), w.drop("never-watched")
    w.add("d-3", since=150.0)  # sent again: due from the new time
    assert w.due(older_than=120.0) == ["d-1"] and "d-3" in w and len(w) == 2

    scans = Every(600.0)
    assert scans.due()  # at once: what a previous process left is looked for at start
    scans.done(began=scans.next)  # a scan that began at monotonic 0, i.e. took longer than 30 s: 20 times as long
    assert not scans.due() and scans.next >= 600.0

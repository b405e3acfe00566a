"""The record of recent rotations behind "in flight is not reuse" (SECURITY B3): when each
of this instance's rotations became durable and was answered, bounded in time and size.
The rotations themselves, held between stamp and commit, are in
``tests/contract/test_in_flight.py``.
"""

from __future__ import annotations

from tokensmith.refresh.inflight import MAX_ENTRIES, RETENTION, RecentRotations


def test_a_rotation_is_in_flight_until_durable_then_remembered_for_the_retention() -> None:
    recent = RecentRotations()
    recent.won(b"t", b"winner", 100.0)
    assert recent.sent_before_durable(b"t", 1e12)  # in flight: any sender lost the race
    recent.durable(b"t", b"winner", 101.0)
    assert recent.sent_before_durable(b"t", 100.5)
    assert not recent.sent_before_durable(b"t", 101.0)
    recent.answered(b"t", 101.5)
    assert recent.sent_before_durable(b"t", 101.2)
    recent.won(b"other", b"x", 101.5 + RETENTION)  # evicts what expired by then
    assert not recent.sent_before_durable(b"t", 0.0)


def test_only_the_attempt_that_won_can_undo_or_settle_its_entry() -> None:
    recent = RecentRotations()
    recent.won(b"t", b"winner", 100.0)
    recent.failed(b"t", b"loser")
    recent.durable(b"t", b"loser", 100.0)
    assert recent.sent_before_durable(b"t", 1e12)  # still the winner's, still in flight
    recent.failed(b"t", b"winner")
    assert not recent.sent_before_durable(b"t", 0.0)


def test_a_commit_that_never_ends_is_forgotten_after_the_retention() -> None:
    recent = RecentRotations()
    recent.won(b"t", b"winner", 100.0)
    recent.won(b"u", b"other", 100.0 + RETENTION)
    assert not recent.sent_before_durable(b"t", 0.0)
    assert recent.sent_before_durable(b"u", 0.0)


def test_memory_is_bounded_under_any_load() -> None:
    recent = RecentRotations()
    for i in range(MAX_ENTRIES + 10):
        recent.won(i.to_bytes(4, "big"), b"a", 100.0)
    assert not recent.sent_before_durable((0).to_bytes(4, "big"), 0.0)
    assert recent.sent_before_durable((MAX_ENTRIES + 9).to_bytes(4, "big"), 0.0)

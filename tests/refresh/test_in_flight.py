"""In flight is not reuse (SECURITY B3): a presentation sent before the winning rotation was
durable is refused without revoking anything; one sent after it is reuse (grace 0).

The winner here is held between its stamp and its commit by a store whose units advance the
manual clock after they ran: the commit ends two seconds after the stamp, as a slow fsync or
a loaded database would make it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tokensmith.clock import ManualClock
from tokensmith.errors import InvalidGrant, RefreshTokenReused
from tokensmith.events import EventBus
from tokensmith.refresh.inflight import MAX_ENTRIES, RETENTION, RecentRotations
from tokensmith.refresh.reuse import RequestContext
from tokensmith.refresh.service import RefreshService
from tokensmith.store.sql import SqlStore
from tokensmith.store.sql.models import metadata

from .conftest import T0, Backend, Recorder, login, make_service, new_jti, rows

COMMIT_TIME = 2.0


class SlowCommitStore(SqlStore):
    """A real store whose every unit of work takes ``COMMIT_TIME`` on the clock between
    what it did and its commit."""

    clock: ManualClock

    def pending(self, work: Callable[[Any], Any]) -> Any:
        def slow(tx: Any) -> Any:
            value = work(tx)
            self.clock.advance(COMMIT_TIME)
            return value

        return super().pending(slow)


@pytest.fixture
def slow_store(backend: Backend, clock: ManualClock) -> Any:
    store = SlowCommitStore(backend.engine())
    store.clock = clock
    metadata.create_all(store.engine)
    yield store
    store.engine.dispose()


def _present(service: RefreshService, token: str, received_at: float) -> None:
    service.rotate(
        token,
        client_id="spa",
        scope=None,
        access_jti=new_jti(),
        access_exp=int(T0) + 600,
        context=RequestContext(received_at=received_at),
    ).durable()


def test_a_refresh_sent_while_the_winner_committed_is_refused_and_revokes_nothing(
    slow_store: SlowCommitStore, clock: ManualClock, bus: EventBus, recorder: Recorder
) -> None:
    service = make_service(slow_store, clock, bus)
    token = login(service, clock).refresh_token or ""
    stamped = clock.now()
    _present(service, token, stamped)  # the winner: durable COMMIT_TIME after its stamp
    with pytest.raises(InvalidGrant) as refused:
        _present(service, token, stamped + COMMIT_TIME / 2)
    assert not isinstance(refused.value, RefreshTokenReused)
    assert rows(slow_store, "SELECT revoked_at FROM ts_families") == [(None,)]
    assert [e.data["family_id"] for e in recorder.named("refresh_conflict")] == [
        recorder.named("issued")[0].data["family_id"]
    ]
    # Sent once the rotation was durable: reuse, and the family is revoked.
    with pytest.raises(RefreshTokenReused):
        _present(service, token, stamped + COMMIT_TIME)
    assert rows(slow_store, "SELECT revoked_at FROM ts_families")[0][0] is not None


def test_another_instance_judges_by_the_winners_stamp(
    slow_store: SlowCommitStore, backend: Backend, clock: ManualClock
) -> None:
    """Only the instance that rotated knows when its commit ended; another instance refuses
    what was sent before the winner's stamp and treats anything later as reuse."""
    winner = make_service(slow_store, clock)
    other = make_service(SqlStore(slow_store.engine), clock)
    token = login(winner, clock).refresh_token or ""
    stamped = clock.now()
    _present(winner, token, stamped)
    with pytest.raises(InvalidGrant) as refused:
        _present(other, token, stamped)
    assert not isinstance(refused.value, RefreshTokenReused)
    with pytest.raises(RefreshTokenReused):
        _present(other, token, stamped + COMMIT_TIME / 2)


# -- the record of recent rotations ----------------------------------------------------------


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

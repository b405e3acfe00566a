"""In flight is not reuse (SECURITY B3), on every store: a presentation sent before the
winning rotation was durable is refused without revoking anything; one sent after it is
reuse (grace 0).

The winner here is held between its stamp and its commit by a store whose units advance the
manual clock after they ran: the commit ends two seconds after the stamp, as a slow fsync or
a loaded database would make it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from tokensmith.clock import ManualClock
from tokensmith.errors import InvalidGrant, RefreshTokenReused
from tokensmith.events import EventBus
from tokensmith.refresh.reuse import RequestContext
from tokensmith.refresh.service import RefreshService
from tokensmith.store.protocols import RefreshStore, RefreshTransaction
from tokensmith.store.records import Pending

from ..refresh.conftest import T0, Recorder, login, make_service, new_jti
from .conftest import Store, sessions

COMMIT_TIME = 2.0
T = TypeVar("T")


class SlowCommitStore:
    """A real store whose every unit of work takes ``COMMIT_TIME`` on the clock between
    what it did and its commit; everything else is the store's own."""

    def __init__(self, store: RefreshStore, clock: ManualClock) -> None:
        self.store = store
        self._clock = clock

    def pending(self, work: Callable[[RefreshTransaction], T]) -> Pending[T]:
        def slow(tx: RefreshTransaction) -> T:
            value = work(tx)
            self._clock.advance(COMMIT_TIME)
            return value

        return self.store.pending(slow)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


@pytest.fixture
def slow_store(store: Store, clock: ManualClock) -> SlowCommitStore:
    return SlowCommitStore(store, clock)


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
    slow_store: SlowCommitStore, store: Store, clock: ManualClock, bus: EventBus, recorder: Recorder
) -> None:
    service = make_service(slow_store, clock, bus)  # type: ignore[arg-type]
    token = login(service, clock).refresh_token or ""
    stamped = clock.now()
    _present(service, token, stamped)  # the winner: durable COMMIT_TIME after its stamp
    with pytest.raises(InvalidGrant) as refused:
        _present(service, token, stamped + COMMIT_TIME / 2)
    assert not isinstance(refused.value, RefreshTokenReused)
    assert [f.revoked_at for f in sessions(store)] == [None]
    assert [e.data["family_id"] for e in recorder.named("refresh_conflict")] == [
        recorder.named("issued")[0].data["family_id"]
    ]
    # Sent once the rotation was durable: reuse, and the family is revoked.
    with pytest.raises(RefreshTokenReused):
        _present(service, token, stamped + COMMIT_TIME)
    assert sessions(store)[0].revoked_at is not None


def test_another_instance_judges_by_the_winners_stamp(
    slow_store: SlowCommitStore, another_store: Store, clock: ManualClock
) -> None:
    """Only the instance that rotated knows when its commit ended; another instance refuses
    what was sent before the winner's stamp and treats anything later as reuse."""
    winner = make_service(slow_store, clock)  # type: ignore[arg-type]
    other = make_service(another_store, clock)
    token = login(winner, clock).refresh_token or ""
    stamped = clock.now()
    _present(winner, token, stamped)
    with pytest.raises(InvalidGrant) as refused:
        _present(other, token, stamped)
    assert not isinstance(refused.value, RefreshTokenReused)
    with pytest.raises(RefreshTokenReused):
        _present(other, token, stamped + COMMIT_TIME / 2)

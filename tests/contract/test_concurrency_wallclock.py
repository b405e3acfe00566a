"""R1 on the wall clock. A caller whose request started before the winning rotation
committed was in flight at the same time: it is refused without revoking anything. One
that starts after the rotation finished is a replay, and with no grace window that is
reuse. The ManualClock suites give every caller the same ``now``; here each reads its own.
"""

from __future__ import annotations

import threading
import time

import pytest

from tokensmith.errors import InvalidGrant, RefreshTokenReused

from ..refresh.conftest import login, make_service, new_jti
from .conftest import Store, active_tokens, assert_consistent, race, sessions


class OverlapClock:
    """The wall clock, except that a thread's second reading (the winner's stamp, taken
    inside its transaction) waits until every caller has read its start time: the
    requests then overlap for certain, as they would under real load."""

    def __init__(self, callers: int) -> None:
        self._callers = callers
        self._seen: set[int] = set()
        self._lock = threading.Lock()
        self._all_started = threading.Event()
        self.armed = False

    def now(self) -> float:
        if not self.armed or threading.current_thread() is threading.main_thread():
            return time.time()
        me = threading.get_ident()
        with self._lock:
            first = me not in self._seen
            self._seen.add(me)
            if len(self._seen) == self._callers:
                self._all_started.set()
        if not first:
            assert self._all_started.wait(30), "callers never started"
        return time.time()


@pytest.mark.parametrize("callers", [8, 16], ids=lambda n: f"{n} threads")
def test_callers_in_flight_during_the_rotation_are_refused_not_treated_as_reuse(
    store: Store, callers: int
) -> None:
    clock = OverlapClock(callers)
    service = make_service(store, clock)  # type: ignore[arg-type]
    session = login(service, clock)  # type: ignore[arg-type]
    clock.armed = True
    outcomes = race(service, clock, session.refresh_token or "", callers)  # type: ignore[arg-type]
    winners = [o for o in outcomes if o.startswith("ok:")]
    assert len(winners) == 1, outcomes
    assert outcomes["InvalidGrant"] == callers - 1, outcomes
    assert [f.revoked_at for f in sessions(store)] == [None]
    assert active_tokens(store, session.family_id) == 1
    assert_consistent(store)
    clock.armed = False
    with pytest.raises(RefreshTokenReused):  # the same token once the rotation is over
        service.rotate(
            session.refresh_token or "",
            client_id="spa",
            scope=None,
            access_jti=new_jti(),
            access_exp=int(time.time()) + 300,
        )


@pytest.mark.parametrize("callers", [16], ids=lambda n: f"{n} threads")
def test_a_burst_on_the_wall_clock_has_one_winner_and_a_consistent_family(
    store: Store, callers: int
) -> None:
    """Unforced timing: some callers may start only after the winner committed (reuse,
    family revoked) — either way one winner, only invalid_grant for the rest, and never
    more than one live token."""
    clock = OverlapClock(callers)
    service = make_service(store, clock)  # type: ignore[arg-type]
    session = login(service, clock)  # type: ignore[arg-type]
    outcomes = race(service, clock, session.refresh_token or "", callers)  # type: ignore[arg-type]
    assert sum(1 for o in outcomes if o.startswith("ok:")) == 1, outcomes
    losers = {o for o in outcomes if not o.startswith("ok:")}
    assert losers <= {InvalidGrant.__name__, RefreshTokenReused.__name__}, outcomes
    revoked = sessions(store)[0].revoked_at is not None
    assert revoked == (outcomes[RefreshTokenReused.__name__] > 0)
    assert active_tokens(store, session.family_id) == (0 if revoked else 1)
    assert_consistent(store)

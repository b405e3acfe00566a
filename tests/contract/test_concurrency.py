"""Exactly one winner among threads (SECURITY R1; RFC 9700 §4.14.2) on every store; with a
grace window every caller gets the same child (R3). Processes, kills and forks are the SQL
store's business: ``tests/refresh/test_concurrency.py``."""

from __future__ import annotations

import pytest

from tokensmith.clock import ManualClock

from ..refresh.conftest import login, make_service, refresh
from .conftest import Store, active_tokens, assert_consistent, race, sessions, tokens


@pytest.mark.parametrize("callers", [2, 8, 16, 32], ids=lambda n: f"{n} threads")
def test_concurrent_threads_rotating_one_token_have_exactly_one_winner(
    store: Store, clock: ManualClock, callers: int
) -> None:
    service = make_service(store, clock)
    session = login(service, clock)
    outcomes = race(service, clock, session.refresh_token or "", callers)
    winners = [o for o in outcomes if o.startswith("ok:")]
    assert len(winners) == 1 and outcomes[winners[0]] == 1
    # Losers wait on the lock and then get invalid_grant: not reuse, no revocation.
    assert outcomes["InvalidGrant"] == callers - 1
    assert active_tokens(store, session.family_id) == 1
    assert [f.revoked_at for f in sessions(store)] == [None]
    assert_consistent(store)
    # ...and the single winner's child keeps rotating.
    clock.advance(1)
    refresh(service, clock, winners[0][3:])


@pytest.mark.parametrize("callers", [2, 16], ids=lambda n: f"{n} threads")
def test_concurrent_threads_inside_the_grace_window_all_get_the_same_child(
    store: Store, clock: ManualClock, callers: int
) -> None:
    service = make_service(store, clock, refresh_reuse_grace=10.0, refresh_grace_retries=64)
    session = login(service, clock)
    outcomes = race(service, clock, session.refresh_token or "", callers)
    assert len(outcomes) == 1 and next(iter(outcomes)).startswith("ok:"), outcomes
    assert active_tokens(store, session.family_id) == 1
    assert len(tokens(store)) == 2
    assert_consistent(store)

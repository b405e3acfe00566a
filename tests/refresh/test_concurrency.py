"""Exactly one winner (SECURITY R1; RFC 9700 §4.14.2), with threads and with processes, on
every backend; with a grace window every caller gets the same child (R3). A process killed
mid-rotation leaves a consistent database."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections import Counter
from typing import Any

import pytest

from tokensmith.clock import ManualClock
from tokensmith.errors import InvalidGrant, TemporarilyUnavailable
from tokensmith.refresh.service import RefreshService
from tokensmith.store.sql import SqlStore

from . import workers
from .conftest import (
    Backend,
    active_tokens,
    login,
    make_service,
    new_jti,
    refresh,
    rows,
    settled,
)

JOIN_TIMEOUT = 60


def _race(service: RefreshService, clock: ManualClock, token: str, callers: int) -> Counter[str]:
    barrier = threading.Barrier(callers, timeout=JOIN_TIMEOUT)
    outcomes: list[str] = []
    lock = threading.Lock()
    # Read here, once: a caller's only clock reading before its rotation is the service's.
    exp = int(clock.now()) + 300

    def present() -> None:
        barrier.wait()
        try:
            session = settled(
                service.rotate(
                    token, client_id="spa", scope=None, access_jti=new_jti(), access_exp=exp
                )
            )
            outcome = f"ok:{session.refresh_token}"
        except InvalidGrant as exc:
            outcome = type(exc).__name__
        except TemporarilyUnavailable:
            outcome = "TemporarilyUnavailable"
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=present) for _ in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_TIMEOUT)
    assert not any(t.is_alive() for t in threads)
    return Counter(outcomes)


def _consistent(store: SqlStore) -> None:
    """At most one active token per family, and every used token has its child."""
    assert (
        rows(
            store,
            "SELECT family_id FROM ts_refresh_tokens WHERE used_at IS NULL AND revoked_at IS NULL"
            " GROUP BY family_id HAVING count(*) > 1",
        )
        == []
    )
    assert rows(
        store,
        "SELECT count(*) FROM ts_refresh_tokens p WHERE p.used_at IS NOT NULL AND NOT EXISTS"
        " (SELECT 1 FROM ts_refresh_tokens c WHERE c.parent_hash = p.token_hash)",
    ) == [(0,)]


@pytest.mark.parametrize("callers", [2, 8, 16, 32], ids=lambda n: f"{n} threads")
def test_concurrent_threads_rotating_one_token_have_exactly_one_winner(
    store: SqlStore, clock: ManualClock, callers: int
) -> None:
    service = make_service(store, clock)
    session = login(service, clock)
    outcomes = _race(service, clock, session.refresh_token or "", callers)
    winners = [o for o in outcomes if o.startswith("ok:")]
    assert len(winners) == 1 and outcomes[winners[0]] == 1
    # Losers wait on the lock and then get invalid_grant: not reuse, no revocation.
    assert outcomes["InvalidGrant"] == callers - 1
    assert active_tokens(store, session.family_id) == 1
    assert rows(store, "SELECT revoked_at FROM ts_families") == [(None,)]
    _consistent(store)
    # ...and the single winner's child keeps rotating.
    clock.advance(1)
    refresh(service, clock, winners[0][3:])


@pytest.mark.parametrize("callers", [2, 16], ids=lambda n: f"{n} threads")
def test_concurrent_threads_inside_the_grace_window_all_get_the_same_child(
    store: SqlStore, clock: ManualClock, callers: int
) -> None:
    service = make_service(store, clock, refresh_reuse_grace=10.0, refresh_grace_retries=64)
    session = login(service, clock)
    outcomes = _race(service, clock, session.refresh_token or "", callers)
    assert len(outcomes) == 1 and next(iter(outcomes)).startswith("ok:"), outcomes
    assert active_tokens(store, session.family_id) == 1
    assert rows(store, "SELECT count(*) FROM ts_refresh_tokens")[0][0] == 2
    _consistent(store)


def _spawn_race(backend: Backend, token: str, at: float, grace: float, n: int) -> Counter[str]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(n)
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=workers.rotate_once, args=(backend, token, at, grace, barrier, results, i)
        )
        for i in range(n)
    ]
    for p in procs:
        p.start()
    try:
        outcomes = Counter(
            (kind if value is None else f"ok:{value}")
            for kind, value in (results.get(timeout=JOIN_TIMEOUT) for _ in procs)
        )
    finally:
        for p in procs:
            p.join(JOIN_TIMEOUT)
            if p.is_alive():
                p.kill()
    assert all(p.exitcode == 0 for p in procs)
    return outcomes


@pytest.mark.slow
@pytest.mark.parametrize("grace", [0.0, 10.0], ids=["without grace", "with a grace window"])
def test_four_processes_rotating_one_token(
    backend: Backend, store: SqlStore, clock: ManualClock, grace: float
) -> None:
    service = make_service(store, clock)
    session = login(service, clock)
    outcomes = _spawn_race(backend, session.refresh_token or "", clock.now() + 1, grace, 4)
    winners = [o for o in outcomes if o.startswith("ok:")]
    assert len(winners) == 1
    if grace:
        assert outcomes[winners[0]] == 4  # everyone got the same child
    else:
        assert outcomes == Counter({winners[0]: 1, "InvalidGrant": 3})
    assert active_tokens(store, session.family_id) == 1
    _consistent(store)


@pytest.mark.slow
def test_a_process_killed_mid_rotation_leaves_a_consistent_database(
    backend: Backend, store: SqlStore, clock: ManualClock
) -> None:
    service = make_service(store, clock)
    sessions = [login(service, clock) for _ in range(2)]
    ctx = multiprocessing.get_context("spawn")
    progress = [ctx.Value("i", 0) for _ in sessions]
    procs = [
        ctx.Process(
            target=workers.rotate_forever,
            args=(backend, s.refresh_token, clock.now(), counter),
        )
        for s, counter in zip(sessions, progress, strict=True)
    ]
    for p in procs:
        p.start()
    deadline = time.monotonic() + JOIN_TIMEOUT
    while min(c.value for c in progress) < 30 and time.monotonic() < deadline:
        assert all(p.is_alive() for p in procs), "a rotation loop died on its own"
        time.sleep(0.02)
    for p in procs:
        assert p.pid is not None
        os.kill(p.pid, signal.SIGKILL)
        p.join(JOIN_TIMEOUT)
    assert min(c.value for c in progress) >= 30
    _consistent(store)
    for s in sessions:
        assert active_tokens(store, s.family_id) == 1


def _rotate_after_fork(
    store: SqlStore, token: str, inherited: tuple[Any, Any, Any], queue: Any
) -> None:
    # In the forked child, with the parent's store object (a pre-forking server's app).
    try:
        pool, writer, group = inherited
        # Afresh before any use, so no thread of the child can reach the parent's queue or
        # connections in between.
        fresh_at_fork = (
            store.engine.pool is not pool
            and getattr(store, "_writer", None) is None
            and (group is None or getattr(store, "_group", None) is not group)
        )
        clock = ManualClock(time.time())
        service = make_service(store, clock)
        session = settled(
            service.rotate(
                token, client_id="spa", scope=None, access_jti=new_jti(), access_exp=2_000_000_000
            )
        )
        fresh_pool = store.engine.pool is not pool
        fresh_writer = writer is None or getattr(store, "_writer", None) is not writer
        queue.put((session.refresh_token is not None, fresh_at_fork, fresh_pool, fresh_writer))
    except Exception as exc:  # reported to the parent
        queue.put((repr(exc), False, False, False))


def test_a_forked_child_uses_connections_of_its_own(backend: Backend, store: SqlStore) -> None:
    """A pre-forking server may build the app, and use the store, before it forks: the child
    must not share the parent's pooled connections or the SQLite leader's held one."""
    clock = ManualClock(time.time())
    service = make_service(store, clock)
    parent = login(service, clock)
    child = login(service, clock, subject="bob")
    refresh(service, clock, parent.refresh_token)
    inherited = (store.engine.pool, getattr(store, "_writer", None), getattr(store, "_group", None))
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    process = ctx.Process(
        target=_rotate_after_fork, args=(store, child.refresh_token, inherited, queue)
    )
    process.start()
    process.join(JOIN_TIMEOUT)
    assert process.exitcode == 0
    assert queue.get(timeout=JOIN_TIMEOUT) == (True, True, True, True)
    _consistent(store)

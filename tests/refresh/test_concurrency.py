"""Exactly one winner (SECURITY R1; RFC 9700 §4.14.2) among processes, on both SQL backends;
with a grace window every caller gets the same child (R3). A process killed mid-rotation
leaves a consistent database, and a forked child opens connections of its own. The
thread-based races run on every store in ``tests/contract/test_concurrency.py``."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections import Counter
from typing import Any

import pytest

from tokensmith.clock import ManualClock
from tokensmith.store.sql import SqlStore

from ..contract.conftest import JOIN_TIMEOUT, active_tokens, assert_consistent
from . import workers
from .conftest import Backend, login, make_service, new_jti, refresh, settled


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
    assert_consistent(store)


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
    assert_consistent(store)
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
    assert_consistent(store, "alice", "bob")

"""SQLite group commit (``tokensmith.store.sql.group``): units queued by several threads of
one process share a transaction and its fsync; each keeps its own savepoint, so a failing
unit rolls back alone; a failed commit fails every unit of its batch; nothing a caller
prepared before the commit leaves when the commit fails."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tokensmith.clock import ManualClock
from tokensmith.errors import InvalidGrant, RefreshTokenReused
from tokensmith.events import EventBus
from tokensmith.refresh.opaque import new_token
from tokensmith.refresh.service import Session
from tokensmith.store.records import StoreError
from tokensmith.store.sql import SqlStore, SqlTransaction
from tokensmith.store.sql import group as group_module
from tokensmith.store.sql.group import Ticket, _Committer

from ..contract.conftest import active_tokens
from .conftest import (
    Backend,
    Recorder,
    login,
    make_service,
    only_sqlite,
    refresh,
    rows,
)

pytestmark = only_sqlite
WAIT = 30.0


class CountingStore(SqlStore):
    """Counts commits; can fail the n-th one from now, or interrupt its thread (Ctrl-C)
    once it succeeded."""

    commits = 0
    attempts = 0
    fail_attempt = 0
    interrupt_attempt = 0

    def fail_commit(self, n: int = 1) -> None:
        self.fail_attempt = self.attempts + n

    def interrupt_after_commit(self, n: int = 1) -> None:
        self.interrupt_attempt = self.attempts + n

    def _commit(self, raw: Any) -> None:
        self.attempts += 1
        if self.attempts == self.fail_attempt:
            raise self.engine.dialect.loaded_dbapi.OperationalError("injected: commit failed")
        super()._commit(raw)
        self.commits += 1
        if self.attempts == self.interrupt_attempt:
            raise KeyboardInterrupt


@pytest.fixture
def counting(backend: Backend, store: SqlStore) -> Iterator[CountingStore]:
    s = CountingStore(backend.engine())
    try:
        yield s
    finally:
        s.engine.dispose()


class Blocker:
    """A unit of work that holds the lead (inside its batch's transaction) until released,
    so the units queued meanwhile form the next batch together."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.inside = threading.Event()
        self.release = threading.Event()
        self.thread = threading.Thread(target=lambda: store.atomic(self._work))

    def _work(self, _tx: SqlTransaction) -> None:
        self.inside.set()
        assert self.release.wait(WAIT)

    def __enter__(self) -> Blocker:
        self.thread.start()
        assert self.inside.wait(WAIT)
        return self

    def wait_queued(self, n: int) -> None:
        deadline = time.monotonic() + WAIT
        while self.store._group is not None and len(self.store._group._queue) < n:
            assert time.monotonic() < deadline, "the callers never queued"
            time.sleep(0.001)

    def __exit__(self, *_exc: object) -> None:
        self.release.set()
        self.thread.join(WAIT)


def _as_one_batch(store: SqlStore, calls: list[Callable[[], Any]]) -> list[Any]:
    """Run each call in its own thread while a blocker holds the lead, so that all of them
    queue and then run as the next batch; each call's result, or the exception it raised."""
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        try:
            results[i] = calls[i]()
        except BaseException as exc:  # interrupts too: some tests raise them in a unit
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    with Blocker(store) as blocker:
        for t in threads:
            t.start()
        blocker.wait_queued(len(calls))
    for t in threads:
        t.join(WAIT)
    assert not any(t.is_alive() for t in threads)
    return results


def test_a_lone_caller_runs_its_unit_in_its_own_thread(counting: CountingStore) -> None:
    ran_in = counting.pending(lambda _tx: threading.get_ident()).value
    assert ran_in == threading.get_ident()


def test_units_queued_during_a_batch_share_the_next_commit(
    counting: CountingStore, clock: ManualClock
) -> None:
    service = make_service(counting, clock)
    sessions = [login(service, clock, subject=f"user{i}") for i in range(3)]
    before = counting.commits
    children = _as_one_batch(
        counting, [lambda s=s: refresh(service, clock, s.refresh_token) for s in sessions]
    )
    assert all(isinstance(child, Session) for child in children)
    # The blocker's batch, then one for the three rotations.
    assert counting.commits - before == 2
    for session, child in zip(sessions, children, strict=True):
        assert active_tokens(counting, session.family_id) == 1
        refresh(service, clock, child.refresh_token)


def test_a_failing_unit_rolls_back_alone_and_the_others_commit(
    counting: CountingStore, clock: ManualClock
) -> None:
    service = make_service(counting, clock)
    good = [login(service, clock, subject=f"user{i}") for i in range(2)]
    before = rows(counting, "SELECT count(*) FROM ts_families")[0][0]

    def writes_then_fails(tx: SqlTransaction) -> None:
        tx.deny_access_token("half-written", 2e9)
        raise ValueError("the unit fails after a write")

    first, failed, unknown, second = _as_one_batch(
        counting,
        [
            lambda: refresh(service, clock, good[0].refresh_token),
            lambda: counting.pending(writes_then_fails).value,
            lambda: refresh(service, clock, new_token()),  # unknown: InvalidGrant
            lambda: refresh(service, clock, good[1].refresh_token),
        ],
    )
    assert isinstance(first, Session) and isinstance(second, Session)
    assert isinstance(failed, ValueError)
    assert isinstance(unknown, InvalidGrant)
    assert rows(counting, "SELECT jti FROM ts_denylist") == []
    assert rows(counting, "SELECT count(*) FROM ts_families")[0][0] == before
    for session in good:
        assert active_tokens(counting, session.family_id) == 1
    refresh(service, clock, first.refresh_token)
    refresh(service, clock, second.refresh_token)


def test_a_failed_commit_fails_every_unit_of_the_batch(
    counting: CountingStore, clock: ManualClock
) -> None:
    service = make_service(counting, clock)
    sessions = [login(service, clock, subject=f"user{i}") for i in range(3)]
    state = "SELECT token_hash, used_at FROM ts_refresh_tokens ORDER BY 1"
    before = rows(counting, state)
    counting.fail_commit(2)  # the blocker's commit is the first, the batch's the second
    outcomes = _as_one_batch(
        counting, [lambda s=s: refresh(service, clock, s.refresh_token) for s in sessions]
    )
    assert all(isinstance(o, StoreError) for o in outcomes), outcomes
    assert rows(counting, state) == before
    for session in sessions:
        refresh(service, clock, session.refresh_token)  # the clients' retries succeed
        assert active_tokens(counting, session.family_id) == 1


def test_a_batch_whose_every_unit_fails_answers_each_with_its_own_error(
    counting: CountingStore,
) -> None:
    def fails(error: Exception) -> Callable[[SqlTransaction], None]:
        def unit(tx: SqlTransaction) -> None:
            tx.deny_access_token(repr(error), 2e9)
            raise error

        return unit

    errors = [ValueError("first"), KeyError("second")]
    before = counting.commits
    outcomes = _as_one_batch(counting, [lambda e=e: counting.atomic(fails(e)) for e in errors])
    assert outcomes == errors
    assert counting.commits - before == 1  # the blocker's; the failed batch rolled back
    assert rows(counting, "SELECT jti FROM ts_denylist") == []
    counting.atomic(lambda tx: tx.deny_access_token("after", 2e9))


def test_a_long_queue_is_cut_into_batches_of_max_batch(
    counting: CountingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(group_module, "MAX_BATCH", 2)
    before = counting.commits
    _as_one_batch(
        counting,
        [
            lambda i=i: counting.atomic(lambda tx: tx.deny_access_token(f"j{i}", 2e9))
            for i in range(5)
        ],
    )
    assert counting.commits - before == 1 + 3  # the blocker's, then 2 + 2 + 1
    assert rows(counting, "SELECT count(*) FROM ts_denylist") == [(5,)]


def test_after_a_database_error_the_writer_connection_goes_back_to_the_pool(
    counting: CountingStore,
) -> None:
    # The pool resets it (or drops it if it was invalidated); the next batch checks one out.
    counting.atomic(lambda tx: tx.deny_access_token("first", 2e9))
    writer = counting._writer
    assert writer is not None
    counting.fail_commit()
    with pytest.raises(StoreError):
        counting.atomic(lambda tx: tx.deny_access_token("lost", 2e9))
    counting.atomic(lambda tx: tx.deny_access_token("second", 2e9))
    assert counting._writer is not None and counting._writer is not writer
    assert rows(counting, "SELECT jti FROM ts_denylist ORDER BY 1") == [("first",), ("second",)]


def test_a_unit_that_failed_on_what_its_batch_wrote_hears_the_failed_commit(
    counting: CountingStore, clock: ManualClock
) -> None:
    # Two presentations of one token in one batch: the second sees the first's uncommitted
    # compare-and-set. When that commit fails, "used concurrently" would be false (the
    # token is still unused): the second caller must hear the commit's retryable error too.
    service = make_service(counting, clock)
    session = login(service, clock)
    counting.fail_commit(2)  # the blocker's commit is the first, the batch's the second
    outcomes = _as_one_batch(counting, [lambda: refresh(service, clock, session.refresh_token)] * 2)
    assert [type(o) for o in outcomes] == [StoreError, StoreError], outcomes
    refresh(service, clock, session.refresh_token)
    assert active_tokens(counting, session.family_id) == 1


def test_an_interrupt_in_a_unit_ends_its_whole_batch(counting: CountingStore) -> None:
    # A failing unit rolls back alone; an interrupt (Ctrl-C lands in whichever unit the
    # main thread runs as leader) is not that unit's failure: the batch ends.
    def interrupted(tx: SqlTransaction) -> None:
        tx.deny_access_token("interrupted", 2e9)
        raise KeyboardInterrupt

    outcomes = _as_one_batch(
        counting,
        [
            lambda: counting.atomic(lambda tx: tx.deny_access_token("a", 2e9)),
            lambda: counting.atomic(interrupted),
            lambda: counting.atomic(lambda tx: tx.deny_access_token("b", 2e9)),
        ],
    )
    # The interrupt goes on in the thread it hit (the leader's, which ran the unit); the
    # others' units were only rolled back, and they may retry.
    kinds = sorted(type(o).__name__ for o in outcomes)
    assert kinds == ["KeyboardInterrupt", "TemporarilyUnavailable", "TemporarilyUnavailable"]
    assert rows(counting, "SELECT jti FROM ts_denylist") == []
    counting.atomic(lambda tx: tx.deny_access_token("after", 2e9))
    assert rows(counting, "SELECT jti FROM ts_denylist") == [("after",)]


@pytest.mark.parametrize("when", ["before its turn", "as the lead reaches it"])
def test_a_caller_interrupted_while_queued_leaves_the_store_working(
    counting: CountingStore, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    real_wait = Ticket.wait_turn

    def interrupted_wait(ticket: Ticket[Any]) -> None:
        if threading.current_thread() is threading.main_thread():
            if when == "as the lead reaches it":
                real_wait(ticket)
                assert ticket.promoted
            raise KeyboardInterrupt
        real_wait(ticket)

    monkeypatch.setattr(Ticket, "wait_turn", interrupted_wait)

    def end_blocker_once_queued(blocker: Blocker) -> None:
        blocker.wait_queued(1)
        blocker.release.set()

    with Blocker(counting) as blocker, pytest.raises(KeyboardInterrupt):
        if when == "as the lead reaches it":  # the blocker's batch ends once we queued
            threading.Thread(target=end_blocker_once_queued, args=(blocker,)).start()
        counting.atomic(lambda tx: tx.deny_access_token("withdrawn", 2e9))
    group = counting._group
    assert group is not None and not group._leading and not group._queue
    # The withdrawn unit never ran (it would consume a token nobody receives); later
    # callers, inline or with the committer thread, go through.
    counting.atomic(lambda tx: tx.deny_access_token("later", 2e9))
    counting.pending(lambda tx: tx.deny_access_token("behind", 2e9)).durable()
    assert rows(counting, "SELECT jti FROM ts_denylist ORDER BY 1") == [("behind",), ("later",)]


def test_an_interrupt_after_the_commit_answers_the_batch_as_committed(
    counting: CountingStore,
) -> None:
    counting.interrupt_after_commit(2)  # the blocker's commit is the first
    outcomes = _as_one_batch(
        counting,
        [
            lambda i=i: counting.atomic(lambda tx: tx.deny_access_token(f"j{i}", 2e9))
            for i in range(3)
        ],
    )
    # The caller that led the batch committed it in its own thread and is interrupted;
    # the others are answered as committed, as their rows are.
    assert sorted(map(repr, outcomes)) == ["KeyboardInterrupt()", "None", "None"]
    assert rows(counting, "SELECT count(*) FROM ts_denylist") == [(3,)]
    counting.atomic(lambda tx: tx.deny_access_token("after", 2e9))


def test_revocations_queue_with_the_refreshes(counting: CountingStore, clock: ManualClock) -> None:
    # In a transaction of its own a revocation would have to win SQLite's lock between two
    # group commits, polling in the busy handler (up to 0.4 s measured under load); in the
    # queue it is served in turn. _as_one_batch waits until all four calls are queued.
    service = make_service(counting, clock)
    session = login(service, clock)
    outcomes = _as_one_batch(
        counting,
        [
            lambda: service.revoke_family(session.family_id),
            lambda: service.revoke_subject("nobody"),
            lambda: service.revoke_access_token("jti-1", 2_000_000_000),
            lambda: service.revoke_refresh_token(new_token()),
        ],
    )
    assert outcomes == [True, 0, None, False]
    assert active_tokens(counting, session.family_id) == 0
    assert ("jti-1",) in rows(counting, "SELECT jti FROM ts_denylist")


def test_reuse_whose_revocation_fails_to_commit_is_not_reported_as_reuse(
    counting: CountingStore, clock: ManualClock, bus: EventBus, recorder: Recorder
) -> None:
    # R2 holds only if the revocation is committed before RefreshTokenReused is raised:
    # when that commit fails, the caller hears the store error, no reuse event is emitted
    # and the family lives on, to be revoked on the next presentation.
    service = make_service(counting, clock, bus)
    session = login(service, clock)
    refresh(service, clock, session.refresh_token)
    clock.advance(60)  # outside the (default, zero) grace window
    counting.fail_commit(2)  # the blocker's commit is the first, the batch's the second
    outcomes = _as_one_batch(
        counting,
        [
            lambda: refresh(service, clock, session.refresh_token),
            lambda: counting.atomic(lambda tx: tx.deny_access_token("neighbour", 2e9)),
        ],
    )
    assert [type(o) for o in outcomes] == [StoreError, StoreError], outcomes
    assert recorder.named("reuse_detected") == [] and recorder.named("family_revoked") == []
    assert rows(counting, "SELECT revoked_at FROM ts_families") == [(None,)]
    with pytest.raises(RefreshTokenReused):
        refresh(service, clock, session.refresh_token)
    assert [e.name for e in recorder.events].count("reuse_detected") == 1


def test_a_login_whose_commit_fails_hands_nothing_out(
    counting: CountingStore, clock: ManualClock
) -> None:
    service = make_service(counting, clock)
    counting.fail_commit()
    pending = service.start(
        subject="alice",
        client_id="spa",
        scope="openid",
        audience=("api",),
        auth_time=int(clock.now()),
        amr=(),
        acr=None,
        access_jti="jti-login",
        access_exp=int(clock.now()) + 300,
    )
    # The session is known (the facade signs now), but durable() raises: nothing is handed
    # out, and nothing of the login was stored.
    with pytest.raises(StoreError):
        pending.durable()
    assert rows(counting, "SELECT count(*) FROM ts_families") == [(0,)]
    assert rows(counting, "SELECT count(*) FROM ts_access_tokens") == [(0,)]


def test_nothing_prepared_leaves_when_the_commit_fails(
    counting: CountingStore, clock: ManualClock
) -> None:
    service = make_service(counting, clock)
    session = login(service, clock)
    prepared: list[Session] = []
    counting.fail_commit()
    with pytest.raises(StoreError):
        refresh(service, clock, session.refresh_token, prepare=prepared.append)
    # prepare ran (the facade signs there) but rotate raised: nothing was handed out, and
    # the parent is still the family's one active token.
    assert len(prepared) == 1
    assert active_tokens(counting, session.family_id) == 1
    refresh(service, clock, session.refresh_token)


class GatedStore(SqlStore):
    """Each commit says it began, then waits until ``gate`` opens; records where it ran."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.began = threading.Event()
        self.gate = threading.Event()
        self.commit_threads: list[str] = []

    def _commit(self, raw: Any) -> None:
        self.commit_threads.append(threading.current_thread().name)
        self.began.set()
        self.gate.wait(WAIT)
        super()._commit(raw)


def test_a_lone_caller_prepares_while_its_commit_is_in_flight(
    backend: Backend, store: SqlStore, clock: ManualClock
) -> None:
    gated = GatedStore(backend.engine())
    gated.gate.set()
    try:
        service = make_service(gated, clock)
        session = login(service, clock)
        gated.began.clear()
        gated.gate.clear()
        seen: list[bool] = []

        def prepare(_s: Session) -> None:
            # The commit began and now waits for this very call: had it run in the
            # caller's thread, before or after prepare, this wait would time out.
            seen.append(gated.began.wait(5.0))
            gated.gate.set()

        child = refresh(service, clock, session.refresh_token, prepare=prepare)
        assert seen == [True]
        assert gated.commit_threads[-1] == "tokensmith-commit"
        assert active_tokens(gated, session.family_id) == 1
        refresh(service, clock, child.refresh_token)
    finally:
        gated.gate.set()
        gated.engine.dispose()


def test_a_caller_with_nothing_to_do_meanwhile_commits_in_its_own_thread(
    backend: Backend, store: SqlStore
) -> None:
    gated = GatedStore(backend.engine())
    gated.gate.set()
    try:
        gated.atomic(lambda tx: tx.deny_access_token("inline", 2e9))
        gated.pending(lambda tx: tx.deny_access_token("behind", 2e9)).durable()
        assert gated.commit_threads == [threading.current_thread().name, "tokensmith-commit"]
        assert rows(gated, "SELECT jti FROM ts_denylist ORDER BY 1") == [("behind",), ("inline",)]
    finally:
        gated.engine.dispose()


def test_the_committer_thread_leaves_when_idle_and_comes_back(
    counting: CountingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_Committer, "IDLE_SECONDS", 0.05)
    for _ in range(2):
        counting.pending(lambda tx: tx.deny_access_token(new_token(), 2e9))
        group = counting._group
        assert group is not None and group._committer._running
        deadline = time.monotonic() + WAIT
        while group._committer._running:
            assert time.monotonic() < deadline, "the committer thread never left"
            time.sleep(0.01)
    assert counting.commits == 2


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("can't create new thread at interpreter shutdown"),
        MemoryError(),
        KeyboardInterrupt(),  # Ctrl-C while the main thread starts it
    ],
    ids=type,
)
def test_a_commit_still_happens_when_no_thread_can_start(
    counting: CountingStore, monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    def refuse(_self: threading.Thread) -> None:
        raise error

    group = counting._group
    assert group is not None and not group._committer._running
    monkeypatch.setattr(threading.Thread, "start", refuse)
    before = counting.commits
    unit = lambda tx: tx.deny_access_token("no-thread", 2e9)  # noqa: E731
    if isinstance(error, Exception):
        counting.pending(unit).durable()
    else:
        with pytest.raises(type(error)):  # the interrupt goes on once the batch ended
            counting.pending(unit)
    assert counting.commits == before + 1
    assert rows(counting, "SELECT jti FROM ts_denylist") == [("no-thread",)]
    assert not group._committer._running and not group._leading
    counting.atomic(lambda tx: tx.deny_access_token("next", 2e9))


def test_the_callers_of_a_batch_are_woken_once_all_its_units_ran(
    counting: CountingStore,
) -> None:
    # A caller woken early would sign its tokens while the leader still runs the others'
    # units, and both would take turns on the GIL: the leader, whom everybody waits for,
    # has to finish first.
    woke = threading.Event()
    seen: list[bool] = []

    def first() -> None:
        counting.pending(lambda tx: tx.deny_access_token("first", 2e9))
        woke.set()

    def second(tx: SqlTransaction) -> None:
        seen.append(woke.wait(0.5))  # the first caller is woken only after this returned
        tx.deny_access_token("second", 2e9)

    def leader() -> None:  # queued first, so it leads the batch after the blocker's
        counting.atomic(lambda tx: tx.deny_access_token("leader", 2e9))

    threads = [
        threading.Thread(target=leader),
        threading.Thread(target=first),
        threading.Thread(target=lambda: counting.atomic(second)),
    ]
    with Blocker(counting) as blocker:
        for n, t in enumerate(threads, 1):
            t.start()
            blocker.wait_queued(n)
    for t in threads:
        t.join(WAIT)
    assert woke.is_set() and seen == [False]
    jtis = rows(counting, "SELECT jti FROM ts_denylist ORDER BY 1")
    assert jtis == [("first",), ("leader",), ("second",)]


def test_the_committer_leads_the_batches_queued_during_its_commit(
    backend: Backend, store: SqlStore
) -> None:
    gated = GatedStore(backend.engine())
    ran_in: list[str] = []

    def unit(tx: SqlTransaction) -> None:
        ran_in.append(threading.current_thread().name)
        tx.deny_access_token(new_token(), 2e9)

    try:
        first = threading.Thread(target=lambda: gated.pending(unit).durable())
        first.start()
        assert gated.began.wait(WAIT)  # the first batch's commit waits at the gate
        others = [threading.Thread(target=lambda: gated.atomic(unit)) for _ in range(3)]
        for t in others:
            t.start()
        deadline = time.monotonic() + WAIT
        while gated._group is not None and len(gated._group._queue) < 3:
            assert time.monotonic() < deadline, "the callers never queued"
            time.sleep(0.001)
        gated.gate.set()
        for t in [first, *others]:
            t.join(WAIT)
        # The first unit ran in its caller's thread; the three queued meanwhile ran as one
        # batch on the committer thread, which no caller had to wake to lead it.
        assert ran_in[0] != "tokensmith-commit"
        assert ran_in[1:] == ["tokensmith-commit"] * 3
        assert gated.commit_threads == ["tokensmith-commit"] * 2
        assert rows(gated, "SELECT count(*) FROM ts_denylist") == [(4,)]
    finally:
        gated.gate.set()
        gated.engine.dispose()


class CommitThreads(CountingStore):
    """Records the thread each commit ran in."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.threads: list[str] = []

    def _commit(self, raw: Any) -> None:
        self.threads.append(threading.current_thread().name)
        super()._commit(raw)


def test_a_caller_that_waits_before_the_committer_thread_woke_commits_itself(
    backend: Backend, store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``pending`` hands a lone leader's commit to the committer thread; a caller with
    nothing to do meanwhile (no tokens to sign) waits in ``durable`` at once and must not
    pay for the thread's wake-up: it takes the commit back, and the thread, once it runs,
    finds nothing left to do."""
    late: list[Callable[[], None]] = []
    monkeypatch.setattr(_Committer, "run", lambda _self, job: late.append(job))
    own = CommitThreads(backend.engine())
    try:
        own.pending(lambda tx: tx.deny_access_token("claimed", 2e9)).durable()
        assert own.threads == [threading.current_thread().name]
        (job,) = late
        job()  # the committer thread, waking up late
        assert own.commits == 1
        own.atomic(lambda tx: tx.deny_access_token("next", 2e9))  # the lead was passed on
        assert own.commits == 2
    finally:
        own.engine.dispose()

"""Fault injection on every write step of a rotation (SECURITY R4; fosite
``TestRefreshFlowTransactional_PopulateTokenEndpointResponse``): the transaction rolls back
completely, the parent stays usable and the client's retry succeeds."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest

from tokensmith.clock import ManualClock
from tokensmith.errors import InvalidGrant, RefreshTokenReused, TemporarilyUnavailable
from tokensmith.events import EventBus
from tokensmith.refresh.service import RefreshService
from tokensmith.store.records import StoreError
from tokensmith.store.sql import SqlStore, SqlTransaction

from ..contract.conftest import active_tokens
from .conftest import (
    Backend,
    Recorder,
    login,
    make_service,
    only_postgresql,
    only_sqlite,
    refresh,
    rows,
)


class _FaultyTransaction:
    def __init__(self, tx: SqlTransaction, cursor: Any, store: FaultyStore) -> None:
        self._tx = tx
        self._cursor = cursor
        self._store = store

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._tx, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            result = method(*args, **kwargs)
            if self._store.fail_after == name and self._store.armed:
                self._store.armed = False
                # A real database error on the same connection, mid-transaction.
                self._cursor.execute(self._store.fault_sql)
            return result

        return call


class FaultyStore(SqlStore):
    """Runs ``fault_sql`` right after the named transaction step, once."""

    fail_after: str | None = None
    fault_sql = "SELECT * FROM no_such_table_injected_fault"
    armed = False
    fail_commit = False

    def _commit(self, raw: Any) -> None:
        if self.fail_commit:
            self.fail_commit = False
            raise self.engine.dialect.loaded_dbapi.OperationalError("injected: commit failed")
        super()._commit(raw)

    def arm(self, step: str, sql: str | None = None) -> None:
        self.fail_after, self.armed = step, True
        if sql is not None:
            self.fault_sql = sql

    def _unit(self, cursor: Any) -> Any:
        # Every unit of work, grouped (SQLite) or not, goes through here.
        return _FaultyTransaction(super()._unit(cursor), cursor, self)


@pytest.fixture
def faulty(backend: Backend, store: SqlStore) -> Iterator[FaultyStore]:
    s = FaultyStore(backend.engine())
    try:
        yield s
    finally:
        s.engine.dispose()


def _state(store: SqlStore) -> list[Any]:
    return [
        rows(store, "SELECT token_hash, used_at, revoked_at, grace_retries FROM ts_refresh_tokens"),
        rows(store, "SELECT jti FROM ts_access_tokens ORDER BY jti"),
        rows(store, "SELECT id, revoked_at FROM ts_families"),
        rows(store, "SELECT jti FROM ts_denylist"),
    ]


@pytest.mark.parametrize(
    "step",
    ["mark_used", "insert_token", "record_access_token"],
    ids=[
        "after marking the parent used",
        "after inserting the child",
        "after writing the access-token record",
    ],
)
def test_a_database_error_at_a_write_step_rolls_back_and_the_retry_succeeds(
    faulty: FaultyStore, clock: ManualClock, step: str
) -> None:
    service = make_service(faulty, clock)
    session = login(service, clock)
    before = _state(faulty)
    faulty.arm(step)
    with pytest.raises(StoreError):
        refresh(service, clock, session.refresh_token)
    assert _state(faulty) == before
    child = refresh(service, clock, session.refresh_token)
    assert active_tokens(faulty, session.family_id) == 1
    refresh(service, clock, child.refresh_token)


def test_a_failure_at_commit_rolls_back_and_the_retry_succeeds(
    faulty: FaultyStore, clock: ManualClock
) -> None:
    service = make_service(faulty, clock)
    session = login(service, clock)
    before = _state(faulty)
    faulty.fail_commit = True
    with pytest.raises(StoreError):
        refresh(service, clock, session.refresh_token)
    assert _state(faulty) == before
    refresh(service, clock, session.refresh_token)


def test_a_reuse_whose_revocation_cannot_be_written_fails_closed(
    faulty: FaultyStore, clock: ManualClock, bus: EventBus, recorder: Recorder
) -> None:
    service = make_service(faulty, clock, bus)
    session = login(service, clock)
    refresh(service, clock, session.refresh_token)
    clock.advance(10)
    faulty.arm("revoke_family")
    with pytest.raises(StoreError) as caught:
        refresh(service, clock, session.refresh_token)
    assert not isinstance(caught.value, RefreshTokenReused)  # nothing issued either way
    assert recorder.named("reuse_detected") == []
    # The next replay revokes the family as it should.
    with pytest.raises(RefreshTokenReused):
        refresh(service, clock, session.refresh_token)


@only_postgresql
@pytest.mark.parametrize(
    "sqlstate",
    ["serialization_failure", "deadlock_detected"],
    ids=["serialization failure", "deadlock"],
)
def test_a_postgresql_conflict_is_retryable_and_never_counted_as_reuse(
    faulty: FaultyStore,
    backend: Backend,
    clock: ManualClock,
    bus: EventBus,
    recorder: Recorder,
    sqlstate: str,
) -> None:
    service = make_service(faulty, clock, bus)
    session = login(service, clock)
    before = _state(faulty)
    faulty.arm(
        "insert_token",
        f"DO $$ BEGIN RAISE EXCEPTION 'injected' USING ERRCODE = '{sqlstate}'; END $$",
    )
    with pytest.raises(TemporarilyUnavailable):
        refresh(service, clock, session.refresh_token)
    assert _state(faulty) == before
    assert recorder.named("reuse_detected") == []
    refresh(service, clock, session.refresh_token)


@only_postgresql
def test_a_connection_killed_mid_rotation_rolls_back_and_the_retry_succeeds(
    faulty: FaultyStore, backend: Backend, clock: ManualClock
) -> None:
    service = make_service(faulty, clock)
    session = login(service, clock)
    before = _state(faulty)
    faulty.arm("insert_token", "SELECT pg_terminate_backend(pg_backend_pid())")
    with pytest.raises(TemporarilyUnavailable):
        refresh(service, clock, session.refresh_token)
    assert _state(faulty) == before
    child = refresh(service, clock, session.refresh_token)
    assert active_tokens(faulty, session.family_id) == 1
    assert child.refresh_token is not None


@only_sqlite
def test_sqlite_database_is_locked_is_retryable(backend: Backend, clock: ManualClock) -> None:
    impatient = backend.store(busy_timeout=0.05)
    try:
        from tokensmith.store.sql.models import metadata

        metadata.create_all(impatient.engine)
        service = make_service(impatient, clock)
        session = login(service, clock)
        path = backend.url.removeprefix("sqlite:///")
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(TemporarilyUnavailable):
                refresh(service, clock, session.refresh_token)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        refresh(service, clock, session.refresh_token)
    finally:
        impatient.engine.dispose()


def test_a_store_error_is_not_invalid_grant(faulty: FaultyStore, clock: ManualClock) -> None:
    # A 500-class failure must not be mistaken by the HTTP layer for a 400 invalid_grant.
    service: RefreshService = make_service(faulty, clock)
    session = login(service, clock)
    faulty.arm("mark_used")
    with pytest.raises(StoreError) as caught:
        refresh(service, clock, session.refresh_token)
    assert not isinstance(caught.value, InvalidGrant)
    assert caught.value.status_code == 500

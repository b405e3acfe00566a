"""What only the SQL store has: its tables, statements, connections and row locks. The same
behaviour seen through the store's protocols is in ``tests/contract/``; these tests look
underneath, at what an attacker with a copy of the database or a DBA would see."""

from __future__ import annotations

import hashlib
import secrets
import threading

import pytest
from sqlalchemy import text

from tokensmith.clock import ManualClock
from tokensmith.refresh.opaque import token_hash
from tokensmith.refresh.service import RefreshService, Session
from tokensmith.store.sql import SqlStore

from .conftest import (
    KeptSecret,
    StatementCounter,
    login,
    make_service,
    only_postgresql,
    refresh,
    rows,
)

DAY = 86_400


def test_the_tables_hold_only_sha256_hashes_of_tokens(
    service: RefreshService, clock: ManualClock, store: SqlStore
) -> None:
    session = login(service, clock)
    child = refresh(service, clock, session.refresh_token)
    stored = {bytes(r[0]) for r in rows(store, "SELECT token_hash FROM ts_refresh_tokens")}
    dump = repr(rows(store, "SELECT * FROM ts_refresh_tokens")) + repr(
        rows(store, "SELECT * FROM ts_families")
    )
    for token in (session.refresh_token, child.refresh_token):
        assert token is not None
        assert hashlib.sha256(token.encode()).digest() in stored
        assert token not in dump


def test_the_grace_secret_never_reaches_the_database(store: SqlStore, clock: ManualClock) -> None:
    """SECURITY B1: the derivation secret stays with the keys, even once a grace retry
    needed it."""
    service = make_service(
        store, clock, refresh_reuse_grace=30.0, secret_source=KeptSecret(secrets.token_bytes(32))
    )
    session = login(service, clock)
    refresh(service, clock, session.refresh_token)
    refresh(service, clock, session.refresh_token)  # the grace retry
    assert rows(store, "SELECT count(*) FROM ts_meta")[0][0] == 0


@pytest.mark.parametrize(
    "token",
    ["", "garbage", "tsr_" + "A" * 49, "x" * 100_000, "tsr_\x00"],
    ids=["empty", "garbage", "wrong checksum", "huge", "NUL"],
)
def test_revoking_garbage_is_false_without_an_error_or_a_query(
    service: RefreshService, store: SqlStore, token: str
) -> None:
    counter = StatementCounter(store.engine)
    assert service.revoke_refresh_token(token) is False
    assert counter.untouched


def test_cleanup_deletes_families_in_statements_of_one_batch(
    store: SqlStore, clock: ManualClock
) -> None:
    """docs/contract.md "Refresh store semantics": one DELETE per batch of families."""
    service = make_service(store, clock, family_ttl=DAY, refresh_idle_ttl=DAY)
    for _ in range(5):
        login(service, clock)
    clock.advance(3 * DAY)
    counter = StatementCounter(store.engine)
    assert service.cleanup(batch_size=2) == 5 * (1 + 1 + 1)
    assert sum("DELETE FROM ts_families" in s for s in counter.statements) == 3  # 2 + 2 + 1


@only_postgresql
def test_cleanup_skips_families_locked_by_someone_else(store: SqlStore, clock: ManualClock) -> None:
    service = make_service(store, clock, family_ttl=DAY, refresh_idle_ttl=DAY)
    sessions = [login(service, clock) for _ in range(3)]
    clock.advance(3 * DAY)
    with store.engine.connect() as blocker:
        blocker.execute(
            text("SELECT 1 FROM ts_families WHERE id = :f FOR UPDATE"),
            {"f": sessions[0].family_id},
        )
        blocker.execute(text("SET LOCAL lock_timeout = '5s'"))
        # FOR UPDATE SKIP LOCKED: the cleaner neither waits nor fails on the locked row.
        assert service.cleanup(batch_size=1) == 2 * (1 + 1 + 1)
        blocker.rollback()
    assert rows(store, "SELECT id FROM ts_families") == [(sessions[0].family_id,)]
    assert service.cleanup() == 3


def test_describe_does_not_wait_for_a_writer(
    service: RefreshService, clock: ManualClock, store: SqlStore, another_store: SqlStore
) -> None:
    """Introspection reads what is committed; it neither takes SQLite's write lock nor
    waits for a PostgreSQL row lock held by a rotation or revocation in flight."""
    session = login(service, clock)
    answers: list[object] = []
    with another_store.transaction() as tx:
        # A writer in flight: on SQLite it holds the database write lock, on PostgreSQL
        # the family row (get_token locks it, as a rotation does).
        tx.get_token(token_hash(session.refresh_token or ""))
        reader = threading.Thread(
            target=lambda: answers.append(service.describe(session.refresh_token or ""))
        )
        reader.start()
        reader.join(5)
        finished = not reader.is_alive()
    reader.join(30)
    assert finished, "describe waited for the writer"
    described = answers[0]
    assert isinstance(described, Session) and described.family_id == session.family_id

"""The revocation log (tokensmith.revocation.log) over every store: entries commit with
their revocation, ids grow, another process enforces every kind within a second."""

from __future__ import annotations

import time

import pytest

from tokensmith.clock import ManualClock
from tokensmith.revocation.log import CLIENT_DISABLED, CLIENT_ENABLED, KID, log_of
from tokensmith.store.memory import MemoryStore

from ..refresh.conftest import login, make_service
from ..waiting import eventually
from .conftest import Store


def kinds(store: Store, since: int = 0) -> list[tuple[str, str]]:
    log = log_of(store)
    assert log is not None
    return [(e.kind, e.key) for e in log.revocations_since(since, 1000)]


def test_every_revocation_is_logged_in_its_own_unit_with_growing_ids(
    store: Store, clock: ManualClock
) -> None:
    service = make_service(store, clock)
    session = login(service, clock)
    service.revoke_family(session.family_id)
    service.revoke_subject("bob")
    service.revoke_access_token("j1", int(clock.now()) + 60)
    service.log_revocation(CLIENT_DISABLED, "cli")
    service.log_revocation(KID, "k1")
    assert kinds(store) == [
        ("family", session.family_id),
        ("subject", "bob"),
        ("jti", "j1"),
        ("client_disabled", "cli"),
        ("kid", "k1"),
    ]
    log = log_of(store)
    assert log is not None
    ids = [e.id for e in log.revocations_since(0, 1000)]
    assert ids == sorted(set(ids))
    assert [e.kind for e in log.revocations_since(ids[2], 1000)] == ["client_disabled", "kid"]
    assert len(log.revocations_since(0, 2)) == 2


def test_a_unit_that_fails_logs_nothing(store: Store, clock: ManualClock) -> None:
    service = make_service(store, clock)
    session = login(service, clock)

    def fails(tx: object) -> None:
        tx.revoke_family(session.family_id, clock.now(), "x", None)  # type: ignore[attr-defined]
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        store.atomic(fails)
    assert kinds(store) == []
    assert (
        service.is_access_token_revoked(
            jti="j", subject="alice", issued_at=int(clock.now()), family_id=session.family_id
        )
        is False
    )


def test_another_process_enforces_every_kind_within_a_second(
    store: Store, another_store: Store, clock: ManualClock
) -> None:
    """Its feed follows the log (PostgreSQL: NOTIFY; SQLite: a poll every 0.25 s)."""
    if isinstance(store, MemoryStore):
        pytest.skip("a memory store has no other process")
    here = make_service(store, clock)
    there = make_service(another_store, clock)
    there.follow_revocations()
    try:
        now = int(clock.now())
        alice = login(here, clock)
        check = {"jti": "j0", "subject": "nobody", "issued_at": now - 1, "family_id": None}
        assert there.is_access_token_revoked(**check) is False
        cases = [
            (lambda: here.revoke_family(alice.family_id), {**check, "family_id": alice.family_id}),
            (lambda: here.revoke_subject("bob"), {**check, "subject": "bob"}),
            (lambda: here.revoke_access_token("j1", now + 60), {**check, "jti": "j1"}),
            (lambda: here.log_revocation(CLIENT_DISABLED, "cli"), {**check, "client_id": "cli"}),
        ]
        for revoke, revoked in cases:
            start = time.monotonic()
            revoke()
            assert eventually(lambda r=revoked: there.is_access_token_revoked(**r), within=1.0)
            assert time.monotonic() - start < 1.0
        here.log_revocation(CLIENT_ENABLED, "cli")
        enabled = {**check, "client_id": "cli"}
        assert eventually(lambda: not there.is_access_token_revoked(**enabled), within=1.0)
    finally:
        there.stop_following()


def test_log_entries_go_once_they_no_longer_matter(store: Store, clock: ManualClock) -> None:
    service = make_service(store, clock)
    service.revoke_access_token("j1", int(clock.now()) + 60)
    service.revoke_subject("bob")
    clock.advance(60 + 300)
    service.cleanup()
    assert kinds(store) == [("subject", "bob")]  # a not-before matters for the horizon
    clock.advance(86_400)
    service.cleanup()
    assert kinds(store) == []

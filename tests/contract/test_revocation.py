"""Revocation (docs/contract.md "Revocation list"; RFC 7009 §2.1-2.2) and cleanup, over every
store."""

from __future__ import annotations

import logging

import pytest

from tokensmith.clock import ManualClock
from tokensmith.errors import InvalidGrant, RefreshTokenReused
from tokensmith.events import EventBus
from tokensmith.refresh.opaque import new_token, token_hash
from tokensmith.refresh.service import RefreshService
from tokensmith.settings import MAX_LEEWAY
from tokensmith.store.memory import MemoryStore

from ..refresh.conftest import Recorder, login, make_service, make_settings, refresh
from ..waiting import eventually
from .conftest import Store, active_tokens, everything_revoked, sessions

DAY = 86_400


def test_revoking_a_refresh_token_revokes_its_family_and_access_tokens(
    service: RefreshService, clock: ManualClock, store: Store, recorder: Recorder
) -> None:
    session = login(service, clock)
    child = refresh(service, clock, session.refresh_token, jti="live")
    assert service.revoke_refresh_token(child.refresh_token or "", client_id="spa") is True
    assert active_tokens(store, session.family_id) == 0
    assert "live" in everything_revoked(store).denied_jtis
    with pytest.raises(InvalidGrant):
        refresh(service, clock, child.refresh_token)
    assert recorder.named("family_revoked")[0].data["reason"] == "token_revoked"
    assert [(r.reason, r.actor) for r in sessions(store)[0].revocations] == [
        ("token_revoked", "client:spa")
    ]


def test_revoking_an_unknown_token_is_false(service: RefreshService) -> None:
    assert service.revoke_refresh_token(new_token()) is False


def test_another_clients_token_is_not_revoked(service: RefreshService, clock: ManualClock) -> None:
    session = login(service, clock)
    assert service.revoke_refresh_token(session.refresh_token or "", client_id="evil") is False
    refresh(service, clock, session.refresh_token)


def test_revoke_family_reports_whether_it_revoked(
    service: RefreshService, clock: ManualClock
) -> None:
    session = login(service, clock)
    assert service.revoke_family("no-such-family") is False
    assert service.revoke_family(session.family_id, reason="admin") is True
    assert service.revoke_family(session.family_id) is False
    with pytest.raises(InvalidGrant):
        refresh(service, clock, session.refresh_token)


def test_a_revoked_family_revokes_its_access_tokens_immediately_and_in_other_processes(
    service: RefreshService, clock: ManualClock, store: Store
) -> None:
    other_process = make_service(store, clock)
    session = login(service, clock)
    issued = int(clock.now())
    check = {"jti": "any", "subject": "alice", "issued_at": issued, "family_id": session.family_id}
    assert other_process.is_access_token_revoked(**check) is False  # cache now loaded
    service.revoke_family(session.family_id)
    assert service.is_access_token_revoked(**check) is True
    # Another process follows the revocation log: it learns within a second (SQLite polls
    # every 0.25 s, PostgreSQL pushes). Services sharing one memory store have no log to
    # follow between them, so the other learns at its next reload (revocation_cache_ttl).
    if isinstance(store, MemoryStore):
        clock.advance(5)
    assert eventually(lambda: other_process.is_access_token_revoked(**check), within=1.0)


def test_revoking_an_access_token_by_jti_is_visible_at_once(
    service: RefreshService, clock: ManualClock, store: Store
) -> None:
    other_process = make_service(store, clock)
    now = int(clock.now())
    assert not service.is_access_token_revoked(
        jti="j1", subject="alice", issued_at=now, family_id=None
    )
    service.revoke_access_token("j1", now + 300)
    assert service.is_access_token_revoked(jti="j1", subject="alice", issued_at=now, family_id=None)
    assert other_process.is_access_token_revoked(
        jti="j1", subject="alice", issued_at=now, family_id=None
    )
    assert not service.is_access_token_revoked(
        jti="j2", subject="alice", issued_at=now, family_id=None
    )
    service.revoke_access_token("j1", now + 300)  # idempotent


def test_a_denied_jti_outlives_its_exp_by_the_largest_leeway(
    service: RefreshService, clock: ManualClock, store: Store
) -> None:
    """SECURITY B4: any verifier sharing the store may allow up to MAX_LEEWAY after ``exp``,
    so the row is loaded (by a process that never saw the revocation) and kept until then."""
    now = int(clock.now())
    check = {"jti": "j1", "subject": "alice", "issued_at": now, "family_id": None}
    service.revoke_access_token("j1", now + 300)
    clock.set(now + 300 + MAX_LEEWAY - 1)
    assert service.cleanup() == 0
    assert make_service(store, clock).is_access_token_revoked(**check) is True
    clock.set(now + 300 + MAX_LEEWAY)
    assert service.cleanup() == 2  # the denylist row and its revocation-log entry
    assert make_service(store, clock).is_access_token_revoked(**check) is False


def test_revoking_a_family_denies_its_access_tokens_that_may_still_verify(
    service: RefreshService, clock: ManualClock, store: Store
) -> None:
    session = login(service, clock)
    refresh(service, clock, session.refresh_token, jti="in-leeway")
    clock.advance(300 + 10)  # both access tokens expired 10 s ago: a leeway still accepts
    service.revoke_family(session.family_id)
    denied = everything_revoked(store).denied_jtis
    assert "in-leeway" in denied and len(denied) == 2


def test_revoke_subject_ends_every_family_of_the_user_and_sets_a_not_before(
    service: RefreshService, clock: ManualClock, recorder: Recorder
) -> None:
    alice = [login(service, clock), login(service, clock, client_id="cli")]
    bob = login(service, clock, subject="bob")
    before = int(clock.now())
    clock.advance(1)
    assert service.revoke_subject("alice") == 2
    for session in alice:
        with pytest.raises(InvalidGrant):
            refresh(service, clock, session.refresh_token, client_id=session.client_id)
    refresh(service, clock, bob.refresh_token)
    # Access tokens issued before the logout fail without one denylist row each.
    assert service.is_access_token_revoked(
        jti="x", subject="alice", issued_at=before, family_id=None
    )
    clock.advance(1)
    assert not service.is_access_token_revoked(
        jti="y", subject="alice", issued_at=int(clock.now()), family_id=None
    )
    assert not service.is_access_token_revoked(
        jti="z", subject="bob", issued_at=before, family_id=None
    )
    assert recorder.named("subject_revoked")[0].data == {"subject": "alice", "families": 2}
    # A new login after the logout works.
    refresh(service, clock, login(service, clock).refresh_token)


def test_revoke_client_ends_every_live_family_of_the_client_only(
    service: RefreshService, clock: ManualClock, store: Store, recorder: Recorder
) -> None:
    """A deleted client's sessions end: refresh tokens refused, access tokens denied."""
    doomed = [login(service, clock, client_id="cli"), login(service, clock, client_id="cli")]
    already = login(service, clock, client_id="cli", subject="bob")
    service.revoke_family(already.family_id)
    other = login(service, clock)
    assert service.revoke_client("cli") == 2
    for session in doomed:
        assert active_tokens(store, session.family_id) == 0
        with pytest.raises(InvalidGrant):
            refresh(service, clock, session.refresh_token, client_id="cli")
        assert service.is_access_token_revoked(
            jti="unseen", subject="alice", issued_at=int(clock.now()), family_id=session.family_id
        )
    refresh(service, clock, other.refresh_token)
    audit = [
        (r.reason, r.actor)
        for subject in ("alice", "bob")
        for family in sessions(store, subject)
        for r in family.revocations
        if r.actor is not None
    ]
    assert audit == [("client_deleted", "client:cli")] * 2
    assert {e.data["family_id"] for e in recorder.named("family_revoked")} >= {
        s.family_id for s in doomed
    }
    assert service.revoke_client("cli") == 0


def test_cleanup_purges_expired_families_in_batches_and_keeps_live_ones(
    store: Store, clock: ManualClock
) -> None:
    service = make_service(store, clock, family_ttl=DAY, refresh_idle_ttl=DAY)
    old = [login(service, clock) for _ in range(5)]
    for session in old:
        refresh(service, clock, session.refresh_token)
    service.revoke_access_token("old-jti", int(clock.now()) + 300)
    clock.advance(DAY + 1)
    live = login(service, clock)
    live_child = refresh(service, clock, live.refresh_token)
    # Expired families wait for max_token_lifetime + MAX_LEEWAY so no access token that may
    # still verify loses its family-revocation check.
    assert service.cleanup(batch_size=2) == 2  # only the expired denylist row and its log entry
    clock.advance(DAY + MAX_LEEWAY)
    deleted = service.cleanup(batch_size=2)
    assert deleted == 5 * (1 + 2 + 2)  # families, tokens, access records
    assert [f.family_id for f in sessions(store)] == [live.family_id]
    assert {t.token_hash for t in store.family_tokens(live.family_id)} == {
        token_hash(live.refresh_token or ""),
        token_hash(live_child.refresh_token or ""),
    }


def test_purge_expired_deletes_the_oldest_families_one_batch_at_a_time(
    store: Store, clock: ManualClock
) -> None:
    service = make_service(store, clock, family_ttl=DAY, refresh_idle_ttl=DAY)
    for _ in range(5):
        clock.advance(1)
        refresh(service, clock, login(service, clock).refresh_token)
    newest = [f.family_id for f in sessions(store)][:3]
    horizon = make_settings().max_token_lifetime + MAX_LEEWAY
    now = clock.now() + DAY + horizon
    # Each family: itself, two refresh tokens, two access-token records.
    assert store.purge_expired(now, 2, horizon, now) == 2 * 5
    assert [f.family_id for f in sessions(store)] == newest
    assert [store.purge_expired(now, 2, horizon, now) for _ in range(3)] == [2 * 5, 5, 0]
    assert sessions(store) == []


def test_used_tokens_are_kept_until_the_family_expires_so_reuse_is_still_detected(
    store: Store, clock: ManualClock
) -> None:
    service = make_service(store, clock, family_ttl=10 * DAY, refresh_idle_ttl=DAY)
    session = login(service, clock)
    refresh(service, clock, session.refresh_token)
    clock.advance(9 * DAY)
    service.cleanup()
    with pytest.raises(RefreshTokenReused):
        refresh(service, clock, session.refresh_token)


def test_events_and_logs_never_contain_a_token_or_the_server_secret(
    store: Store, clock: ManualClock, bus: EventBus, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder(bus)
    service = make_service(store, clock, bus, refresh_reuse_grace=5.0, refresh_secret="hush-hush")
    caplog.set_level(logging.DEBUG, logger="tokensmith")
    session = login(service, clock)
    child = refresh(service, clock, session.refresh_token)
    clock.advance(1)
    refresh(service, clock, session.refresh_token)
    clock.advance(10)
    with pytest.raises(RefreshTokenReused):
        refresh(service, clock, session.refresh_token)
    text = repr([(e.name, dict(e.data)) for e in recorder.events]) + caplog.text
    text += repr([r.__dict__ for r in caplog.records])
    for secret in (session.refresh_token, child.refresh_token, "hush-hush"):
        assert secret is not None and secret not in text
        assert secret[4:20] not in text
    assert {e.name for e in recorder.events} >= {
        "issued",
        "rotated",
        "reuse_detected",
        "family_revoked",
    }


def test_a_failed_reload_keeps_the_last_revocation_list_until_the_next_ttl(
    service: RefreshService, clock: ManualClock, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = int(clock.now())
    service.revoke_access_token("gone", now + 300)
    assert service.is_access_token_revoked(jti="gone", subject="a", issued_at=now, family_id=None)
    calls = {"n": 0}

    def broken(*_args: object) -> None:
        calls["n"] += 1
        raise RuntimeError("database down")

    monkeypatch.setattr(store, "load_revocations", broken)
    clock.advance(10)
    assert service.is_access_token_revoked(jti="gone", subject="a", issued_at=now, family_id=None)
    assert service.is_access_token_revoked(jti="gone", subject="a", issued_at=now, family_id=None)
    assert calls["n"] == 1  # retried only after another ttl


def test_the_first_revocation_check_fails_closed_without_a_database(
    service: RefreshService, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: object) -> None:
        raise RuntimeError("database down")

    monkeypatch.setattr(store, "load_revocations", broken)
    with pytest.raises(RuntimeError):
        service.is_access_token_revoked(jti="x", subject="a", issued_at=0, family_id=None)


def test_describe_reports_only_an_active_refresh_token(
    service: RefreshService, clock: ManualClock
) -> None:
    session = login(service, clock)
    described = service.describe(session.refresh_token or "")
    assert described is not None and described.family_id == session.family_id
    assert described.refresh_token is None  # never echoes a secret
    child = refresh(service, clock, session.refresh_token)
    assert service.describe(session.refresh_token or "") is None  # used
    assert service.describe("garbage") is None
    service.revoke_family(child.family_id)
    assert service.describe(child.refresh_token or "") is None  # revoked

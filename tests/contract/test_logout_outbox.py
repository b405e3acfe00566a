"""The back-channel logout outbox and the user's session list, over every store
(tokensmith.logout.outbox; tokensmith.sessions): what a revocation queues, how instances
claim, and that a user's list holds only their own live sessions."""

from __future__ import annotations

import pytest

from tokensmith.clients import new_client
from tokensmith.clock import ManualClock
from tokensmith.errors import RefreshTokenReused
from tokensmith.logout.outbox import LogoutOutbox
from tokensmith.refresh.reuse import RequestContext
from tokensmith.refresh.service import RefreshService
from tokensmith.sessions import UserSessions

from ..refresh.conftest import login, new_jti, refresh, settled
from .conftest import Store

RP_URI = "https://rp.example.com/backchannel"
LEASE = 30.0


def register(store: Store, client_id: str, uri: str | None) -> None:
    client, _ = new_client(client_id, confidential=False, now=0.0, backchannel_logout_uri=uri)
    store.client_registry().add_client(client)


def outbox(store: Store) -> LogoutOutbox:
    return store.logout_outbox()  # type: ignore[attr-defined, no-any-return]


def claim_all(store: Store, clock: ManualClock, claimant: str = "a") -> list[tuple[str, str]]:
    claimed = outbox(store).claim_logouts(clock.now(), LEASE, 100, claimant)
    return sorted((m.client_id, m.session_id) for m in claimed)


def test_a_family_revocation_queues_one_logout_for_a_client_with_a_backchannel_uri(
    service: RefreshService, clock: ManualClock, store: Store
) -> None:
    register(store, "rp", RP_URI)
    register(store, "plain", None)
    rp = login(service, clock, client_id="rp")
    plain = login(service, clock, client_id="plain")
    assert service.revoke_family(rp.family_id) and service.revoke_family(plain.family_id)
    assert service.revoke_family(rp.family_id) is False  # already revoked: nothing more queued
    [message] = outbox(store).claim_logouts(clock.now(), LEASE, 100, "a")
    assert (message.client_id, message.subject, message.session_id, message.attempts) == (
        "rp",
        "alice",
        rp.family_id,
        0,
    )


def test_subject_and_reuse_revocations_queue_a_logout_per_family(
    service: RefreshService, clock: ManualClock, store: Store
) -> None:
    register(store, "rp", RP_URI)
    first, second = login(service, clock, client_id="rp"), login(service, clock, client_id="rp")
    bob = login(service, clock, client_id="rp", subject="bob")
    assert service.revoke_subject("alice") == 2
    child = refresh(service, clock, bob.refresh_token, client_id="rp")
    assert child.refresh_token
    clock.advance(5)  # a late replay, not a concurrent loser
    with pytest.raises(RefreshTokenReused):
        refresh(service, clock, bob.refresh_token, client_id="rp")
    assert claim_all(store, clock) == sorted(("rp", s.family_id) for s in (first, second, bob))


def test_a_revocation_that_rolls_back_queues_nothing(
    service: RefreshService, clock: ManualClock, store: Store
) -> None:
    register(store, "rp", RP_URI)
    session = login(service, clock, client_id="rp")

    def revoke_then_fail(tx: object) -> None:
        tx.revoke_family(session.family_id, clock.now(), "test", None)  # type: ignore[attr-defined]
        raise RuntimeError("the unit of work fails after the revocation")

    with pytest.raises(RuntimeError):
        store.atomic(revoke_then_fail)  # type: ignore[arg-type]
    assert outbox(store).pending_logouts() == 0


def test_a_claimed_message_is_held_by_one_claimant_until_its_lease_ends(
    service: RefreshService, clock: ManualClock, store: Store, another_store: Store
) -> None:
    register(store, "rp", RP_URI)
    service.revoke_family(login(service, clock, client_id="rp").family_id)
    assert len(claim_all(store, clock, "a")) == 1
    assert claim_all(another_store, clock, "b") == []
    clock.advance(LEASE)  # a's lease has run out (a crashed): b may take it over
    [message] = outbox(another_store).claim_logouts(clock.now(), LEASE, 100, "b")
    outbox(store).logout_delivered(message.id, "a")  # a's late answer no longer counts
    assert outbox(store).pending_logouts() == 1
    outbox(another_store).logout_delivered(message.id, "b")
    assert outbox(store).pending_logouts() == 0


def test_a_failed_delivery_waits_for_its_retry_time_and_counts_the_attempt(
    service: RefreshService, clock: ManualClock, store: Store
) -> None:
    register(store, "rp", RP_URI)
    service.revoke_family(login(service, clock, client_id="rp").family_id)
    [message] = outbox(store).claim_logouts(clock.now(), LEASE, 100, "a")
    outbox(store).logout_failed(message.id, "a", clock.now() + 10)
    assert claim_all(store, clock) == []
    clock.advance(10)
    [again] = outbox(store).claim_logouts(clock.now(), LEASE, 100, "a")
    assert (again.id, again.attempts) == (message.id, 1)
    outbox(store).logout_failed(again.id, "a", None)  # out of attempts: dropped
    assert outbox(store).pending_logouts() == 0


def test_a_user_lists_only_their_own_live_sessions_with_the_last_use(
    service: RefreshService, clock: ManualClock, store: Store
) -> None:
    first = login(service, clock)
    clock.advance(5)
    used = login(service, clock, client_id="rp")
    login(service, clock, subject="bob")
    ended = login(service, clock)
    service.revoke_family(ended.family_id)
    clock.advance(5)
    settled(
        service.rotate(
            used.refresh_token or "",
            client_id="rp",
            scope=None,
            access_jti=new_jti(),
            access_exp=int(clock.now()) + 300,
            context=RequestContext(ip="192.0.2.7", user_agent="Firefox/140"),
        )
    )
    listed = UserSessions(store.audit_reader(), service).list("alice", clock.now(), first.family_id)
    assert [(s.session_id, s.client_id, s.current) for s in listed] == [
        (used.family_id, "rp", False),
        (first.family_id, "spa", True),
    ]
    assert (listed[0].ip, listed[0].user_agent, listed[0].last_used_at) == (
        "192.0.2.7",
        "Firefox/140",
        clock.now(),
    )
    assert (listed[1].ip, listed[1].last_used_at) == (None, listed[1].created_at)


def test_a_user_never_ends_another_users_session(
    service: RefreshService, clock: ManualClock, store: Store
) -> None:
    mine, current = login(service, clock), login(service, clock)
    bobs = login(service, clock, subject="bob")
    sessions = UserSessions(store.audit_reader(), service)
    assert sessions.end("alice", bobs.family_id, clock.now()) is False
    assert sessions.end("alice", "no-such-session", clock.now()) is False
    assert sessions.end_others("alice", current.family_id, clock.now()) == 1
    assert [s.session_id for s in sessions.list("bob", clock.now(), None)] == [bobs.family_id]
    assert [s.session_id for s in sessions.list("alice", clock.now(), None)] == [current.family_id]
    assert sessions.end("alice", current.family_id, clock.now()) is True
    assert sessions.list("alice", clock.now(), None) == []
    assert mine.family_id not in {s.session_id for s in sessions.list("bob", clock.now(), None)}

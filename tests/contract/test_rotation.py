"""The refresh-store contract (docs/contract.md "Refresh store semantics"; SECURITY R2, R3, R5, R6),
run over every store. Time moves only through the injected ManualClock (R8)."""

from __future__ import annotations

import hashlib
import secrets

import pytest

from tokensmith.clock import ManualClock
from tokensmith.errors import ConfigError, InvalidGrant, InvalidScope, RefreshTokenReused
from tokensmith.events import EventBus
from tokensmith.refresh import RequestContext, revoke_subject_on_reuse
from tokensmith.refresh.opaque import derive_child, new_token, token_hash
from tokensmith.refresh.service import RefreshService
from tokensmith.settings import MAX_LEEWAY, MAX_REUSE_GRACE, PCI_DSS_IDLE_TTL, ClientLifetimes
from tokensmith.store.records import NewToken

from ..refresh.conftest import KeptSecret, Recorder, login, make_service, new_jti, refresh
from .conftest import Store, active_tokens, everything_revoked, sessions, tokens

DAY = 86_400


def salted(store: Store) -> int:
    """How many stored tokens still keep a derivation salt (SECURITY B1)."""
    return sum(t.salt is not None for t in tokens(store))


def session_expiry(store: Store, family_id: str) -> float:
    (family,) = [f for f in sessions(store) if f.family_id == family_id]
    return family.expires_at


# -- issuing ------------------------------------------------------------------------------
def test_every_login_starts_a_new_family_with_a_random_session_id(
    service: RefreshService, clock: ManualClock, store: Store
) -> None:
    first, second = login(service, clock), login(service, clock)
    assert first.family_id != second.family_id
    # >= 128 bits of randomness, never a row id
    assert len(first.family_id) >= 22 and not first.family_id.isdigit()
    assert first.refresh_token != second.refresh_token
    assert sorted(f.family_id for f in sessions(store)) == sorted(
        [first.family_id, second.family_id]
    )


def test_a_session_carries_the_login_and_a_refresh_expiry_capped_by_the_family(
    store: Store, clock: ManualClock
) -> None:
    service = make_service(store, clock, refresh_idle_ttl=DAY, family_ttl=DAY // 2)
    session = login(service, clock)
    assert session.subject == "alice" and session.client_id == "spa"
    assert session.scope == "openid profile email"
    assert session.audience == ("api",) and session.amr == ("pwd", "otp")
    assert session.acr == "urn:acr:2" and session.auth_time == int(clock.now()) - 10
    assert session.refresh_expires_at == int(clock.now()) + DAY // 2


def test_a_client_configured_without_refresh_tokens_gets_none_but_a_revocable_session(
    store: Store, clock: ManualClock
) -> None:
    service = make_service(
        store, clock, client_lifetimes={"m2m": ClientLifetimes(issue_refresh_token=False)}
    )
    session = login(service, clock, client_id="m2m")
    assert session.refresh_token is None and session.refresh_expires_at is None
    assert tokens(store) == []
    assert service.revoke_family(session.family_id) is True


def test_tokens_are_stored_only_as_sha256_hashes(
    service: RefreshService, clock: ManualClock, store: Store
) -> None:
    session = login(service, clock)
    child = refresh(service, clock, session.refresh_token)
    stored = tokens(store)
    # Everything kept about the session, as the store hands it out.
    dump = repr(stored) + repr(sessions(store)) + repr(everything_revoked(store))
    for token in (session.refresh_token, child.refresh_token):
        assert token is not None
        digest = hashlib.sha256(token.encode()).digest()
        assert digest in {t.token_hash for t in stored}
        assert store.find_token(digest) in stored
        assert token not in dump and token[4:20] not in dump


# -- rotation -----------------------------------------------------------------------------
def test_rotation_issues_a_child_in_the_same_family_and_keeps_the_original_auth_time(
    service: RefreshService, clock: ManualClock, recorder: Recorder
) -> None:
    session = login(service, clock)
    clock.advance(60)
    child = refresh(service, clock, session.refresh_token)
    assert child.refresh_token != session.refresh_token
    assert child.family_id == session.family_id
    assert child.auth_time == session.auth_time
    assert [e.name for e in recorder.events] == ["issued", "rotated"]


def test_rotation_records_the_new_access_token_in_the_same_transaction(
    service: RefreshService, clock: ManualClock, store: Store
) -> None:
    session = login(service, clock)
    refresh(service, clock, session.refresh_token, jti="the-new-jti")
    assert "the-new-jti" not in everything_revoked(store).denied_jtis
    # Recorded with its family: revoking the family denies it.
    service.revoke_family(session.family_id)
    assert "the-new-jti" in everything_revoked(store).denied_jtis


def test_an_unknown_well_formed_token_is_invalid_grant(
    service: RefreshService, clock: ManualClock
) -> None:
    with pytest.raises(InvalidGrant) as caught:
        refresh(service, clock, new_token())
    assert not isinstance(caught.value, RefreshTokenReused)


# -- R2 reuse ------------------------------------------------------------------------------
def test_reuse_after_the_grace_window_revokes_the_family_and_commits_despite_raising(
    service: RefreshService, clock: ManualClock, store: Store, recorder: Recorder
) -> None:
    session = login(service, clock)
    clock.advance(10)
    child = refresh(service, clock, session.refresh_token, jti="child-jti")
    clock.advance(10)
    with pytest.raises(RefreshTokenReused):
        refresh(service, clock, session.refresh_token, jti="never-issued")
    # Committed: a fresh read sees the revocation.
    assert [f.revoke_reason for f in sessions(store)] == ["reuse_detected"]
    assert active_tokens(store, session.family_id) == 0
    # The child's access token was recorded (and is now denied); the refused one never was.
    denied = everything_revoked(store).denied_jtis
    assert "child-jti" in denied and "never-issued" not in denied
    # The formerly active child is dead too.
    with pytest.raises(InvalidGrant):
        refresh(service, clock, child.refresh_token)
    assert len(recorder.named("reuse_detected")) == 1
    assert len(recorder.named("family_revoked")) == 1


def test_reuse_puts_the_familys_unexpired_access_tokens_on_the_denylist(
    service: RefreshService, clock: ManualClock, store: Store
) -> None:
    session = login(service, clock)  # access token expires at +300
    clock.advance(300 + MAX_LEEWAY)
    child = refresh(service, clock, session.refresh_token, jti="live-jti")
    clock.advance(10)
    with pytest.raises(RefreshTokenReused):
        refresh(service, clock, session.refresh_token)
    denied = everything_revoked(store).denied_jtis
    # The first access token expired more than MAX_LEEWAY ago: no verifier accepts it.
    assert denied == {"live-jti"}
    other = make_service(store, clock)  # a fresh process sees it through the store
    assert other.is_access_token_revoked(
        jti="live-jti", subject="alice", issued_at=int(clock.now()), family_id=None
    )
    assert child.refresh_token is not None


def test_a_reuse_event_carries_classification_and_both_uses(
    store: Store, clock: ManualClock, bus: EventBus, recorder: Recorder
) -> None:
    service = make_service(store, clock, bus)
    session = login(service, clock)
    first = RequestContext(ip="192.0.2.1", user_agent="tab one")
    service.rotate(
        session.refresh_token or "",
        client_id="spa",
        scope=None,
        access_jti=new_jti(),
        access_exp=int(clock.now()) + 300,
        context=first,
    ).durable()
    used_at = clock.now()
    clock.advance(30)
    with pytest.raises(RefreshTokenReused):
        service.rotate(
            session.refresh_token or "",
            client_id="spa",
            scope=None,
            access_jti=new_jti(),
            access_exp=int(clock.now()) + 300,
            context=RequestContext(ip="198.51.100.7", user_agent="attacker"),
        )
    (event,) = recorder.named("reuse_detected")
    data = event.data
    assert data["classification"] == "lost_response"
    assert data["family_id"] == session.family_id
    assert data["first_use"] == {
        "at": used_at,
        "client_id": "spa",
        "ip": "192.0.2.1",
        "user_agent": "tab one",
    }
    assert data["reuse"] == {
        "at": used_at + 30,
        "client_id": "spa",
        "ip": "198.51.100.7",
        "user_agent": "attacker",
    }


@pytest.mark.parametrize(
    ("delay", "rotate_child", "kind"),
    [
        pytest.param(1, False, "concurrent_retry", id="within two seconds is a concurrent retry"),
        pytest.param(60, False, "lost_response", id="an unused child means a lost response"),
        pytest.param(60, True, "late_replay", id="a used child means a late replay"),
    ],
)
def test_reuse_is_classified(
    store: Store,
    clock: ManualClock,
    bus: EventBus,
    recorder: Recorder,
    delay: int,
    rotate_child: bool,
    kind: str,
) -> None:
    service = make_service(store, clock, bus)
    session = login(service, clock)
    child = refresh(service, clock, session.refresh_token)
    clock.advance(delay)
    if rotate_child:
        refresh(service, clock, child.refresh_token)
    with pytest.raises(RefreshTokenReused):
        refresh(service, clock, session.refresh_token)
    assert recorder.named("reuse_detected")[0].data["classification"] == kind


def test_a_reuse_policy_can_end_every_session_of_the_subject(
    store: Store, clock: ManualClock, recorder: Recorder, bus: EventBus
) -> None:
    service = make_service(store, clock, bus, reuse_policy=revoke_subject_on_reuse)
    other_session = login(service, clock)
    session = login(service, clock)
    refresh(service, clock, session.refresh_token)
    clock.advance(5)
    with pytest.raises(RefreshTokenReused):
        refresh(service, clock, session.refresh_token)
    with pytest.raises(InvalidGrant):
        refresh(service, clock, other_session.refresh_token)
    assert len(recorder.named("subject_revoked")) == 1


# -- R3 grace ------------------------------------------------------------------------------
@pytest.fixture
def grace_service(store: Store, clock: ManualClock, bus: EventBus) -> RefreshService:
    return make_service(store, clock, bus, refresh_reuse_grace=30.0, refresh_grace_retries=3)


def test_inside_the_grace_window_the_parent_returns_the_same_child_byte_for_byte(
    grace_service: RefreshService, clock: ManualClock, store: Store, recorder: Recorder
) -> None:
    session = login(grace_service, clock)
    child = refresh(grace_service, clock, session.refresh_token)
    clock.advance(29)
    retry = refresh(grace_service, clock, session.refresh_token, jti="retry-jti")
    assert retry.refresh_token == child.refresh_token
    assert retry.refresh_expires_at == child.refresh_expires_at
    assert active_tokens(store, session.family_id) == 1
    assert len(tokens(store)) == 2  # no fork
    assert recorder.named("reuse_detected") == []
    assert [e.data["grace_retry"] for e in recorder.named("rotated")] == [False, True]
    # and the child still rotates normally afterwards
    refresh(grace_service, clock, retry.refresh_token)
    # The retry's access token was recorded with the family: revoking it denies that token.
    grace_service.revoke_family(session.family_id)
    assert "retry-jti" in everything_revoked(store).denied_jtis


def test_the_grace_child_is_derived_from_the_kept_secret_which_the_database_never_holds(
    store: Store, another_store: Store, clock: ManualClock
) -> None:
    kept = KeptSecret(secrets.token_bytes(32))
    service = make_service(store, clock, refresh_reuse_grace=30.0, secret_source=kept)
    session = login(service, clock)
    child = refresh(service, clock, session.refresh_token)
    (salt,) = [t.salt for t in tokens(store) if t.parent_hash is not None]
    parent = token_hash(session.refresh_token or "")
    assert salt is not None and derive_child(kept.value, salt, parent) == child.refresh_token
    # Another process with the same key store re-derives the same child.
    second_process = make_service(
        another_store, clock, refresh_reuse_grace=30.0, secret_source=KeptSecret(kept.value)
    )
    assert refresh(second_process, clock, session.refresh_token).refresh_token == (
        child.refresh_token
    )


def test_a_configured_refresh_secret_wins_over_the_key_store(
    store: Store, clock: ManualClock
) -> None:
    kept = KeptSecret(secrets.token_bytes(32))
    service = make_service(
        store, clock, refresh_reuse_grace=30.0, refresh_secret="s3cr3t-value", secret_source=kept
    )
    session = login(service, clock)
    child = refresh(service, clock, session.refresh_token)
    (salt,) = [t.salt for t in tokens(store) if t.parent_hash is not None]
    parent = token_hash(session.refresh_token or "")
    assert salt is not None and derive_child(b"s3cr3t-value", salt, parent) == child.refresh_token
    assert kept.reads == 0


def test_without_a_grace_window_no_salt_is_stored_and_no_secret_is_read(
    store: Store, clock: ManualClock
) -> None:
    kept = KeptSecret(secrets.token_bytes(32))
    service = make_service(store, clock, secret_source=kept)
    session = login(service, clock)
    refresh(service, clock, refresh(service, clock, session.refresh_token).refresh_token)
    assert salted(store) == 0
    assert kept.reads == 0


def test_a_salt_is_kept_only_while_a_grace_retry_can_use_it(
    store: Store, clock: ManualClock
) -> None:
    service = make_service(store, clock, refresh_reuse_grace=10.0)
    session = login(service, clock)
    child = refresh(service, clock, session.refresh_token)
    grandchild = refresh(service, clock, child.refresh_token)
    # The child's salt went in the write that consumed it; the grandchild's is still live.
    assert salted(store) == 1
    clock.advance(MAX_REUSE_GRACE - 1)
    service.cleanup()
    assert salted(store) == 1
    clock.advance(1)
    service.cleanup()
    assert salted(store) == 0
    # A revoked family keeps no salt either.
    refresh(service, clock, grandchild.refresh_token)
    assert salted(store) == 1
    service.revoke_family(session.family_id)
    assert salted(store) == 0


def test_a_grace_window_without_any_secret_is_a_config_error(
    store: Store, clock: ManualClock
) -> None:
    service = make_service(store, clock, refresh_reuse_grace=5.0, secret_source=None)
    session = login(service, clock)
    with pytest.raises(ConfigError, match="TOKENSMITH_REFRESH_SECRET"):
        refresh(service, clock, session.refresh_token)


def test_grace_retries_are_bounded(grace_service: RefreshService, clock: ManualClock) -> None:
    session = login(grace_service, clock)
    refresh(grace_service, clock, session.refresh_token)
    for _ in range(3):
        clock.advance(1)
        refresh(grace_service, clock, session.refresh_token)
    clock.advance(1)
    with pytest.raises(RefreshTokenReused):
        refresh(grace_service, clock, session.refresh_token)


def test_the_grace_window_ends_at_exactly_used_at_plus_grace(
    grace_service: RefreshService, clock: ManualClock
) -> None:
    session = login(grace_service, clock)
    refresh(grace_service, clock, session.refresh_token)
    clock.advance(30)
    with pytest.raises(RefreshTokenReused):
        refresh(grace_service, clock, session.refresh_token)


def test_a_grandparent_inside_the_grace_window_is_reuse(
    grace_service: RefreshService, clock: ManualClock
) -> None:
    session = login(grace_service, clock)
    child = refresh(grace_service, clock, session.refresh_token)
    clock.advance(1)
    grandchild = refresh(grace_service, clock, child.refresh_token)
    clock.advance(1)
    with pytest.raises(RefreshTokenReused):
        refresh(grace_service, clock, session.refresh_token)
    with pytest.raises(InvalidGrant):
        refresh(grace_service, clock, grandchild.refresh_token)


def test_a_parent_whose_child_already_rotated_is_reuse_even_inside_the_window(
    grace_service: RefreshService, clock: ManualClock, store: Store
) -> None:
    session = login(grace_service, clock)
    child = refresh(grace_service, clock, session.refresh_token)
    clock.advance(1)
    assert refresh(grace_service, clock, session.refresh_token).refresh_token == (
        child.refresh_token
    )
    refresh(grace_service, clock, child.refresh_token)
    clock.advance(1)
    with pytest.raises(RefreshTokenReused):
        refresh(grace_service, clock, session.refresh_token)
    assert active_tokens(store, session.family_id) == 0


@pytest.mark.parametrize(
    "revoke",
    [
        pytest.param(lambda s, sess: s.revoke_family(sess.family_id), id="family revocation"),
        pytest.param(lambda s, sess: s.revoke_subject(sess.subject), id="logout everywhere"),
        pytest.param(
            lambda s, sess: s.revoke_refresh_token(sess.refresh_token), id="RFC 7009 revocation"
        ),
    ],
)
def test_a_revoked_token_is_never_a_grace_retry(
    grace_service: RefreshService, clock: ManualClock, revoke: object
) -> None:
    session = login(grace_service, clock)
    child = refresh(grace_service, clock, session.refresh_token)
    revoke(grace_service, child)  # type: ignore[operator]
    clock.advance(0.3)
    for token in (session.refresh_token, child.refresh_token):
        with pytest.raises(InvalidGrant) as caught:
            refresh(grace_service, clock, token)
        assert not isinstance(caught.value, RefreshTokenReused)


def test_with_no_grace_a_used_token_is_reuse_one_second_later(
    service: RefreshService, clock: ManualClock
) -> None:
    session = login(service, clock)
    refresh(service, clock, session.refresh_token)
    clock.advance(1)
    with pytest.raises(RefreshTokenReused):
        refresh(service, clock, session.refresh_token)


# -- R6 lifetimes --------------------------------------------------------------------------
def test_idle_expiry_is_enforced_at_exactly_the_expiry_time(
    store: Store, clock: ManualClock
) -> None:
    service = make_service(store, clock, refresh_idle_ttl=3600)
    session = login(service, clock)
    clock.advance(3599)
    child = refresh(service, clock, session.refresh_token)
    clock.advance(3600)
    with pytest.raises(InvalidGrant):
        refresh(service, clock, child.refresh_token)


def test_the_default_idle_lifetime_is_fourteen_days(
    service: RefreshService, clock: ManualClock
) -> None:
    session = login(service, clock)
    assert session.refresh_expires_at == int(clock.now()) + 14 * DAY
    clock.advance(14 * DAY)
    with pytest.raises(InvalidGrant):
        refresh(service, clock, session.refresh_token)


def test_the_pci_dss_profile_expires_idle_tokens_after_fifteen_minutes(
    store: Store, clock: ManualClock
) -> None:
    service = make_service(store, clock, profile="pci-dss")
    session = login(service, clock)
    clock.advance(PCI_DSS_IDLE_TTL - 1)
    child = refresh(service, clock, session.refresh_token)
    assert child.refresh_expires_at == int(clock.now()) + PCI_DSS_IDLE_TTL
    clock.advance(PCI_DSS_IDLE_TTL)
    with pytest.raises(InvalidGrant):
        refresh(service, clock, child.refresh_token)


def test_lifetimes_can_be_set_per_client(store: Store, clock: ManualClock) -> None:
    service = make_service(
        store, clock, client_lifetimes={"kiosk": ClientLifetimes(refresh_idle_ttl=120)}
    )
    kiosk = login(service, clock, client_id="kiosk")
    spa = login(service, clock)
    clock.advance(120)
    with pytest.raises(InvalidGrant):
        refresh(service, clock, kiosk.refresh_token, client_id="kiosk")
    refresh(service, clock, spa.refresh_token)


def test_the_family_lifetime_caps_every_descendant(store: Store, clock: ManualClock) -> None:
    service = make_service(store, clock, refresh_idle_ttl=DAY, family_ttl=2 * DAY)
    session = login(service, clock)
    family_expiry = int(clock.now()) + 2 * DAY
    token = session.refresh_token
    for _ in range(3):
        clock.advance(DAY * 0.6)
        rotated = refresh(service, clock, token)
        assert rotated.refresh_expires_at is not None
        assert rotated.refresh_expires_at <= family_expiry
        token = rotated.refresh_token
    assert rotated.refresh_expires_at == family_expiry
    clock.set(family_expiry)  # idle expiry of this token is the same instant
    with pytest.raises(InvalidGrant):
        refresh(service, clock, token)


def test_the_family_expiry_applies_even_when_the_idle_expiry_is_later(
    store: Store, clock: ManualClock
) -> None:
    service = make_service(store, clock, refresh_idle_ttl=DAY, family_ttl=2 * DAY)
    session = login(service, clock)
    clock.advance(0.9 * DAY)
    child = refresh(service, clock, session.refresh_token)
    clock.advance(0.9 * DAY)
    refresh(service, clock, child.refresh_token)
    # A token whose stored idle expiry outlives the family, as an older configuration
    # might have written it.
    late = new_token()
    family_expiry = session_expiry(store, session.family_id)
    store.atomic(
        lambda tx: tx.insert_token(
            NewToken(
                token_hash(late), session.family_id, None, None, clock.now(), family_expiry + DAY
            )
        )
    )
    assert service.describe(late) is not None
    clock.advance(0.2 * DAY)  # exactly the family's expiry
    with pytest.raises(InvalidGrant):
        refresh(service, clock, late)


# -- R5 client binding and scope -------------------------------------------------------------
def test_another_client_gets_invalid_grant_and_nothing_changes(
    service: RefreshService, clock: ManualClock, store: Store
) -> None:
    session = login(service, clock)
    before = store.family_tokens(session.family_id)
    with pytest.raises(InvalidGrant) as caught:
        refresh(service, clock, session.refresh_token, client_id="other")
    assert not isinstance(caught.value, RefreshTokenReused)
    assert store.family_tokens(session.family_id) == before
    refresh(service, clock, session.refresh_token)


def test_another_client_replaying_a_used_token_changes_nothing_either(
    service: RefreshService, clock: ManualClock, store: Store
) -> None:
    session = login(service, clock)
    child = refresh(service, clock, session.refresh_token)
    clock.advance(60)
    with pytest.raises(InvalidGrant) as caught:
        refresh(service, clock, session.refresh_token, client_id="other")
    assert not isinstance(caught.value, RefreshTokenReused)
    refresh(service, clock, child.refresh_token)


def test_a_wider_scope_is_invalid_scope_and_nothing_changes(
    service: RefreshService, clock: ManualClock, store: Store
) -> None:
    session = login(service, clock, scope="openid profile")
    before = store.family_tokens(session.family_id)
    with pytest.raises(InvalidScope):
        refresh(service, clock, session.refresh_token, scope="openid profile admin")
    assert store.family_tokens(session.family_id) == before
    refresh(service, clock, session.refresh_token)


def test_a_narrower_scope_narrows_only_this_access_token(
    service: RefreshService, clock: ManualClock
) -> None:
    session = login(service, clock, scope="openid profile email")
    narrowed = refresh(service, clock, session.refresh_token, scope="email openid")
    assert narrowed.scope == "email openid"
    full = refresh(service, clock, narrowed.refresh_token)
    assert full.scope == "openid profile email"

"""Application claims on a family (README "Custom claims"): every store keeps them with the
session, hands them to every rotation, and stores the ones a claims hook recomputed, so
another process opening the same state sees the latest."""

from __future__ import annotations

from tokensmith.clock import ManualClock
from tokensmith.refresh.service import RefreshService
from tokensmith.store.records import FamilyRecord
from tokensmith.tokens.claims import SessionClaims

from ..refresh.conftest import login, make_service, new_jti, refresh, settled
from .conftest import Store

LOGIN_CLAIMS = SessionClaims({"roles": ["admin", "editor"], "tenant": 7}, {"locale": "fr-CA"})


def _login(service: RefreshService, clock: ManualClock) -> str:
    session = login(service, clock, claims=LOGIN_CLAIMS)
    assert session.claims == LOGIN_CLAIMS
    assert session.refresh_token is not None
    return session.refresh_token


def test_claims_are_kept_on_the_family_and_carried_to_every_rotation(
    service: RefreshService, clock: ManualClock, another_store: Store
) -> None:
    token: str | None = _login(service, clock)
    for _ in range(3):
        clock.advance(60)
        session = refresh(service, clock, token)
        assert session.claims == LOGIN_CLAIMS
        token = session.refresh_token
    # Another process opening the same state rotates with the same claims.
    other = make_service(another_store, clock)
    assert refresh(other, clock, token).claims == LOGIN_CLAIMS


def test_recomputed_claims_are_used_and_stored_for_the_next_rotations(
    service: RefreshService, clock: ManualClock, another_store: Store
) -> None:
    token = _login(service, clock)
    seen: list[SessionClaims | None] = []

    def drop_admin(family: FamilyRecord) -> SessionClaims | None:
        assert family.claims is not None
        seen.append(family.claims)
        return SessionClaims({"roles": ["editor"], "tenant": 7}, family.claims.id_token)

    pending = service.rotate(
        token,
        client_id="spa",
        scope=None,
        access_jti=new_jti(),
        access_exp=int(clock.now()) + 300,
        recompute=drop_admin,
    )
    session = settled(pending)
    assert seen == [LOGIN_CLAIMS]
    expected = SessionClaims({"roles": ["editor"], "tenant": 7}, {"locale": "fr-CA"})
    assert session.claims == expected
    # No hook now: the stored claims are the recomputed ones, in another process too.
    assert refresh(make_service(another_store, clock), clock, session.refresh_token).claims == (
        expected
    )


def test_a_family_without_claims_has_none(service: RefreshService, clock: ManualClock) -> None:
    session = login(service, clock)
    assert session.claims is None
    assert refresh(service, clock, session.refresh_token).claims is None

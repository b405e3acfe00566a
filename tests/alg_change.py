"""SECURITY B6 over any key store: after ``signing_alg`` changes, the old algorithm's active
key stops signing at the next rotation, and the scheduled one still lets the new key wait
out the JWKS max-age before it signs (issue #11 item 7)."""

from __future__ import annotations

from collections.abc import Callable

from tests.conftest import ISSUER
from tokensmith.clock import ManualClock
from tokensmith.keys import KeyManager
from tokensmith.tokens import AccessTokenClaims, AccessTokenVerifier, mint_access_token

# A manager with ``signing_alg`` set to its argument, over the one store under test, with
# ``ensure_active()`` run as a start-up does.
Restart = Callable[[str], KeyManager]


def _held(km: KeyManager) -> set[tuple[str, str]]:
    return {(r.alg, r.state) for r in km.records()}


def _token(km: KeyManager, clock: ManualClock) -> str:
    now = int(clock.now())
    claims = AccessTokenClaims("alice", "spa", "api", "", now, now + 300, f"j{now}", "s")
    return mint_access_token(km.signer(), ISSUER, claims)


def scheduled_rotation_retires_the_old_algorithm(restart: Restart, clock: ManualClock) -> None:
    old = restart("ES256").signer().kid
    km = restart("EdDSA")
    # Verifiers may hold a JWKS without any EdDSA key: the ES256 key signs on meanwhile.
    assert km.signer().kid == old and ("EdDSA", "pending") in _held(km)
    max_age = km.settings.jwks_max_age
    assert km.jwks_max_age() == max_age
    clock.advance(max_age - 1)
    assert km.tick() is False and km.signer().kid == old
    token = _token(km, clock)
    clock.advance(1)
    assert km.tick() is True and km.signer().alg == "EdDSA"
    assert _held(km) == {("ES256", "retired"), ("EdDSA", "active"), ("EdDSA", "pending")}
    verifier = AccessTokenVerifier(km, issuer=ISSUER, clock=clock)
    assert verifier.verify(token, audience="api")["sub"] == "alice"  # still published
    s = km.settings
    clock.advance(s.longest_token_ttl + s.leeway + s.jwks_max_age)
    km.tick()
    assert old not in {r.kid for r in km.records()}


def operator_rotation_retires_the_old_algorithm(restart: Restart) -> None:
    old = restart("ES256").signer().kid
    km = restart("EdDSA")
    assert km.rotate().alg == "EdDSA" and km.signer().alg == "EdDSA"
    assert _held(km) == {("ES256", "retired"), ("EdDSA", "active"), ("EdDSA", "pending")}
    assert old in {k["kid"] for k in km.jwks()["keys"]}

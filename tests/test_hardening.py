"""Edges found in review: helpers that must fail as tokensmith errors, configuration that
must not be coerced."""

from __future__ import annotations

import math

import pytest

from tests.conftest import ISSUER
from tokensmith.clock import ManualClock
from tokensmith.errors import ConfigError, InvalidToken
from tokensmith.keys import KeyManager
from tokensmith.tokens import AccessTokenClaims, AccessTokenVerifier, mint_access_token
from tokensmith.tokens.jws import b64decode, header_segment, sign_compact


@pytest.mark.parametrize("segment", ["ab$", "abc!", "a=", "ab\u00e9", "\x00\x00"])
def test_b64decode_outside_the_alphabet_is_invalid_token(segment: str) -> None:
    with pytest.raises(InvalidToken):
        b64decode(segment)


@pytest.mark.parametrize("leeway", [True, False, "60", None])
def test_verifier_leeway_must_be_a_real_number(keys: KeyManager, leeway: object) -> None:
    with pytest.raises(ConfigError):
        AccessTokenVerifier(keys, issuer=ISSUER, clock=ManualClock(), leeway=leeway)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_minting_a_non_finite_claim_fails_instead_of_making_an_unverifiable_token(
    keys: KeyManager, value: float
) -> None:
    signer = keys.signer()
    with pytest.raises(ValueError):
        sign_compact(signer, header_segment(signer.alg, signer.kid, "at+jwt"), {"exp": value})


def test_minted_claims_round_trip(keys: KeyManager, clock: ManualClock) -> None:
    now = int(clock.now())
    token = mint_access_token(
        keys.signer(),
        ISSUER,
        AccessTokenClaims('al\u00efce "q"', "spa", ["api", "b"], "x", now, now + 60, "j", None),
    )
    claims = AccessTokenVerifier(keys, issuer=ISSUER, clock=clock).verify(token, audience="b")
    assert claims["sub"] == 'al\u00efce "q"' and claims["aud"] == ["api", "b"]
    assert "sid" not in claims

"""Fuzzing the three segments (SECURITY H6): whatever arrives, only ``TokensmithError``.

A resource server maps ``TokensmithError`` to 401; any other exception type would be a 500.
Hypothesis drives random bytes and text, mutations of real tokens, and random JSON headers
and payloads that are then *validly signed*, so the claim checks get fuzzed too, not only
the parser. Examples and deadlines are bounded so the file runs in a few seconds.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.jose_helpers import NOW, access_payload, active_private_key, b64, forge, make_keys
from tokensmith.clock import ManualClock
from tokensmith.errors import TokensmithError
from tokensmith.keys import KeyManager
from tokensmith.keys.jwkset import JwkSet
from tokensmith.tokens.verify import AccessTokenVerifier, IdTokenVerifier

ISSUER = "https://as.example.com"
FUZZ = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def km(tmp_path_factory: pytest.TempPathFactory) -> KeyManager:
    return make_keys(tmp_path_factory.mktemp("fuzz"), ManualClock(NOW), "ES256")


@pytest.fixture(scope="module")
def real_token(km: KeyManager) -> str:
    kid, key = active_private_key(km)
    return forge(key, "ES256", {"alg": "ES256", "kid": kid, "typ": "at+jwt"}, access_payload())


def only_tokensmith_errors(km: KeyManager, token: object) -> None:
    clock = ManualClock(NOW)
    for verify in (
        lambda t: AccessTokenVerifier(km, issuer=ISSUER, clock=clock).verify(t, audience="api"),
        lambda t: IdTokenVerifier(km, issuer=ISSUER, clock=clock).verify(t, client_id="api"),
        lambda t: AccessTokenVerifier(km, issuer=ISSUER, clock=clock, max_bytes=1 << 20).verify(
            t, audience=None
        ),
    ):
        with contextlib.suppress(TokensmithError):
            verify(token)


b64_alphabet = st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
segment = st.one_of(
    st.text(b64_alphabet, max_size=80),
    st.binary(max_size=60).map(b64),
    st.text(max_size=40),
)
json_value = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@FUZZ
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_random_text_or_bytes(km: KeyManager, token: str | bytes) -> None:
    only_tokensmith_errors(km, token)


@FUZZ
@given(segment, segment, segment)
def test_random_segments_joined_as_a_compact_token(
    km: KeyManager, head: str, body: str, sig: str
) -> None:
    only_tokensmith_errors(km, f"{head}.{body}.{sig}")


@FUZZ
@given(st.data())
def test_mutated_real_tokens(km: KeyManager, real_token: str, data: st.DataObject) -> None:
    chars = list(real_token)
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(chars) - 1))
        action = data.draw(st.sampled_from(["replace", "delete", "insert"]))
        char = data.draw(st.characters(max_codepoint=0x2FF))
        if action == "replace":
            chars[index] = char
        elif action == "delete" and len(chars) > 1:
            del chars[index]
        else:
            chars.insert(index, char)
    only_tokensmith_errors(km, "".join(chars))


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(["alg", "kid", "typ", "crit", "jwk", "jku", "b64", "zip", "x5c", "cty"])
        | st.text(max_size=6),
        json_value,
        max_size=6,
    )
)
def test_random_json_headers_signed_with_the_real_key(
    km: KeyManager, header: dict[str, Any]
) -> None:
    kid, key = active_private_key(km)
    merged = {"alg": "ES256", "kid": kid, **header}
    only_tokensmith_errors(km, forge(key, "ES256", merged, access_payload()))


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "client_id", "scope"])
        | st.sampled_from(["azp", "nonce", "auth_time"]),
        json_value,
        max_size=9,
    )
)
def test_random_claims_signed_with_the_real_key(km: KeyManager, claims: dict[str, Any]) -> None:
    kid, key = active_private_key(km)
    header = {"alg": "ES256", "kid": kid, "typ": "at+jwt"}
    only_tokensmith_errors(km, forge(key, "ES256", header, {**access_payload(), **claims}))


@FUZZ
@given(st.binary(max_size=120), st.binary(max_size=120))
def test_random_bytes_as_header_and_payload_signed_with_the_real_key(
    km: KeyManager, head: bytes, body: bytes
) -> None:
    _kid, key = active_private_key(km)
    only_tokensmith_errors(km, forge(key, "ES256", head, body))


@FUZZ
@given(json_value)
def test_random_documents_as_a_jwk_set(document: Any) -> None:
    for jwks in (document, {"keys": document}, {"keys": [document]}):
        with contextlib.suppress(TokensmithError):
            JwkSet(jwks)


def test_the_fuzz_fixture_token_is_itself_valid(km: KeyManager, real_token: str) -> None:
    claims = AccessTokenVerifier(km, issuer=ISSUER, clock=ManualClock(NOW)).verify(
        real_token, audience="api"
    )
    assert claims["sub"] == "alice"
    assert json.loads(json.dumps(claims)) == claims

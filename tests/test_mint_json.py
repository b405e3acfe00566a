"""The hand-written JSON of the common access- and ID-token shapes is byte-for-byte what
the slow path's ``json`` encoder (``jws._encode_json``, used by ``sign_compact``) writes
for the same claims."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tokensmith.tokens.jws import _encode_json
from tokensmith.tokens.mint import (
    AccessTokenClaims,
    IdTokenClaims,
    _access_token_json,
    _id_token_json,
    _id_token_payload,
)

text = st.text(max_size=40)
ints = st.integers(min_value=0, max_value=2**53)
# Application claims (tokensmith.tokens.claims): JSON values under non-protocol names.
json_values = st.recursive(
    st.none() | st.booleans() | ints | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)
extras = st.none() | st.dictionaries(
    st.text(min_size=1, max_size=10).map("x-".__add__), json_values, max_size=4
)


@given(
    issuer=text,
    subject=text,
    client_id=text,
    audience=text,
    scope=text,
    issued_at=ints,
    expires_at=ints,
    jti=text,
    sid=st.none() | text,
    extra=extras,
)
def test_access_token_json_is_what_json_writes(
    issuer: str,
    subject: str,
    client_id: str,
    audience: str,
    scope: str,
    issued_at: int,
    expires_at: int,
    jti: str,
    sid: str | None,
    extra: dict[str, object] | None,
) -> None:
    claims = AccessTokenClaims(
        subject=subject,
        client_id=client_id,
        audience=audience,
        scope=scope,
        issued_at=issued_at,
        expires_at=expires_at,
        jti=jti,
        session_id=sid,
        extra=extra,
    )
    expected: dict[str, object] = {
        "iss": issuer,
        "sub": subject,
        "aud": audience,
        "exp": expires_at,
        "iat": issued_at,
        "nbf": issued_at,
        "jti": jti,
        "client_id": client_id,
        "scope": scope,
    }
    if sid is not None:
        expected["sid"] = sid
    expected.update(extra or {})
    assert _access_token_json(issuer, claims) == _encode_json(expected)


@given(
    issuer=text,
    subject=text,
    client_id=text,
    times=st.tuples(ints, ints, ints),
    nonce=st.none() | text,
    amr=st.none() | st.lists(text, max_size=4),
    acr=st.none() | text,
    token_hash=st.none() | text,
    sid=st.none() | text,
    extra=extras,
)
def test_id_token_json_is_what_json_writes(
    issuer: str,
    subject: str,
    client_id: str,
    times: tuple[int, int, int],
    nonce: str | None,
    amr: list[str] | None,
    acr: str | None,
    token_hash: str | None,
    sid: str | None,
    extra: dict[str, object] | None,
) -> None:
    issued_at, expires_at, auth_time = times
    claims = IdTokenClaims(
        subject=subject,
        client_id=client_id,
        issued_at=issued_at,
        expires_at=expires_at,
        auth_time=auth_time,
        session_id=sid,
        nonce=nonce,
        amr=amr,
        acr=acr,
        extra=extra,
    )
    expected = _id_token_payload(issuer, claims, token_hash)
    assert _id_token_json(issuer, claims, token_hash) == _encode_json(expected)


def test_other_shapes_take_the_json_encoder() -> None:
    claims = IdTokenClaims(
        subject="alice", client_id="spa", issued_at=1, expires_at=2, auth_time=True
    )
    assert _id_token_json("https://as.example", claims, None) is None
    access = AccessTokenClaims(
        subject="alice",
        client_id="spa",
        audience=("a", "b"),
        scope="",
        issued_at=1,
        expires_at=2,
        jti="j",
    )
    assert _access_token_json("https://as.example", access) is None

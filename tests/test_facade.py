"""The facade of docs/contract.md "Python API": issue, refresh, verify, revoke, on a real SQLite
file.

The refresh store's own rules are proved on SQLite and PostgreSQL in ``tests/refresh``;
these tests prove the wiring: which claims each token carries, that ID tokens follow
OIDC Core §12.2 on refresh (SECURITY K3), and that revocation reaches verification.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tokensmith import (
    ClientLifetimes,
    InvalidGrant,
    InvalidRequest,
    InvalidToken,
    ManualClock,
    RefreshTokenReused,
    SystemClock,
    TokenResponse,
    Tokensmith,
)

from .conftest import make_tokensmith

ISSUER = "https://auth.example.com"
T0 = 1_800_000_000


def _segment(token: str, index: int) -> dict[str, object]:
    seg = token.split(".")[index]
    return json.loads(base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4)))  # type: ignore[no-any-return]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


def make(tmp_path: Path, clock: ManualClock, **kwargs: Any) -> Tokensmith:
    return make_tokensmith(tmp_path, clock, issuer=ISSUER, **kwargs)


@pytest.fixture
def ts(tmp_path: Path, clock: ManualClock) -> Tokensmith:
    return make(tmp_path, clock)


def _login(ts: Tokensmith, scope: str = "openid profile") -> TokenResponse:
    return ts.issue(
        subject="alice",
        client_id="spa",
        scope=scope,
        audience="api",
        nonce="n-0S6_WzA2Mj",
        auth_time=datetime.fromtimestamp(T0 - 30, UTC),
        amr=["pwd", "otp"],
        acr="urn:example:mfa",
    )


def test_issue_returns_the_token_endpoint_fields(ts: Tokensmith) -> None:
    t = ts.issue(subject="alice", client_id="spa", scope="openid profile", audience="api")
    assert t.token_type == "Bearer" and t.expires_in == 300 and t.scope == "openid profile"
    assert t.refresh_token is not None and t.refresh_token.startswith("tsr_")
    assert t.id_token is not None
    assert set(t.to_dict()) == {
        "access_token",
        "token_type",
        "expires_in",
        "refresh_token",
        "id_token",
        "scope",
    }


def test_access_token_follows_rfc9068(ts: Tokensmith) -> None:
    t = _login(ts)
    header, claims = _segment(t.access_token, 0), _segment(t.access_token, 1)
    assert header == {"alg": "ES256", "kid": ts.keys.signer().kid, "typ": "at+jwt"}
    assert claims["iss"] == ISSUER and claims["sub"] == "alice" and claims["aud"] == "api"
    assert claims["client_id"] == "spa" and claims["scope"] == "openid profile"
    assert claims["iat"] == claims["nbf"] == T0 and claims["exp"] == T0 + 300
    assert claims["sid"] == t.session_id
    assert len(base64.urlsafe_b64decode(str(claims["jti"]) + "==")) >= 16  # >= 128 bits


def test_id_token_carries_every_oidc_claim(ts: Tokensmith) -> None:
    t = _login(ts)
    header, claims = _segment(t.id_token, 0), _segment(t.id_token, 1)
    assert header["typ"] == "JWT"
    assert claims["aud"] == "spa" and claims["azp"] == "spa"
    assert claims["nonce"] == "n-0S6_WzA2Mj" and claims["auth_time"] == T0 - 30
    assert claims["amr"] == ["pwd", "otp"] and claims["acr"] == "urn:example:mfa"
    assert claims["sid"] == _segment(t.access_token, 1)["sid"]
    digest = hashlib.sha256(t.access_token.encode()).digest()[:16]
    assert claims["at_hash"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert ts.verify_id_token(t.id_token, client_id="spa", nonce="n-0S6_WzA2Mj")


def test_no_id_token_without_openid_scope(ts: Tokensmith) -> None:
    assert ts.issue(subject="alice", client_id="spa", scope="profile").id_token is None


def test_every_login_starts_a_new_family(ts: Tokensmith) -> None:
    sids = {_login(ts).session_id for _ in range(3)}
    assert len(sids) == 3


def test_refreshed_id_token_keeps_identity_and_auth_time(
    ts: Tokensmith, clock: ManualClock
) -> None:
    """SECURITY K3 / OIDC Core §12.2."""
    first = _login(ts)
    clock.advance(120)
    second = ts.refresh(first.refresh_token, client_id="spa")
    a, b = _segment(first.id_token, 1), _segment(second.id_token, 1)
    for name in ("iss", "sub", "aud", "azp", "auth_time", "sid", "amr", "acr"):
        assert a[name] == b[name], name
    assert b["iat"] == T0 + 120 != a["iat"]
    assert "nonce" not in b


def test_refresh_may_narrow_the_scope_and_drop_the_id_token(ts: Tokensmith) -> None:
    first = _login(ts)
    narrowed = ts.refresh(first.refresh_token, client_id="spa", scope="profile")
    assert narrowed.scope == "profile" and narrowed.id_token is None
    assert _segment(narrowed.access_token, 1)["scope"] == "profile"
    # The rotated refresh token keeps the original grant (SECURITY R5).
    again = ts.refresh(narrowed.refresh_token, client_id="spa")
    assert again.scope == "openid profile"


def test_a_reused_refresh_token_kills_the_session_everywhere(
    ts: Tokensmith, clock: ManualClock
) -> None:
    first = _login(ts)
    second = ts.refresh(first.refresh_token, client_id="spa")
    clock.advance(1)  # a replay after the rotation finished, not a concurrent request
    with pytest.raises(RefreshTokenReused):
        ts.refresh(first.refresh_token, client_id="spa")
    with pytest.raises(InvalidGrant):
        ts.refresh(second.refresh_token, client_id="spa")
    with pytest.raises(InvalidToken, match="revoked"):
        ts.verify_access_token(second.access_token, audience="api")


def test_another_clients_refresh_token_is_refused(ts: Tokensmith) -> None:
    with pytest.raises(InvalidGrant):
        ts.refresh(_login(ts).refresh_token, client_id="other")


def test_revoked_access_token_fails_and_so_does_its_padded_variant(ts: Tokensmith) -> None:
    """SECURITY V5: the denylist is keyed by jti, never by the token string."""
    t = _login(ts)
    claims = ts.verify_access_token(t.access_token, audience="api")
    ts.revoke_access_token(claims["jti"], datetime.fromtimestamp(claims["exp"], UTC))
    for variant in (t.access_token, t.access_token + "==", t.access_token + "!!!!"):
        with pytest.raises(InvalidToken):
            ts.verify_access_token(variant, audience="api")
    assert ts.verify_access_token(t.access_token, audience="api", check_revoked=False)


def test_revoke_family_ends_one_session_only(ts: Tokensmith) -> None:
    one, two = _login(ts), _login(ts)
    assert ts.revoke_family(one.session_id)
    with pytest.raises(InvalidToken):
        ts.verify_access_token(one.access_token, audience="api")
    with pytest.raises(InvalidGrant):
        ts.refresh(one.refresh_token, client_id="spa")
    assert ts.verify_access_token(two.access_token, audience="api")


def test_revoke_subject_logs_out_everywhere_but_not_the_next_login(
    ts: Tokensmith, clock: ManualClock
) -> None:
    sessions = [_login(ts) for _ in range(3)]
    assert ts.revoke_subject("alice") == 3
    for s in sessions:
        with pytest.raises(InvalidToken):
            ts.verify_access_token(s.access_token, audience="api")
        with pytest.raises(InvalidGrant):
            ts.refresh(s.refresh_token, client_id="spa")
    clock.advance(1)
    fresh = _login(ts)
    assert ts.verify_access_token(fresh.access_token, audience="api")["sub"] == "alice"


def test_revoke_refresh_token_revokes_its_family(ts: Tokensmith) -> None:
    t = _login(ts)
    assert ts.revoke_refresh_token(t.refresh_token) is True
    with pytest.raises(InvalidToken):
        ts.verify_access_token(t.access_token, audience="api")
    assert ts.revoke_refresh_token("tsr_garbage") is False


def test_a_client_may_be_configured_without_refresh_tokens(
    tmp_path: Path, clock: ManualClock
) -> None:
    ts = make(
        tmp_path,
        clock,
        client_lifetimes={"m2m": ClientLifetimes(issue_refresh_token=False, access_token_ttl=60)},
    )
    t = ts.issue(subject="svc", client_id="m2m", scope="read")
    assert t.refresh_token is None and t.expires_in == 60
    assert "refresh_token" not in t.to_dict()


@pytest.mark.parametrize(
    "auth_time",
    [datetime(2026, 1, 1), float("nan"), "yesterday", True],
    ids=["naive datetime", "NaN", "a string", "a boolean"],
)
def test_times_must_be_aware_datetimes_or_epoch_seconds(ts: Tokensmith, auth_time: object) -> None:
    with pytest.raises(InvalidRequest):
        ts.issue(subject="alice", client_id="spa", auth_time=auth_time)


def test_events_fire_and_no_token_is_ever_logged(
    ts: Tokensmith, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []
    ts.on_event(lambda e: seen.append(e.name))
    caplog.set_level(logging.DEBUG, logger="tokensmith")
    first = _login(ts)
    second = ts.refresh(first.refresh_token, client_id="spa")
    clock.advance(1)
    with pytest.raises(RefreshTokenReused):
        ts.refresh(first.refresh_token, client_id="spa")
    assert seen[:2] == ["issued", "rotated"] and "reuse_detected" in seen
    secrets = [first.refresh_token, second.refresh_token, first.access_token, first.id_token]
    for record in caplog.records:
        text = record.getMessage() + repr(record.__dict__)
        for secret in secrets:
            assert secret not in text


def test_a_reuse_policy_can_log_the_user_out_everywhere(tmp_path: Path, clock: ManualClock) -> None:
    from tokensmith.refresh import revoke_subject_on_reuse

    ts = make(tmp_path, clock, reuse_policy=revoke_subject_on_reuse)
    stolen, other_device = _login(ts), _login(ts)
    ts.refresh(str(stolen.refresh_token), client_id="spa")
    clock.advance(1)
    with pytest.raises(RefreshTokenReused):
        ts.refresh(str(stolen.refresh_token), client_id="spa")
    # The policy ended the user's other session too, not only the reused family.
    with pytest.raises(InvalidGrant):
        ts.refresh(str(other_device.refresh_token), client_id="spa")


def test_a_client_deleted_and_registered_again_at_once_issues_tokens_that_verify(
    tmp_path: Path,
) -> None:
    """A token's ``iat`` is in whole seconds and the ``client:<id>`` cut-offs are not:
    registering a deleted id returns once the second after its cut-off began, so the new
    client's first token (issued at once, on the real clock) is not taken for one of the
    old client's."""
    ts = make(tmp_path, SystemClock())  # type: ignore[arg-type]
    ts.register_client("m2m", confidential=True, grant_types=["client_credentials"])
    while time.time() % 1 > 0.5:  # the deletion starts early in a second
        time.sleep(0.05)
    ts.delete_client("m2m")
    ts.register_client("m2m", confidential=True, grant_types=["client_credentials"])
    token = ts.issue_client_token(client_id="m2m").access_token
    assert ts.verify_access_token(token, audience=ISSUER)["sub"] == "client:m2m"

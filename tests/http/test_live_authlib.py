"""One end-to-end run over a live uvicorn on loopback, driven by an OAuth client nobody
here wrote (Authlib's httpx ``OAuth2Client``)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.httpx_client import OAuth2Client

from tokensmith import InvalidGrant, ManualClock, Tokensmith
from tokensmith.http import create_app

from ..conftest import make_tokensmith, uvicorn_in_thread


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[Tokensmith, str]]:
    """The real server, with a manual clock so the test moves time instead of sleeping."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    ts = make_tokensmith(tmp_path, ManualClock(time.time()), issuer=base)
    with uvicorn_in_thread(create_app(ts), port):
        yield ts, base


def test_authlib_refreshes_revokes_and_sees_rotation_enforced(
    live: tuple[Tokensmith, str],
) -> None:
    ts, base = live
    _, secret = ts.register_client("partner", confidential=True)
    login = ts.issue(subject="alice", client_id="partner", scope="openid read", audience="api")
    assert login.refresh_token is not None
    with OAuth2Client(
        "partner",
        secret,
        token_endpoint_auth_method="client_secret_basic",
        revocation_endpoint_auth_method="client_secret_basic",
    ) as client:
        token = client.refresh_token(f"{base}/token", refresh_token=login.refresh_token)
        assert token["refresh_token"] != login.refresh_token
        claims = ts.verify_access_token(token["access_token"], audience="api")
        assert claims["sub"] == "alice" and claims["client_id"] == "partner"
        ts.clock.advance(1)  # type: ignore[attr-defined]  # a replay, not a concurrent request
        with pytest.raises(OAuthError) as reused:
            client.refresh_token(f"{base}/token", refresh_token=login.refresh_token)
        assert reused.value.error == "invalid_grant"
        # Reuse revoked the family: the rotated token is dead too.
        with pytest.raises(InvalidGrant):
            ts.refresh(token["refresh_token"], client_id="partner")

        second = ts.issue(subject="alice", client_id="partner", scope="openid", audience="api")
        assert second.refresh_token is not None
        r = client.revoke_token(
            f"{base}/revoke", token=second.refresh_token, token_type_hint="refresh_token"
        )
        assert r.status_code == 200
        with pytest.raises(InvalidGrant):
            ts.refresh(second.refresh_token, client_id="partner")

        r = client.get(f"{base}/.well-known/openid-configuration")
        assert r.json()["token_endpoint"] == f"{base}/token"

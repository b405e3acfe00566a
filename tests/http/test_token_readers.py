"""Who may learn about other clients' tokens (README "Configuration", "Sessions"): by
default any confidential client introspects and reads the revocation feed, and any access
token for the issuer reaches its user's sessions (docs/contract.md "HTTP service"). A
deployment can narrow both: ``resource_server_clients`` names the clients that may
introspect and read the feed; ``sessions_scope`` is a scope a token needs for /sessions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tokensmith import ManualClock, Settings, Tokensmith
from tokensmith.errors import ConfigError
from tokensmith.http import create_app

from .conftest import ISSUER, T0, basic_auth

pytestmark = pytest.mark.anyio


class Deployment:
    def __init__(self, ts: Tokensmith, http: httpx.AsyncClient, secrets: dict[str, str]) -> None:
        self.ts, self.http, self.secrets = ts, http, secrets

    async def introspect(self, client_id: str) -> httpx.Response:
        token = self.ts.issue_client_token(client_id="rs", audience="api").access_token
        return await self.http.post(
            "/introspect",
            data={"token": token},
            headers=basic_auth(client_id, self.secrets[client_id]),
        )

    async def feed(self, client_id: str, path: str = "/revocations") -> httpx.Response:
        return await self.http.get(path, headers=basic_auth(client_id, self.secrets[client_id]))


@pytest.fixture
async def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Deployment]:
    extra: dict[str, object] = getattr(request, "param", {})
    ts = Tokensmith(
        Settings(
            issuer=ISSUER,
            database_url=f"sqlite:///{tmp_path / 'ts.db'}",
            keys_dir=str(tmp_path / "keys"),
            **extra,  # type: ignore[arg-type]
        ),
        clock=ManualClock(T0),
    )
    ts.setup()
    secrets = {}
    for client_id in ("rs", "other"):
        _, secret = ts.register_client(client_id, confidential=True, audiences=("api",))
        assert secret is not None
        secrets[client_id] = secret
    ts.register_client("spa", confidential=False, scopes=("openid", "sessions"))
    transport = httpx.ASGITransport(app=create_app(ts))
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
        yield Deployment(ts, http, secrets)
    ts.sessions.store.engine.dispose()  # type: ignore[attr-defined]


async def test_by_default_every_confidential_client_introspects_and_reads_the_feed(
    deployment: Deployment,
) -> None:
    for client_id in ("rs", "other"):
        assert (await deployment.introspect(client_id)).json()["active"] is True
        assert (await deployment.feed(client_id)).status_code == 200


@pytest.mark.parametrize("deployment", [{"resource_server_clients": ("rs",)}], indirect=True)
async def test_named_resource_servers_alone_introspect_and_read_the_feed(
    deployment: Deployment,
) -> None:
    assert (await deployment.introspect("rs")).json()["active"] is True
    assert (await deployment.feed("rs")).status_code == 200
    refused = await deployment.introspect("other")
    assert (refused.status_code, refused.json()["error"]) == (403, "unauthorized_client")
    assert "active" not in refused.json()
    for path in ("/revocations", "/revocations/stream"):
        refused = await deployment.feed("other", path)
        assert (refused.status_code, refused.json()["error"]) == (403, "unauthorized_client")


@pytest.mark.parametrize("deployment", [{"sessions_scope": "sessions"}], indirect=True)
async def test_a_sessions_scope_keeps_other_tokens_of_the_user_out(
    deployment: Deployment,
) -> None:
    ts, http = deployment.ts, deployment.http
    audience = ["api", ISSUER]
    without = ts.issue(subject="alice", client_id="spa", scope="openid", audience=audience)
    r = await http.get("/sessions", headers={"Authorization": f"Bearer {without.access_token}"})
    assert (r.status_code, r.json()["error"]) == (403, "insufficient_scope")
    assert 'scope="sessions"' in r.headers["www-authenticate"]
    with_scope = ts.issue(
        subject="alice", client_id="spa", scope="openid sessions", audience=audience
    )
    r = await http.get("/sessions", headers={"Authorization": f"Bearer {with_scope.access_token}"})
    assert r.status_code == 200, r.text
    assert len(r.json()["sessions"]) == 2


@pytest.mark.parametrize("scope", ["", "a b"])
def test_sessions_scope_is_one_scope(scope: str) -> None:
    with pytest.raises(ConfigError, match="sessions_scope"):
        Settings(issuer=ISSUER, sessions_scope=scope)

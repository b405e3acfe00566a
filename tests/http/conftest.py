"""An app over a real SQLite file with four registered clients, driven through httpx."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote_plus

import httpx
import pytest

from tokensmith import ManualClock, Tokensmith
from tokensmith.http import create_app

from ..conftest import make_tokensmith
from ..refresh.conftest import pg_schema_url

ISSUER = "https://as.example.com"
ORIGIN = "https://app.example.com"
T0 = 1_800_000_000


def basic_auth(client_id: str, secret: str) -> dict[str, str]:
    """RFC 6749 §2.3.1: form-urlencode id and secret, then Basic-encode them."""
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}"
    return {"Authorization": "Basic " + base64.b64encode(raw.encode()).decode()}


@dataclass
class Env:
    ts: Tokensmith
    clock: ManualClock
    http: httpx.AsyncClient
    secrets: dict[str, str]

    def basic(self, client_id: str, secret: str | None = None) -> dict[str, str]:
        return basic_auth(client_id, secret or self.secrets[client_id])

    def login(self, client_id: str = "spa", scope: str = "openid read") -> dict[str, str]:
        t = self.ts.issue(subject="alice", client_id=client_id, scope=scope, audience="api")
        assert t.refresh_token is not None
        return {"access_token": t.access_token, "refresh_token": t.refresh_token}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    clock = ManualClock(T0)
    ts = make_tokensmith(tmp_path, clock, issuer=ISSUER)
    secrets: dict[str, str] = {}
    ts.register_client("spa", confidential=False)
    _, secrets["backend"] = ts.register_client(  # type: ignore[assignment]
        "backend", confidential=True, scopes=("read", "write", "openid"), audiences=("api",)
    )
    _, secrets["rs"] = ts.register_client("rs", confidential=True)  # type: ignore[assignment]
    ts.register_client("browser", confidential=False, allowed_origins=(ORIGIN,), cookie_mode=True)
    transport = httpx.ASGITransport(app=create_app(ts))
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as client:
        yield Env(ts, clock, client, secrets)


@pytest.fixture(
    params=["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
    ids=["on memory", "on SQLite", "on PostgreSQL"],
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store of each kind, for tests whose outcome must not depend on it."""
    if request.param == "memory":
        yield "memory://"
    elif request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ts.db'}"
    else:
        with pg_schema_url("sess") as url:
            yield url

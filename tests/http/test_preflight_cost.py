"""The CORS allow-list (every enabled cookie-mode client's origins) is cached like single
clients: anybody may send preflights, unauthenticated, and each one read the whole client
table (230 ms a preflight with 5,000 clients, found by attacking a live server). A change
made through this instance shows at once; another instance's within ``client_cache_ttl``
or as soon as its log entry arrives."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from tokensmith import ManualClock, Settings, Tokensmith
from tokensmith.http import create_app

from .conftest import ISSUER, T0

pytestmark = pytest.mark.anyio

APP = "https://app.example.com"
OTHER = "https://other.example.com"


@pytest.fixture
async def ts(tmp_path: Path) -> AsyncIterator[Tokensmith]:
    ts = Tokensmith(
        Settings(
            issuer=ISSUER,
            database_url=f"sqlite:///{tmp_path / 'ts.db'}",
            keys_dir=str(tmp_path / "keys"),
            client_cache_ttl=300,
        ),
        clock=ManualClock(T0),
    )
    ts.setup()
    ts.register_client("web", confidential=False, allowed_origins=(APP,), cookie_mode=True)
    yield ts
    ts.sessions.store.engine.dispose()  # type: ignore[attr-defined]


async def _allowed(http: httpx.AsyncClient, origin: str) -> bool:
    r = await http.options(
        "/token", headers={"Origin": origin, "Access-Control-Request-Method": "POST"}
    )
    return r.headers.get("access-control-allow-origin") == origin


async def test_preflights_read_the_client_table_once_per_ttl(ts: Tokensmith) -> None:
    engine = ts.sessions.store.engine  # type: ignore[attr-defined]
    statements: list[str] = []

    def record(_c: Any, _cur: Any, statement: str, *_a: Any) -> None:
        statements.append(statement)

    transport = httpx.ASGITransport(app=create_app(ts))
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
        assert await _allowed(http, APP)
        event.listen(engine, "before_cursor_execute", record)
        try:
            for origin in (APP, OTHER, "https://evil.example") * 20:
                assert await _allowed(http, origin) == (origin == APP)
        finally:
            event.remove(engine, "before_cursor_execute", record)
    assert statements == []


async def test_a_client_change_here_shows_in_the_allow_list_at_once(ts: Tokensmith) -> None:
    transport = httpx.ASGITransport(app=create_app(ts))
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
        assert await _allowed(http, APP) and not await _allowed(http, OTHER)
        ts.register_client("web2", confidential=False, allowed_origins=(OTHER,), cookie_mode=True)
        assert await _allowed(http, OTHER)
        ts.update_client("web", enabled=False)
        assert not await _allowed(http, APP)
        ts.update_client("web", enabled=True)
        assert await _allowed(http, APP)
        ts.delete_client("web2")
        assert not await _allowed(http, OTHER)

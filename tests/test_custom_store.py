"""A refresh store the application built itself (``Tokensmith(refresh_store=...)``) brings
its client registry and audit trail along (``tokensmith.store.Registries``), so clients,
``families()`` and the HTTP app keep working; a store that keeps neither says what to pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tokensmith import ConfigError, ManualClock, Settings, Tokensmith
from tokensmith.http import create_app
from tokensmith.store.memory import MemoryStore
from tokensmith.store.sql import SqlStore, create_store_engine, upgrade

from .conftest import ISSUER


def _own_sql_store(tmp_path: Path) -> SqlStore:
    url = f"sqlite:///{tmp_path / 'own.db'}"
    upgrade(url)
    return SqlStore(create_store_engine(url))


@pytest.fixture(params=["own SQL store", "own memory store"])
def ts(request: pytest.FixtureRequest, tmp_path: Path, clock: ManualClock) -> Tokensmith:
    store = _own_sql_store(tmp_path) if request.param == "own SQL store" else MemoryStore()
    # The settings name another database: everything must go to the store given.
    settings = Settings(
        issuer=ISSUER, database_url="sqlite:///elsewhere.db", keys_dir=str(tmp_path)
    )
    ts = Tokensmith(settings, clock=clock, refresh_store=store)
    ts.keys.ensure_active()
    return ts


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_clients_families_and_the_http_app_use_the_store_given(
    ts: Tokensmith, tmp_path: Path
) -> None:
    ts.register_client("spa", confidential=False)
    login = ts.issue(subject="alice", client_id="spa", scope="openid", audience="api")
    transport = httpx.ASGITransport(app=create_app(ts))
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
        form = {"grant_type": "refresh_token", "refresh_token": login.refresh_token or ""}
        answer = await http.post("/token", data={**form, "client_id": "spa"})
    assert answer.status_code == 200, answer.text
    assert [c.client_id for c in ts.clients.list_clients()] == ["spa"]
    ts.revoke_subject("alice")
    (family,) = ts.families("alice")
    assert family.revoke_reason == "subject_revoked"
    assert not (tmp_path / "elsewhere.db").exists() and not Path("elsewhere.db").exists()


class BareStore:
    """A refresh store that keeps no clients and no audit trail (it delegates the refresh
    protocol to a memory store)."""

    def __init__(self) -> None:
        self._inner = MemoryStore()

    def __getattr__(self, name: str) -> Any:
        if name in ("client_registry", "audit_reader"):
            raise AttributeError(name)
        return getattr(self._inner, name)


def test_a_store_without_registries_asks_for_them(tmp_path: Path, clock: ManualClock) -> None:
    settings = Settings(issuer=ISSUER, keys_dir=str(tmp_path))
    ts = Tokensmith(settings, clock=clock, refresh_store=BareStore())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="pass client_registry= and audit="):
        ts.clients.list_clients()
    given = MemoryStore()
    ts = Tokensmith(
        settings,
        clock=clock,
        refresh_store=BareStore(),
        client_registry=given,
        audit=given,  # type: ignore[arg-type]
    )
    ts.register_client("spa", confidential=False)
    assert [c.client_id for c in given.list_clients()] == ["spa"]
    assert ts.families("nobody") == []

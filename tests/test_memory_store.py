"""``database_url="memory://"``: the in-memory reference store behind the whole facade and
the HTTP app, with no database anywhere (README "In-memory store"). What the store itself
promises is the contract suite's business (``tests/contract/``, "on memory")."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tokensmith import ManualClock, Settings, Tokensmith
from tokensmith.errors import InvalidClient, InvalidGrant, InvalidToken, RefreshTokenReused
from tokensmith.http import create_app
from tokensmith.settings import MAX_LEEWAY
from tokensmith.store.memory import MemoryStore

from .conftest import ISSUER

DAY = 86_400


@pytest.fixture
def ts(tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> Tokensmith:
    monkeypatch.chdir(tmp_path)  # where a default SQLite file would appear
    ts = Tokensmith(
        Settings(issuer=ISSUER, database_url="memory://", keys_dir=str(tmp_path / "keys")),
        clock=clock,
    )
    ts.setup()
    return ts


def test_the_facade_runs_end_to_end_without_a_database(
    ts: Tokensmith, clock: ManualClock, tmp_path: Path
) -> None:
    assert isinstance(ts.sessions.store, MemoryStore)
    ts.register_client("spa", confidential=False)
    _, secret = ts.register_client("backend", confidential=True, scopes=("read",))
    assert secret is not None and [c.client_id for c in ts.clients.list_clients()] == [
        "backend",
        "spa",
    ]
    first = ts.issue(subject="alice", client_id="spa", scope="openid", audience="api")
    rotated = ts.refresh(first.refresh_token or "", client_id="spa")
    assert ts.verify_access_token(rotated.access_token, audience="api")["sid"] == first.session_id
    clock.advance(60)
    with pytest.raises(RefreshTokenReused):
        ts.refresh(first.refresh_token or "", client_id="spa")
    with pytest.raises(InvalidToken):  # the family's access tokens are denied
        ts.verify_access_token(rotated.access_token, audience="api")
    other = ts.issue(subject="alice", client_id="spa", audience="api")
    assert ts.revoke_subject("alice") == 1
    with pytest.raises(InvalidGrant):
        ts.refresh(other.refresh_token or "", client_id="spa")
    trail = {f.family_id: [r.reason for r in f.revocations] for f in ts.families("alice")}
    assert trail == {first.session_id: ["reuse_detected"], other.session_id: ["subject_revoked"]}
    ts.update_client("spa", enabled=False)
    with pytest.raises(InvalidClient):
        ts.issue(subject="bob", client_id="spa")
    clock.advance(30 * DAY + ts.settings.max_token_lifetime + MAX_LEEWAY)
    assert ts.cleanup() > 0 and ts.families("alice") == []
    # Nothing but the keys was written: no database file, no migrations.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys"]


def test_every_tokensmith_has_its_own_memory(tmp_path: Path, clock: ManualClock) -> None:
    """Not durable and not shared: a second instance (a restart, another process) starts
    empty."""
    settings = Settings(issuer=ISSUER, database_url="memory://", keys_dir=str(tmp_path / "keys"))
    first, second = Tokensmith(settings, clock=clock), Tokensmith(settings, clock=clock)
    first.setup()
    session = first.issue(subject="alice", client_id="spa")
    assert second.families("alice") == []
    with pytest.raises(InvalidGrant):
        second.refresh(session.refresh_token or "", client_id="spa")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def http(ts: Tokensmith) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(ts))
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as client:
        yield client


@pytest.mark.anyio
async def test_the_http_service_runs_on_the_memory_store(
    ts: Tokensmith, http: httpx.AsyncClient
) -> None:
    ts.register_client("spa", confidential=False)
    _, secret = ts.register_client("rs", confidential=True)
    basic = {"Authorization": "Basic " + base64.b64encode(f"rs:{secret}".encode()).decode()}
    login = ts.issue(subject="alice", client_id="spa", scope="openid", audience="api")
    data = {"grant_type": "refresh_token", "client_id": "spa"}
    r = await http.post("/token", data={**data, "refresh_token": login.refresh_token or ""})
    assert r.status_code == 200, r.text
    child = r.json()["refresh_token"]
    r = await http.post("/introspect", data={"token": child}, headers=basic)
    assert r.json()["active"] is True and r.json()["sid"] == login.session_id
    r = await http.post("/revoke", data={"token": child, "client_id": "spa"})
    assert r.status_code == 200
    r = await http.post("/token", data={**data, "refresh_token": child})
    assert (r.status_code, r.json()["error"]) == (400, "invalid_grant")
    r = await http.post("/introspect", data={"token": child}, headers=basic)
    assert r.json() == {"active": False}


def test_serve_refuses_several_workers_on_the_memory_store(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from tokensmith.cli import cli

    env = {"TOKENSMITH_DATABASE_URL": "memory://", "TOKENSMITH_KEYS_DIR": str(tmp_path / "k")}
    result = CliRunner().invoke(cli, ["serve", "--workers", "2"], env=env)
    assert result.exit_code == 2
    assert "memory:// lives in one process" in result.output

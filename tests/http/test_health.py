"""``/healthz`` and ``/readyz`` (issue #13 item 3): liveness needs nothing; readiness needs
the database and an active signing key, and says which is missing in short codes only."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from tests.http.conftest import ISSUER, Env
from tests.refresh.conftest import database, schema_store
from tokensmith import ManualClock, Tokensmith
from tokensmith.http import create_app
from tokensmith.settings import Settings
from tokensmith.store.sql import SqlStore

pytestmark = pytest.mark.anyio


async def _get(ts: Tokensmith, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=create_app(ts))
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as client:
        return await client.get(path)


def _unset_up(tmp_path: Path, database_url: str) -> Tokensmith:
    """A Tokensmith whose database has no schema and whose key store has no key."""
    settings = Settings(issuer=ISSUER, database_url=database_url, keys_dir=str(tmp_path / "k"))
    return Tokensmith(settings, clock=ManualClock(1_800_000_000))


async def test_healthz_answers_without_the_database(tmp_path: Path) -> None:
    ts = _unset_up(tmp_path, "postgresql+psycopg://nobody@127.0.0.1:1/none")
    r = await _get(ts, "/healthz")
    assert (r.status_code, r.json()) == (200, {"status": "ok"})
    assert r.headers["cache-control"] == "no-store"


async def test_readyz_when_set_up(env: Env) -> None:
    r = await env.http.get("/readyz")
    assert (r.status_code, r.json()) == (200, {"status": "ready"})
    assert r.headers["cache-control"] == "no-store"


async def test_readyz_names_what_is_missing_until_set_up_elsewhere(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ts.db'}"
    ts = _unset_up(tmp_path, url)
    r = await _get(ts, "/readyz")
    assert r.status_code == 503
    assert r.json() == {"status": "unavailable", "reasons": ["database", "signing_key"]}
    # The operator migrates and makes keys from another process (`tokensmith db upgrade`,
    # `keys generate`); the running instance sees the keys within the key reload interval.
    _unset_up(tmp_path, url).setup()
    deadline = time.monotonic() + 5
    while (r := await _get(ts, "/readyz")).status_code != 200 and time.monotonic() < deadline:
        await anyio.sleep(0.1)
    assert (r.status_code, r.json()) == (200, {"status": "ready"})


async def test_readyz_when_the_database_is_unreachable_leaks_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ts = _unset_up(tmp_path, "postgresql+psycopg://nobody:s3cret@127.0.0.1:1/none")
    ts.keys.ensure_active()
    r = await _get(ts, "/readyz")
    assert r.status_code == 503
    assert r.json() == {"status": "unavailable", "reasons": ["database"]}
    assert "s3cret" not in caplog.text and "127.0.0.1" not in r.text


@pytest.fixture
def pg_store(tmp_path: Path) -> Iterator[SqlStore]:
    with database("postgresql", tmp_path) as backend, schema_store(backend) as store:
        yield store


@pytest.mark.postgres
async def test_readyz_on_postgresql(tmp_path: Path, pg_store: SqlStore) -> None:
    settings = Settings(issuer=ISSUER, database_url="unused://", keys_dir=str(tmp_path / "k"))
    ts = Tokensmith(settings, refresh_store=pg_store)
    ts.keys.ensure_active()
    r = await _get(ts, "/readyz")
    assert (r.status_code, r.json()) == (200, {"status": "ready"})
    pg_store.engine.dispose()

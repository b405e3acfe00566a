"""Issue #16 Deliver 3 off the rotation path: when every connection of the pool is taken
(connects that hang on a primary whose machine vanished hold their slots for the connect
timeout) the pool gives up after that timeout. Every reader of the store then answers
``TemporarilyUnavailable`` (503 with ``Retry-After``), not SQLAlchemy's ``TimeoutError``
(a 500 with a traceback): the refresh store's own unit of work always did; the client
registry, the audit reader behind ``/sessions`` and the SQL key store went through the
engine without it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, make_url

from tests.failover.conftest import PG_URL, via
from tokensmith import Settings, Tokensmith
from tokensmith.clock import ManualClock
from tokensmith.errors import TemporarilyUnavailable
from tokensmith.store.sql import SqlKeyStore, create_store_engine

pytestmark = pytest.mark.postgres
ISSUER = "https://as.example.com"


@pytest.fixture
def url(schema: str) -> str:
    return via(make_url(PG_URL or "").port or 5432, schema)


@pytest.fixture
def ts(tmp_path: Path, url: str) -> Iterator[Tokensmith]:
    ts = Tokensmith(
        Settings(
            issuer=ISSUER,
            database_url=url,
            keys_dir=str(tmp_path / "keys"),
            database_pool_size=1,  # with its overflow, three connections
            database_connect_timeout=0.5,
        ),
        clock=ManualClock(1_800_000_000.0),
    )
    ts.setup()
    ts.register_client("spa", confidential=False)
    yield ts
    ts.sessions.store.engine.dispose()  # type: ignore[attr-defined]


def _exhausted(ts: Tokensmith) -> list[Connection]:
    engine = ts.sessions.store.engine  # type: ignore[attr-defined]
    return [engine.connect() for _ in range(3)]


@pytest.mark.parametrize(
    "read",
    [
        lambda ts: ts.families("alice"),
        lambda ts: ts.user_sessions("alice"),
        lambda ts: ts.clients.get_client("another"),
        lambda ts: ts.sessions.store.find_token(b"\0" * 32),
    ],
    ids=["audit-reader", "user-sessions", "client-registry", "refresh-store"],
)
def test_a_reader_that_finds_the_pool_exhausted_is_temporarily_unavailable(
    ts: Tokensmith, read: Callable[[Tokensmith], object]
) -> None:
    held = _exhausted(ts)
    try:
        with pytest.raises(TemporarilyUnavailable):
            read(ts)
    finally:
        for conn in held:
            conn.close()
    read(ts)  # and works again once connections are free


def test_the_sql_key_store_on_an_exhausted_pool_is_temporarily_unavailable(url: str) -> None:
    engine = create_store_engine(url, pool_size=1, connect_timeout=0.5)
    store = SqlKeyStore(engine, "correct horse battery staple")
    held = [engine.connect() for _ in range(3)]
    try:
        with pytest.raises(TemporarilyUnavailable):
            store.version()
    finally:
        for conn in held:
            conn.close()
        engine.dispose()

"""Fixtures for the SQL store's own tests (locks, statements, faults, migrations, processes):
both SQL backends, a fresh database each test. The backend-neutral contract suite is
``tests/contract/``, which imports the service helpers below.

SQLite is a real file in ``tmp_path`` (WAL). PostgreSQL gets a random schema per test,
selected through ``search_path`` and dropped afterwards; its cases are skipped, visibly,
only when ``TOKENSMITH_TEST_PG_URL`` is unset.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event, text

from tokensmith.clock import ManualClock
from tokensmith.events import Event, EventBus
from tokensmith.refresh.service import PendingSession, RefreshService, Session
from tokensmith.settings import Settings
from tokensmith.store.protocols import RefreshStore
from tokensmith.store.sql import SqlStore, create_store_engine
from tokensmith.store.sql.models import metadata
from tokensmith.tokens.claims import SessionClaims

PG_URL = os.environ.get("TOKENSMITH_TEST_PG_URL")
ISSUER = "https://as.example.com"
T0 = 1_800_000_000.0


@dataclass
class Backend:
    """How to reach one fresh database; picklable, so spawned processes can use it too."""

    name: str
    url: str
    connect_args: dict[str, Any] = field(default_factory=dict)

    def engine(self, **options: Any) -> Engine:
        return create_store_engine(self.url, connect_args=self.connect_args, **options)

    def store(self, **options: Any) -> SqlStore:
        return SqlStore(self.engine(**options))


@contextmanager
def pg_schema(prefix: str = "t") -> Iterator[str]:
    """A fresh schema on ``TOKENSMITH_TEST_PG_URL``, dropped afterwards; skips the test,
    visibly, without the variable."""
    if not PG_URL:
        pytest.skip("TOKENSMITH_TEST_PG_URL is not set: PostgreSQL case not run")
    schema = f"{prefix}_{secrets.token_hex(6)}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield schema
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@contextmanager
def pg_schema_url(prefix: str) -> Iterator[str]:
    """A ``database_url`` for a fresh schema (``search_path`` in the URL), for code that
    opens its own engine from settings (the facade, ``tokensmith serve``)."""
    with pg_schema(prefix) as schema:
        separator = "&" if "?" in (PG_URL or "") else "?"
        yield f"{PG_URL}{separator}options=-csearch_path%3D{schema}"


def _pg_backend() -> Iterator[Backend]:
    with pg_schema() as schema:
        assert PG_URL is not None
        yield Backend("postgresql", PG_URL, {"options": f"-csearch_path={schema}"})


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
    ids=["on SQLite", "on PostgreSQL"],
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """An empty database (no tables)."""
    with database(request.param, tmp_path) as empty:
        yield empty


@contextmanager
def database(name: str, tmp_path: Path) -> Iterator[Backend]:
    """A fresh empty database of backend ``name`` (``sqlite`` or ``postgresql``)."""
    if name == "sqlite":
        yield Backend("sqlite", f"sqlite:///{tmp_path / 'tokensmith.db'}")
    else:
        yield from _pg_backend()


# Narrow a test to one backend (a test about PostgreSQL error codes, SQLite locking...).
only_postgresql = pytest.mark.parametrize(
    "backend",
    [pytest.param("postgresql", marks=pytest.mark.postgres, id="on PostgreSQL")],
    indirect=True,
)
only_sqlite = pytest.mark.parametrize(
    "backend", [pytest.param("sqlite", id="on SQLite")], indirect=True
)


@pytest.fixture
def store(backend: Backend) -> Iterator[SqlStore]:
    """A store over a database with the current schema."""
    with schema_store(backend) as s:
        yield s


@contextmanager
def schema_store(backend: Backend) -> Iterator[SqlStore]:
    """A store over ``backend`` once the current schema is created there."""
    s = backend.store()
    metadata.create_all(s.engine)
    try:
        yield s
    finally:
        s.engine.dispose()


@pytest.fixture
def another_store(backend: Backend, store: SqlStore) -> Iterator[SqlStore]:
    """A second store on the same database, as another process would open it."""
    s = backend.store()
    try:
        yield s
    finally:
        s.engine.dispose()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


class Recorder:
    def __init__(self, bus: EventBus) -> None:
        self.events: list[Event] = []
        bus.register(self.events.append)

    def named(self, name: str) -> list[Event]:
        return [e for e in self.events if e.name == name]


@pytest.fixture
def bus() -> EventBus:
    return EventBus()


@pytest.fixture
def recorder(bus: EventBus) -> Recorder:
    return Recorder(bus)


def make_settings(**overrides: Any) -> Settings:
    return Settings(issuer=ISSUER, **overrides)


class KeptSecret:
    """A :class:`tokensmith.refresh.secret.SecretSource` holding one secret, as a key store
    shared by every process of a deployment would."""

    def __init__(self, value: bytes) -> None:
        self.value = value
        self.reads = 0

    def refresh_secret(self) -> bytes:
        self.reads += 1
        return self.value


# Every service of the suite shares it, like processes sharing one keys directory.
SHARED_SECRET = KeptSecret(secrets.token_bytes(32))


def make_service(
    store: RefreshStore, clock: ManualClock, bus: EventBus | None = None, **overrides: Any
) -> RefreshService:
    policy = overrides.pop("reuse_policy", None)
    source = overrides.pop("secret_source", SHARED_SECRET)
    return RefreshService(
        store,
        settings=make_settings(**overrides),
        clock=clock,
        events=bus or EventBus(),
        reuse_policy=policy,
        secret_source=source,
    )


@pytest.fixture
def service(store: RefreshStore, clock: ManualClock, bus: EventBus) -> RefreshService:
    return make_service(store, clock, bus)


_jti_counter = iter(range(10**9))


def new_jti() -> str:
    return f"jti-{next(_jti_counter)}-{secrets.token_hex(4)}"


def login(
    service: RefreshService,
    clock: ManualClock,
    *,
    client_id: str = "spa",
    subject: str = "alice",
    scope: str = "openid profile email",
    claims: SessionClaims | None = None,
) -> Session:
    return settled(
        service.start(
            subject=subject,
            client_id=client_id,
            scope=scope,
            audience=("api",),
            auth_time=int(clock.now()) - 10,
            amr=("pwd", "otp"),
            acr="urn:acr:2",
            access_jti=new_jti(),
            access_exp=int(clock.now()) + 300,
            claims=claims,
        )
    )


def settled(pending: PendingSession) -> Session:
    """The session once its commit is durable, as the facade hands it out."""
    pending.durable()
    return pending.session


def refresh(
    service: RefreshService,
    clock: ManualClock,
    token: str | None,
    *,
    client_id: str = "spa",
    scope: str | None = None,
    jti: str | None = None,
    prepare: Callable[[Session], None] | None = None,
) -> Session:
    """Rotate ``token``; ``prepare`` sees the session before its commit is durable, where
    the facade signs."""
    assert token is not None
    pending = service.rotate(
        token,
        client_id=client_id,
        scope=scope,
        access_jti=jti or new_jti(),
        access_exp=int(clock.now()) + 300,
    )
    if prepare is not None:
        prepare(pending.session)
    return settled(pending)


class StatementCounter:
    """Records every SQL statement sent through SQLAlchemy and every connection checkout
    (the unit of work runs on a raw pooled connection, so any database access at all
    checks one out): together they prove "no database access"."""

    def __init__(self, engine: Engine) -> None:
        self.statements: list[str] = []
        self.checkouts = 0
        event.listen(engine, "before_cursor_execute", self._seen)
        event.listen(engine, "checkout", self._checkout)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self.statements.append(statement)

    def _checkout(self, *_args: Any) -> None:
        self.checkouts += 1

    @property
    def untouched(self) -> bool:
        return not self.statements and self.checkouts == 0


def rows(store: SqlStore, sql: str, **params: Any) -> list[Any]:
    with store.engine.connect() as conn:
        return list(conn.execute(text(sql), params))

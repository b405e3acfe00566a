"""Engine factory: SQLite in WAL mode with a busy timeout and ``BEGIN IMMEDIATE``;
PostgreSQL (psycopg 3) at READ COMMITTED with row locks, and bounded so that no request
hangs on a database that is gone (README "High availability").

SQLAlchemy drops ``with_for_update()`` on SQLite (SECURITY R1, tested), so on SQLite every
write transaction starts with ``BEGIN IMMEDIATE``: writers queue on the database lock at the
start (waiting up to the busy timeout) instead of failing at commit.
"""

from __future__ import annotations

import contextlib
import math
import os
import sqlite3
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.pool import ConnectionPoolEntry, QueuePool

from tokensmith.errors import ConfigError, TemporarilyUnavailable
from tokensmith.settings import Settings
from tokensmith.store.sql.errors import busy, translate, unreachable

SQLITE_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
# Execution option naming a read-only unit of work (plain deferred BEGIN on SQLite).
READ_ONLY = "tokensmith_read_only"


def create_store_engine(
    database_url: str,
    *,
    busy_timeout: float = Settings.database_busy_timeout,
    sqlite_synchronous: str = Settings.sqlite_synchronous,
    pool_size: int = Settings.database_pool_size,
    connect_timeout: float = Settings.database_connect_timeout,
    lock_timeout: float = Settings.database_lock_timeout,
    connect_args: dict[str, Any] | None = None,
) -> Engine:
    """An engine configured for the refresh store; the defaults are ``Settings``'."""
    url = make_url(database_url)
    backend = url.get_backend_name()
    args = dict(connect_args or {})
    if backend == "sqlite":
        if sqlite_synchronous.upper() not in SQLITE_SYNCHRONOUS:
            raise ConfigError(f"sqlite synchronous must be one of {', '.join(SQLITE_SYNCHRONOUS)}")
        if url.database in (None, "", ":memory:"):
            raise ConfigError("the refresh store needs a SQLite file, not an in-memory database")
        create_private_sqlite_file(url.database)
        args.setdefault("timeout", busy_timeout)
        engine = create_engine(
            url,
            connect_args=args,
            poolclass=_Pool,
            pool_size=pool_size,
            max_overflow=2 * pool_size,
        )
        _configure_sqlite(engine, sqlite_synchronous.upper(), busy_timeout)
        return engine
    if backend == "postgresql":
        require_driver(url.get_driver_name())
        engine = create_engine(
            url,
            connect_args=_pg_connect_args(url, args, connect_timeout, lock_timeout),
            poolclass=_Pool,
            pool_size=pool_size,
            max_overflow=2 * pool_size,
            # After a failover every pooled connection is dead: the ping at checkout (one
            # round trip) finds them, instead of one failed request each.
            pool_pre_ping=True,
            pool_timeout=connect_timeout,
            pool_recycle=3600,
            isolation_level="READ COMMITTED",
        )
        event.listen(engine, "handle_error", _unavailable_when_unreachable)
        return engine
    raise ConfigError(f"unsupported database {backend!r}: use sqlite or postgresql")


class _Pool(QueuePool):
    """A pool whose exhaustion is retryable for every user of the engine (key store, client
    registry, audit reader, not only the refresh store's unit of work): a pool that stayed
    full for its timeout is ``TemporarilyUnavailable`` (503), not SQLAlchemy's
    ``TimeoutError`` (a 500). ``handle_error`` never sees it: no driver call failed."""

    def _do_get(self) -> ConnectionPoolEntry:
        try:
            return super()._do_get()
        except PoolTimeout as exc:
            raise busy() from exc


def _pg_connect_args(
    url: URL, args: dict[str, Any], connect_timeout: float, lock_timeout: float
) -> dict[str, Any]:
    """libpq settings that bound every wait on the server, under the caller's own (an
    ``options`` of the URL or of ``args`` keeps its settings). libpq counts the connect
    timeout per host in whole seconds, at least 2. ``lock_timeout``, not
    ``statement_timeout``: a statement timeout that fires while ``COMMIT`` waits for the
    synchronous standby makes PostgreSQL report success for a commit the standby never got.
    TCP keepalives and ``tcp_user_timeout`` notice a primary that vanished without closing
    the socket."""
    given = args.get("options", url.query.get("options", ""))
    options = " ".join([f"-c lock_timeout={int(lock_timeout * 1000)}", *_strings(given)])
    return {
        "connect_timeout": max(2, math.ceil(connect_timeout)),
        "keepalives": 1,
        "keepalives_idle": 5,
        "keepalives_interval": 2,
        "keepalives_count": 3,
        "tcp_user_timeout": 10_000,
        **args,
        "options": options,
    }


def _strings(value: str | tuple[str, ...]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else value


def _unavailable_when_unreachable(ctx: ExceptionContext) -> BaseException | None:
    """Connecting failed (no host of the URL is an accepting primary) or the connection
    died: every user of the engine hears ``TemporarilyUnavailable`` (503), not a driver
    error (500). Other errors keep their own handling."""
    if ctx.is_pre_ping:
        return None  # the pool reconnects on its own, and says so if it cannot
    if ctx.connection is None:
        return unreachable(ctx.original_exception)
    error = translate(ctx.original_exception, disconnect=ctx.is_disconnect)
    return error if isinstance(error, TemporarilyUnavailable) else None


def require_driver(driver: str) -> None:
    """``ConfigError`` saying what to install when the PostgreSQL driver is missing,
    rather than SQLAlchemy's ``No module named ...``."""
    import importlib.util

    if importlib.util.find_spec(driver) is None:
        raise ConfigError(
            f"the PostgreSQL driver {driver!r} is not installed: pip install 'tokensmith[postgres]'"
        )


def create_private_sqlite_file(path: str) -> None:
    """Create the SQLite file with mode 0600 before SQLite does (SECURITY B1): SQLite gives
    its ``-wal``, ``-shm`` and journal files the database file's mode, so none of them is
    readable by other local users. An existing file keeps its mode. If the file cannot be
    created here, SQLite reports why when it opens it."""
    with contextlib.suppress(OSError):
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))


def _configure_sqlite(engine: Engine, synchronous: str, busy_timeout: float) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: object) -> None:
        # Take transaction control from the driver so we can say BEGIN IMMEDIATE ourselves.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        read_only = conn.get_execution_options().get(READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

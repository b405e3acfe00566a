"""Engine factory: SQLite in WAL mode with a busy timeout and ``BEGIN IMMEDIATE``;
PostgreSQL (psycopg 3) at READ COMMITTED with row locks.

SQLAlchemy drops ``with_for_update()`` on SQLite (SECURITY R1, tested), so on SQLite every
write transaction starts with ``BEGIN IMMEDIATE``: writers queue on the database lock at the
start (waiting up to the busy timeout) instead of failing at commit.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from tokensmith.errors import ConfigError
from tokensmith.settings import Settings

SQLITE_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
# Execution option naming a read-only unit of work (plain deferred BEGIN on SQLite).
READ_ONLY = "tokensmith_read_only"


def create_store_engine(
    database_url: str,
    *,
    busy_timeout: float = Settings.database_busy_timeout,
    sqlite_synchronous: str = Settings.sqlite_synchronous,
    pool_size: int = Settings.database_pool_size,
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
            url, connect_args=args, pool_size=pool_size, max_overflow=2 * pool_size
        )
        _configure_sqlite(engine, sqlite_synchronous.upper(), busy_timeout)
        return engine
    if backend == "postgresql":
        require_driver(url.get_driver_name())
        return create_engine(
            url,
            connect_args=args,
            pool_size=pool_size,
            max_overflow=2 * pool_size,
            # No pre-ping: it costs a round trip per unit of work. A connection found dead
            # mid-transaction is invalidated and the call answers TemporarilyUnavailable.
            pool_recycle=3600,
            isolation_level="READ COMMITTED",
        )
    raise ConfigError(f"unsupported database {backend!r}: use sqlite or postgresql")


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

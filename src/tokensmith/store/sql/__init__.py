"""SQL implementation of the refresh store (SQLAlchemy 2, SQLite and PostgreSQL)."""

from __future__ import annotations

from tokensmith.settings import Settings
from tokensmith.store.sql.clients import SqlClientRegistry
from tokensmith.store.sql.engine import create_store_engine
from tokensmith.store.sql.keys import SqlKeyStore
from tokensmith.store.sql.migrate import downgrade, upgrade
from tokensmith.store.sql.repository import SqlStore
from tokensmith.store.sql.transaction import SqlTransaction


def open_store(settings: Settings) -> SqlStore:
    """The SQL store for ``settings.database_url`` (run :func:`upgrade` first)."""
    engine = create_store_engine(
        settings.database_url,
        busy_timeout=settings.database_busy_timeout,
        sqlite_synchronous=settings.sqlite_synchronous,
        pool_size=settings.database_pool_size,
        connect_timeout=settings.database_connect_timeout,
        lock_timeout=settings.database_lock_timeout,
    )
    return SqlStore(engine)


def open_key_store(settings: Settings) -> SqlKeyStore:
    """The SQL key store in ``settings.database_url`` (``key_store = "sql"``); its
    private keys are sealed under ``settings.key_passphrase``, which it requires."""
    # Keys are read at start-up and on the rotation schedule: two connections suffice.
    engine = create_store_engine(
        settings.database_url,
        busy_timeout=settings.database_busy_timeout,
        pool_size=2,
        connect_timeout=settings.database_connect_timeout,
        lock_timeout=settings.database_lock_timeout,
    )
    return SqlKeyStore(engine, settings.key_passphrase)


__all__ = [
    "SqlClientRegistry",
    "SqlKeyStore",
    "SqlStore",
    "SqlTransaction",
    "create_store_engine",
    "downgrade",
    "open_key_store",
    "open_store",
    "upgrade",
]

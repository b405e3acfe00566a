"""SQL implementation of the refresh store (SQLAlchemy 2, SQLite and PostgreSQL)."""

from __future__ import annotations

from tokensmith.settings import Settings
from tokensmith.store.sql.clients import SqlClientRegistry
from tokensmith.store.sql.engine import create_store_engine
from tokensmith.store.sql.migrate import downgrade, upgrade
from tokensmith.store.sql.repository import SqlStore, SqlTransaction


def open_store(
    settings: Settings, *, sqlite_synchronous: str = "FULL", busy_timeout: float = 10.0
) -> SqlStore:
    """The SQL store for ``settings.database_url`` (run :func:`upgrade` first)."""
    engine = create_store_engine(
        settings.database_url, sqlite_synchronous=sqlite_synchronous, busy_timeout=busy_timeout
    )
    return SqlStore(engine)


__all__ = [
    "SqlClientRegistry",
    "SqlStore",
    "SqlTransaction",
    "create_store_engine",
    "downgrade",
    "open_store",
    "upgrade",
]

"""Run the Alembic migrations programmatically (no alembic.ini; docs/contract.md "CLI").

``migrations/`` lives at the top of the source tree and is shipped inside the wheel as
``tokensmith/migrations`` (hatch force-include), so both places are searched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, make_url, text
from sqlalchemy.pool import NullPool

from tokensmith.errors import ConfigError
from tokensmith.filelock import exclusive_lock
from tokensmith.store.sql.engine import create_private_sqlite_file, require_driver

VERSION_TABLE = "tokensmith_alembic_version"
# config.attributes key: where migration 0005 hands a refresh secret it takes out of ts_meta.
REFRESH_SECRET_SINK = "refresh_secret_sink"
# pg_advisory_lock key that serialises concurrent migrations ("tokensmith" in ASCII, cut).
_LOCK_KEY = 0x746F6B656E73


def migrations_dir() -> Path:
    package = Path(__file__).resolve().parents[2]  # src/tokensmith/store/sql/migrate.py
    for candidate in (package / "migrations", package.parents[1] / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise ConfigError("tokensmith migrations are missing from this installation")


def alembic_config(database_url: str | None = None) -> Config:
    """An Alembic config for ``database_url``; ``migrations/env.py`` also runs on a
    connection handed over in ``config.attributes["connection"]``."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    if database_url is not None:
        # ConfigParser interpolation would eat a literal % in a password.
        config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(
    database_url: str,
    revision: str = "head",
    *,
    refresh_secret_sink: Callable[[bytes], None] | None = None,
) -> list[str]:
    """Migrate to ``revision``; the revisions applied, oldest first (``"0005 The refresh
    secret leaves the database..."``), none when it was up to date. Several processes may
    call this at once (every ``serve`` instance sets up at start): they take turns, and the
    later ones find nothing to do. ``refresh_secret_sink`` receives a refresh secret found
    in the database before it is deleted there (migration 0005), to keep it with the keys."""
    with _migration_lock(database_url) as session:
        config = alembic_config(database_url)
        config.attributes[REFRESH_SECRET_SINK] = refresh_secret_sink
        # On PostgreSQL the migrations run in the session that holds the lock: a failover
        # ends both at once, so no other process can take the lock while they still run.
        config.attributes["connection"] = session
        before = _current_revision(database_url)
        command.upgrade(config, revision)
        after = _current_revision(database_url)
    if after == before:
        return []
    scripts = ScriptDirectory.from_config(config)
    applied = list(scripts.iterate_revisions(after, before))
    return [f"{r.revision} {(r.doc or '').splitlines()[0]}".strip() for r in reversed(applied)]


def _current_revision(database_url: str) -> str | None:
    engine = create_engine(make_url(database_url), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
            return context.get_current_revision()
    finally:
        engine.dispose()


@contextmanager
def _migration_lock(database_url: str) -> Iterator[Connection | None]:
    """Hold the migration lock: on PostgreSQL a session-level advisory lock, yielding its
    session (the lock lives exactly as long as it); on SQLite a file lock."""
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        require_driver(url.get_driver_name())
        engine = create_engine(url, poolclass=NullPool)
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _LOCK_KEY})
                conn.commit()  # the lock stays: the migrations begin their own transaction
                yield conn
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _LOCK_KEY})
                conn.commit()
        finally:
            engine.dispose()
    elif url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        create_private_sqlite_file(url.database)
        with exclusive_lock(Path(f"{url.database}.migrate-lock")):
            yield None
    else:
        yield None


def downgrade(database_url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(database_url), revision)

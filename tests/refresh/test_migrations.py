"""Migrations (ARCHITECTURE.md "Where to change what": the schema): upgrade head on an empty
database, no drift between the models
and the migrations (what ``alembic check`` verifies), downgrade to base - on every backend."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Connection, Integer, MetaData, create_engine, inspect, text

from tokensmith import Tokensmith
from tokensmith.settings import Settings
from tokensmith.store.sql import upgrade
from tokensmith.store.sql.migrate import (
    REFRESH_SECRET_SINK,
    VERSION_TABLE,
    alembic_config,
    migrations_dir,
)
from tokensmith.store.sql.models import metadata

from .conftest import Backend

TABLES = {t.name for t in metadata.sorted_tables}


def _on(conn: Connection) -> Config:
    """The migrations' config, run on ``conn`` (``migrations/env.py`` honours it)."""
    config = alembic_config()
    config.attributes["connection"] = conn
    return config


def test_upgrade_head_then_no_drift_then_downgrade_to_base(backend: Backend) -> None:
    engine = backend.engine()
    try:
        with engine.connect() as conn:
            command.upgrade(_on(conn), "head")
            conn.commit()
        with engine.connect() as conn:
            assert TABLES | {VERSION_TABLE} <= set(inspect(conn).get_table_names())
            context = MigrationContext.configure(
                conn, opts={"version_table": VERSION_TABLE, "compare_type": True}
            )
            assert compare_metadata(context, metadata) == []
            # ...and the comparison does bite: a model change shows up as drift.
            drifted = MetaData(naming_convention=metadata.naming_convention)
            for table in metadata.tables.values():
                table.to_metadata(drifted)
            drifted.tables["ts_families"].append_column(Column("extra", Integer))
            assert compare_metadata(context, drifted) != []
            head = ScriptDirectory.from_config(alembic_config()).get_current_head()
            assert context.get_current_revision() == head
        with engine.connect() as conn:
            command.downgrade(_on(conn), "base")
            conn.commit()
        with engine.connect() as conn:
            assert not TABLES & set(inspect(conn).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_by_url_is_idempotent(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/by-url.db"
    upgrade(url)
    upgrade(url)
    backend = Backend("sqlite", url)
    engine = backend.engine()
    try:
        with engine.connect() as conn:
            assert set(inspect(conn).get_table_names()) >= TABLES
    finally:
        engine.dispose()


def test_the_migrations_are_found_in_the_source_tree() -> None:
    found = migrations_dir()
    assert (found / "env.py").is_file()
    assert any(found.glob("versions/*.py"))


_OLD_SECRET_ROW = "INSERT INTO ts_meta (name, value) VALUES ('refresh_secret', :v)"


def test_0005_hands_the_refresh_secret_to_the_sink_and_deletes_it(backend: Backend) -> None:
    old = secrets.token_bytes(32)
    moved: list[bytes] = []
    engine = backend.engine()
    try:
        with engine.connect() as conn:
            command.upgrade(_on(conn), "0003")
            conn.execute(text(_OLD_SECRET_ROW), {"v": old})
            config = _on(conn)
            config.attributes[REFRESH_SECRET_SINK] = moved.append
            command.upgrade(config, "head")
            conn.commit()
            assert list(conn.execute(text("SELECT name FROM ts_meta"))) == []
    finally:
        engine.dispose()
    assert moved == [old]


def test_0005_without_a_sink_deletes_the_secret_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    upgrade(url, "0003")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(_OLD_SECRET_ROW), {"v": b"x" * 32})
    with caplog.at_level(logging.WARNING, logger="tokensmith.migrations"):
        upgrade(url)
    with engine.connect() as conn:
        assert list(conn.execute(text("SELECT name FROM ts_meta"))) == []
    engine.dispose()
    assert "grace retries of refreshes made before this upgrade" in caplog.text


@pytest.mark.parametrize(
    "settings",
    [{}, {"key_store": "sql", "key_passphrase": "correct horse"}],
    ids=["file key store", "SQL key store"],
)
def test_setup_moves_an_old_refresh_secret_into_the_key_store(
    tmp_path: Path, settings: dict[str, str]
) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    upgrade(url, "0003")
    old = secrets.token_bytes(32)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(_OLD_SECRET_ROW), {"v": old})
    engine.dispose()
    ts = Tokensmith(
        Settings(
            issuer="https://as.example.com",
            database_url=url,
            keys_dir=str(tmp_path / "keys"),
            **settings,  # type: ignore[arg-type]
        )
    )
    ts.setup()
    # A grace retry of a child derived before the upgrade still re-derives the same child.
    assert ts.keys.store.refresh_secret() == old  # type: ignore[attr-defined]


def test_0010_keeps_the_proofs_accepted_before_it_both_ways(backend: Backend) -> None:
    """Renaming the DPoP replay ledger's rows by ``iat`` keeps them: a proof accepted
    just before the upgrade (default window) is still a replay after it, and after a
    downgrade there is one row per key again, the newest."""
    key, other = secrets.token_bytes(32), secrets.token_bytes(32)
    old = text("INSERT INTO ts_dpop_proofs (key, expires_at) VALUES (:k, :e)")
    engine = backend.engine()
    try:
        with engine.connect() as conn:
            command.upgrade(_on(conn), "0009")
            conn.execute(old, [{"k": key, "e": 70.0}, {"k": other, "e": 80.0}])
            command.upgrade(_on(conn), "0010")
            rows = conn.execute(text("SELECT key, iat FROM ts_dpop_proofs ORDER BY iat"))
            assert [(bytes(k), t) for k, t in rows] == [(key, 10.0), (other, 20.0)]
            new = text("INSERT INTO ts_dpop_proofs (key, iat) VALUES (:k, :t)")
            conn.execute(new, {"k": key, "t": 30.0})  # the same key, another proof
            command.downgrade(_on(conn), "0009")
            rows = conn.execute(text("SELECT key, expires_at FROM ts_dpop_proofs ORDER BY 2"))
            assert [(bytes(k), e) for k, e in rows] == [(other, 80.0), (key, 90.0)]
            command.upgrade(_on(conn), "head")
            conn.commit()
    finally:
        engine.dispose()
    store = backend.store()
    try:
        assert store.atomic(lambda tx: tx.remember_proof(key, 30.0)) is False
        assert store.atomic(lambda tx: tx.remember_proof(key, 31.0)) is True
    finally:
        store.engine.dispose()

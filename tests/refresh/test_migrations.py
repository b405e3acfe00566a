"""Migrations (STYLE habit 13): upgrade head on an empty database, no drift between the models
and the migrations (what ``alembic check`` verifies), downgrade to base - on every backend."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Integer, MetaData, inspect

from tokensmith.store.sql import upgrade
from tokensmith.store.sql.migrate import (
    VERSION_TABLE,
    alembic_config,
    downgrade_connection,
    migrations_dir,
    upgrade_connection,
)
from tokensmith.store.sql.models import metadata

from .conftest import Backend

TABLES = {t.name for t in metadata.sorted_tables}


def test_upgrade_head_then_no_drift_then_downgrade_to_base(backend: Backend) -> None:
    engine = backend.engine()
    try:
        with engine.connect() as conn:
            upgrade_connection(conn)
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
            downgrade_connection(conn)
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

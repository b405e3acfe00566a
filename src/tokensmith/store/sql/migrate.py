"""Run the Alembic migrations programmatically (no alembic.ini; SPEC "db upgrade").

``migrations/`` lives at the top of the source tree and is shipped inside the wheel as
``tokensmith/migrations`` (hatch force-include), so both places are searched.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection

import tokensmith
from tokensmith.errors import ConfigError

VERSION_TABLE = "tokensmith_alembic_version"


def migrations_dir() -> Path:
    package = Path(tokensmith.__file__).resolve().parent
    for candidate in (package / "migrations", package.parents[1] / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise ConfigError("tokensmith migrations are missing from this installation")


def alembic_config(database_url: str | None = None, connection: Connection | None = None) -> Config:
    """An Alembic config for ``database_url``, or for an open ``connection`` (tests)."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    if database_url is not None:
        # ConfigParser interpolation would eat a literal % in a password.
        config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(database_url), revision)


def upgrade_connection(connection: Connection, revision: str = "head") -> None:
    command.upgrade(alembic_config(connection=connection), revision)


def downgrade_connection(connection: Connection, revision: str = "base") -> None:
    command.downgrade(alembic_config(connection=connection), revision)

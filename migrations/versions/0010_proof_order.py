"""DPoP replay keys (``ts_dpop_proofs``) named by the proof's ``iat``, then its key, instead
of the key alone with an expiry: a replay has the same ``iat`` and key whatever window an
instance allows, proofs arrive in nearly that order, so each insert lands on the b-tree's
last page, and cleanup deletes from its front with no second index
(tokensmith.store.sql.models). The rows are kept: a row's ``iat`` is its old expiry less
the default window (60 s), exact for deployments that kept the default.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_TABLE = "ts_dpop_proofs"
_INDEX = "ix_ts_dpop_proofs_expires_at"
_WINDOW = 60.0  # tokensmith.settings.Settings.dpop_iat_window's default


def _rebuild(column: str, primary_key: list[str], select: str) -> None:
    """The table again with ``column`` (iat or expires_at) beside ``key``, keyed by
    ``primary_key``, filled from the old one by ``select``."""
    op.create_table(
        f"{_TABLE}_next",
        sa.Column(column, sa.Double(), nullable=False),
        sa.Column("key", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint(*primary_key, name=f"pk_{_TABLE}_next"),
        sqlite_with_rowid=False,
    )
    op.execute(f"INSERT INTO {_TABLE}_next ({column}, key) {select}")
    op.drop_table(_TABLE)
    op.rename_table(f"{_TABLE}_next", _TABLE)
    if op.get_bind().dialect.name == "postgresql":  # SQLite keeps no name of its own
        op.execute(f"ALTER INDEX pk_{_TABLE}_next RENAME TO pk_{_TABLE}")


def upgrade() -> None:
    op.drop_index(_INDEX, table_name=_TABLE)
    _rebuild("iat", ["iat", "key"], f"SELECT expires_at - {_WINDOW}, key FROM {_TABLE}")


def downgrade() -> None:
    # Keyed by ``key`` alone again: of one key's rows, the newest is kept.
    op.execute(
        f"DELETE FROM {_TABLE} WHERE EXISTS (SELECT 1 FROM {_TABLE} AS later"
        f" WHERE later.key = {_TABLE}.key AND later.iat > {_TABLE}.iat)"
    )
    _rebuild("expires_at", ["key"], f"SELECT iat + {_WINDOW}, key FROM {_TABLE}")
    op.create_index(_INDEX, _TABLE, ["expires_at"])

"""DPoP replay keys (``ts_dpop_proofs``) keyed by the end of their window, then the key:
proofs arrive in nearly that order, so each insert lands on the b-tree's last page and
cleanup deletes from its front, with no second index (tokensmith.store.sql.models). The
rows are copied: proofs accepted before the upgrade stay refused as replays.

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


def _rebuild(primary_key: list[str]) -> None:
    """The table again under ``primary_key``, rows kept. PostgreSQL swaps the constraint in
    place; SQLite cannot, so the rows move to a new WITHOUT ROWID table."""
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(f"pk_{_TABLE}", _TABLE, type_="primary")
        op.create_primary_key(f"pk_{_TABLE}", _TABLE, primary_key)
        return
    op.create_table(
        f"{_TABLE}_next",
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.Column("key", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint(*primary_key, name=f"pk_{_TABLE}"),
        sqlite_with_rowid=False,
    )
    op.execute(f"INSERT INTO {_TABLE}_next (expires_at, key) SELECT expires_at, key FROM {_TABLE}")
    op.drop_table(_TABLE)
    op.rename_table(f"{_TABLE}_next", _TABLE)


def upgrade() -> None:
    op.drop_index(_INDEX, table_name=_TABLE)
    _rebuild(["expires_at", "key"])


def downgrade() -> None:
    # Keyed by ``key`` alone again: of one key's rows, the one expiring last is kept.
    op.execute(
        f"DELETE FROM {_TABLE} WHERE EXISTS (SELECT 1 FROM {_TABLE} AS later"
        f" WHERE later.key = {_TABLE}.key AND later.expires_at > {_TABLE}.expires_at)"
    )
    _rebuild(["key"])
    op.create_index(_INDEX, _TABLE, ["expires_at"])

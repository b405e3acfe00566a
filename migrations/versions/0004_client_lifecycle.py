"""Client lifecycle: enabled flag, the previous secret during a rotation's overlap, and
an index to find a client's families when it is deleted.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ts_clients") as batch:
        batch.add_column(
            sa.Column("enabled", sa.Boolean(), server_default=sa.true(), nullable=False)
        )
        batch.add_column(sa.Column("previous_secret_hash", sa.LargeBinary(length=32)))
        batch.add_column(sa.Column("previous_secret_expires_at", sa.Double()))
    op.create_index(op.f("ix_ts_families_client_id"), "ts_families", ["client_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_ts_families_client_id"), table_name="ts_families")
    with op.batch_alter_table("ts_clients") as batch:
        batch.drop_column("previous_secret_expires_at")
        batch.drop_column("previous_secret_hash")
        batch.drop_column("enabled")

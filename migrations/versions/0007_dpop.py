"""DPoP (RFC 9449): a family's refresh tokens bound to a key thumbprint, clients that
require DPoP (§5.2 ``dpop_bound_access_tokens``), and the proof replay keys every instance
shares (§11.1). NULL/false for every existing row: nothing is bound until a proof binds it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("ts_families", sa.Column("dpop_jkt", sa.String(length=64), nullable=True))
    with op.batch_alter_table("ts_clients") as batch:
        batch.add_column(
            sa.Column(
                "dpop_bound_access_tokens",
                sa.Boolean(),
                server_default=sa.false(),
                nullable=False,
            )
        )
    op.create_table(
        "ts_dpop_proofs",
        sa.Column("key", sa.LargeBinary(length=32), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_ts_dpop_proofs")),
        sqlite_with_rowid=False,
    )
    op.create_index(op.f("ix_ts_dpop_proofs_expires_at"), "ts_dpop_proofs", ["expires_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_ts_dpop_proofs_expires_at"), table_name="ts_dpop_proofs")
    op.drop_table("ts_dpop_proofs")
    with op.batch_alter_table("ts_clients") as batch:
        batch.drop_column("dpop_bound_access_tokens")
    with op.batch_alter_table("ts_families") as batch:
        batch.drop_column("dpop_jkt")

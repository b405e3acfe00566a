"""Back-channel logout (OpenID Connect Back-Channel Logout 1.0): a client's
``backchannel_logout_uri`` and ``backchannel_logout_session_required``, and the outbox of
logout tokens still to deliver (README "Back-channel logout").

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
    with op.batch_alter_table("ts_clients") as batch:
        batch.add_column(sa.Column("backchannel_logout_uri", sa.String(length=2048)))
        batch.add_column(
            sa.Column(
                "backchannel_logout_session_required",
                sa.Boolean(),
                server_default=sa.false(),
                nullable=False,
            )
        )
    op.create_table(
        "ts_logout_outbox",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.String(length=255), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.Double(), nullable=False),
        sa.Column("claimed_until", sa.Double(), nullable=True),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ts_logout_outbox")),
    )
    op.create_index(
        op.f("ix_ts_logout_outbox_next_attempt_at"), "ts_logout_outbox", ["next_attempt_at"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_ts_logout_outbox_next_attempt_at"), table_name="ts_logout_outbox")
    op.drop_table("ts_logout_outbox")
    with op.batch_alter_table("ts_clients") as batch:
        batch.drop_column("backchannel_logout_session_required")
        batch.drop_column("backchannel_logout_uri")

"""Families keep their application claims (README "Custom claims"): a nullable JSON column,
NULL for every existing session and every session issued without claims.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("ts_families", sa.Column("claims", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ts_families") as batch:
        batch.drop_column("claims")

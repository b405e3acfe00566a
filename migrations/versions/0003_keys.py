"""SQL key store: lifecycle records, sealed private keys and the single lock/salt row.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ts_key_store",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.Column("salt", sa.LargeBinary(length=16), nullable=False),
        sa.Column("check_nonce", sa.LargeBinary(length=12), nullable=False),
        sa.Column("check_value", sa.LargeBinary(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ts_key_store")),
    )
    op.create_table(
        "ts_private_keys",
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("nonce", sa.LargeBinary(length=12), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("kid", name=op.f("pk_ts_private_keys")),
    )
    op.create_table(
        "ts_signing_keys",
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("alg", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("activated_at", sa.Double(), nullable=True),
        sa.Column("retired_at", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(
            ["kid"],
            ["ts_private_keys.kid"],
            name=op.f("fk_ts_signing_keys_kid_ts_private_keys"),
        ),
        sa.PrimaryKeyConstraint("kid", name=op.f("pk_ts_signing_keys")),
    )


def downgrade() -> None:
    op.drop_table("ts_signing_keys")
    op.drop_table("ts_private_keys")
    op.drop_table("ts_key_store")

"""Refresh store: families, refresh tokens (hashes only), access-token records, denylist,
subject not-before, meta (server secret) and the family-revocation audit.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ts_denylist",
        sa.Column("jti", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("jti", name=op.f("pk_ts_denylist")),
    )
    op.create_index(op.f("ix_ts_denylist_expires_at"), "ts_denylist", ["expires_at"])

    op.create_table(
        "ts_families",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("client_id", sa.String(length=255), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("audience", sa.JSON(), nullable=False),
        sa.Column("auth_time", sa.BigInteger(), nullable=False),
        sa.Column("amr", sa.JSON(), nullable=False),
        sa.Column("acr", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.Column("revoked_at", sa.Double(), nullable=True),
        sa.Column("revoke_reason", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ts_families")),
    )
    op.create_index(op.f("ix_ts_families_expires_at"), "ts_families", ["expires_at"])
    op.create_index(op.f("ix_ts_families_revoked_at"), "ts_families", ["revoked_at"])
    op.create_index(op.f("ix_ts_families_subject"), "ts_families", ["subject"])

    op.create_table(
        "ts_family_revocations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("family_id", sa.String(length=64), nullable=False),
        sa.Column("revoked_at", sa.Double(), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("actor", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ts_family_revocations")),
    )
    op.create_index(
        op.f("ix_ts_family_revocations_family_id"), "ts_family_revocations", ["family_id"]
    )

    op.create_table(
        "ts_meta",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_ts_meta")),
    )
    op.create_table(
        "ts_subject_not_before",
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("not_before", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("subject", name=op.f("pk_ts_subject_not_before")),
    )
    op.create_index(
        op.f("ix_ts_subject_not_before_not_before"), "ts_subject_not_before", ["not_before"]
    )

    op.create_table(
        "ts_access_tokens",
        sa.Column("jti", sa.String(length=64), nullable=False),
        sa.Column("family_id", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["family_id"],
            ["ts_families.id"],
            name=op.f("fk_ts_access_tokens_family_id_ts_families"),
        ),
        sa.PrimaryKeyConstraint("jti", name=op.f("pk_ts_access_tokens")),
    )
    op.create_index(op.f("ix_ts_access_tokens_family_id"), "ts_access_tokens", ["family_id"])

    op.create_table(
        "ts_refresh_tokens",
        sa.Column("token_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("family_id", sa.String(length=64), nullable=False),
        sa.Column("parent_hash", sa.LargeBinary(length=32), nullable=True),
        sa.Column("salt", sa.LargeBinary(length=16), nullable=True),
        sa.Column("issued_at", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.Column("used_at", sa.Double(), nullable=True),
        sa.Column("revoked_at", sa.Double(), nullable=True),
        sa.Column("grace_retries", sa.Integer(), nullable=False),
        sa.Column("used_ip", sa.String(length=64), nullable=True),
        sa.Column("used_user_agent", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(
            ["family_id"],
            ["ts_families.id"],
            name=op.f("fk_ts_refresh_tokens_family_id_ts_families"),
        ),
        sa.ForeignKeyConstraint(
            ["parent_hash"],
            ["ts_refresh_tokens.token_hash"],
            name=op.f("fk_ts_refresh_tokens_parent_hash_ts_refresh_tokens"),
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_ts_refresh_tokens")),
        sa.UniqueConstraint("parent_hash", name=op.f("uq_ts_refresh_tokens_parent_hash")),
    )
    op.create_index(op.f("ix_ts_refresh_tokens_family_id"), "ts_refresh_tokens", ["family_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_ts_refresh_tokens_family_id"), table_name="ts_refresh_tokens")

    op.drop_table("ts_refresh_tokens")
    op.drop_index(op.f("ix_ts_access_tokens_family_id"), table_name="ts_access_tokens")

    op.drop_table("ts_access_tokens")
    op.drop_index(op.f("ix_ts_subject_not_before_not_before"), table_name="ts_subject_not_before")

    op.drop_table("ts_subject_not_before")
    op.drop_table("ts_meta")
    op.drop_index(op.f("ix_ts_family_revocations_family_id"), table_name="ts_family_revocations")

    op.drop_table("ts_family_revocations")
    op.drop_index(op.f("ix_ts_families_subject"), table_name="ts_families")
    op.drop_index(op.f("ix_ts_families_revoked_at"), table_name="ts_families")
    op.drop_index(op.f("ix_ts_families_expires_at"), table_name="ts_families")

    op.drop_table("ts_families")
    op.drop_index(op.f("ix_ts_denylist_expires_at"), table_name="ts_denylist")

    op.drop_table("ts_denylist")

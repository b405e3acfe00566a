"""The refresh secret leaves the database; salted rows get a partial index; the SQL key
store records its scrypt cost and keeps the sealed refresh secret (SECURITY B1, B6).

A secret found in ``ts_meta`` is handed to the caller's sink (``tokensmith db upgrade`` and
``Tokensmith.setup()`` give it to the key store) and deleted here in any case. Losing it
only makes grace retries of refreshes made before the upgrade fail, which the code refuses
safely (``invalid_grant``, nothing forked).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import context, op

from tokensmith.store.sql.migrate import REFRESH_SECRET_SINK

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

logger = logging.getLogger("tokensmith.migrations")
# Stores made before this revision were sealed at scrypt n=2**15.
_LEGACY_SCRYPT_N = "32768"
_SALTED = sa.text("salt IS NOT NULL")
_meta = sa.table("ts_meta", sa.column("name", sa.String), sa.column("value", sa.LargeBinary))
_SECRET_ROW = _meta.c.name == "refresh_secret"


def upgrade() -> None:
    op.add_column(
        "ts_key_store",
        sa.Column("scrypt_n", sa.BigInteger(), nullable=False, server_default=_LEGACY_SCRYPT_N),
    )
    op.add_column("ts_key_store", sa.Column("secret_nonce", sa.LargeBinary(12), nullable=True))
    op.add_column("ts_key_store", sa.Column("secret", sa.LargeBinary(64), nullable=True))
    op.create_index(
        "ix_ts_refresh_tokens_salted",
        "ts_refresh_tokens",
        ["issued_at"],
        postgresql_where=_SALTED,
        sqlite_where=_SALTED,
    )
    _move_secret()


def _move_secret() -> None:
    conn = op.get_bind()
    value = conn.execute(sa.select(_meta.c.value).where(_SECRET_ROW)).scalar()
    if value is None:
        return
    sink = context.config.attributes.get(REFRESH_SECRET_SINK)
    if sink is not None:
        sink(bytes(value))
        logger.info("the refresh secret moved from the database to the key store")
    else:
        logger.warning(
            "the refresh secret was deleted from the database with nowhere to keep it: "
            "grace retries of refreshes made before this upgrade will be refused"
        )
    conn.execute(sa.delete(_meta).where(_SECRET_ROW))


def downgrade() -> None:
    # The secret stays with the keys: an older version generates a new one in ts_meta.
    op.drop_index("ix_ts_refresh_tokens_salted", table_name="ts_refresh_tokens")
    with op.batch_alter_table("ts_key_store") as batch:
        batch.drop_column("secret")
        batch.drop_column("secret_nonce")
        batch.drop_column("scrypt_n")

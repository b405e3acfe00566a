"""The revocation log (tokensmith.revocation.log): one row per revocation under an id that
grows in commit order, and the one-row cursor that hands the ids out. Revocations made
before this revision are copied in, so the log is complete from the start.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# tokensmith.settings.MAX_LEEWAY: a denied jti matters until its exp plus this.
_MAX_LEEWAY = 300.0


def upgrade() -> None:
    log = op.create_table(
        "ts_revocation_log",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("item", sa.String(length=255), nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("until", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ts_revocation_log")),
    )
    cursor = op.create_table(
        "ts_revocation_cursor",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ts_revocation_cursor")),
    )
    bind = op.get_bind()
    now = time.time()
    rows: list[tuple[str, str, float, float | None]] = []
    for jti, exp in bind.execute(sa.text("SELECT jti, expires_at FROM ts_denylist")):
        rows.append(("jti", jti, now, exp + _MAX_LEEWAY))
    revoked = "SELECT id, revoked_at FROM ts_families WHERE revoked_at IS NOT NULL"
    for family_id, at in bind.execute(sa.text(revoked)):
        rows.append(("family", family_id, at, None))
    not_before = "SELECT subject, not_before FROM ts_subject_not_before"
    for subject, at in bind.execute(sa.text(not_before)):
        rows.append(("subject", subject, at, None))
    disabled = "SELECT client_id FROM ts_clients WHERE enabled = :no"
    for (client_id,) in bind.execute(sa.text(disabled), {"no": False}):
        rows.append(("client_disabled", client_id, now, None))
    entries = [
        {"id": n, "kind": kind, "item": item, "at": at, "until": until}
        for n, (kind, item, at, until) in enumerate(rows, start=1)
    ]
    if entries:
        op.bulk_insert(log, entries)
    op.bulk_insert(cursor, [{"id": 1, "position": len(entries)}])


def downgrade() -> None:
    op.drop_table("ts_revocation_cursor")
    op.drop_table("ts_revocation_log")

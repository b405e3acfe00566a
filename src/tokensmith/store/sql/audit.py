"""Read-only views for operators: a user's sessions and the family-revocation audit trail."""

from __future__ import annotations

from sqlalchemy import Engine, bindparam, select

from tokensmith.store.records import FamilySummary, Revocation
from tokensmith.store.sql.models import families, family_revocations

_FAMILIES = (
    select(families)
    .where(families.c.subject == bindparam("subject"))
    .order_by(families.c.created_at.desc())
    .limit(bindparam("limit"))
)
_REVOCATIONS = (
    select(family_revocations)
    .where(family_revocations.c.family_id.in_(bindparam("ids", expanding=True)))
    .order_by(family_revocations.c.revoked_at)
)


class SqlAuditReader:
    """Implements :class:`tokensmith.store.AuditReader` over the store's tables."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def list_families(self, subject: str, limit: int = 100) -> list[FamilySummary]:
        """The newest ``limit`` sessions of ``subject`` with every revocation recorded."""
        return _list_families(self._engine, subject, limit)


def _list_families(engine: Engine, subject: str, limit: int) -> list[FamilySummary]:
    with engine.connect() as conn:
        rows = conn.execute(_FAMILIES, {"subject": subject, "limit": limit}).all()
        trail: dict[str, list[Revocation]] = {}
        if rows:
            for r in conn.execute(_REVOCATIONS, {"ids": [row.id for row in rows]}):
                trail.setdefault(r.family_id, []).append(
                    Revocation(r.revoked_at, r.reason, r.actor)
                )
    return [
        FamilySummary(
            family_id=row.id,
            subject=row.subject,
            client_id=row.client_id,
            scope=row.scope,
            created_at=row.created_at,
            expires_at=row.expires_at,
            revoked_at=row.revoked_at,
            revoke_reason=row.revoke_reason,
            revocations=tuple(trail.get(row.id, ())),
        )
        for row in rows
    ]

"""Read-only views for operators: a user's sessions and the family-revocation audit trail."""

from __future__ import annotations

from sqlalchemy import Engine, bindparam, select

from tokensmith.store.records import FamilySummary, Revocation
from tokensmith.store.sql.models import families, family_revocations
from tokensmith.store.sql.rows import family_record
from tokensmith.store.sql.statements import FAMILY_COLS

_FAMILIES = (
    select(*FAMILY_COLS)
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
        with self._engine.connect() as conn:
            found = [
                family_record(row)
                for row in conn.execute(_FAMILIES, {"subject": subject, "limit": limit})
            ]
            trail: dict[str, list[Revocation]] = {}
            if found:
                ids = [family.id for family in found]
                for r in conn.execute(_REVOCATIONS, {"ids": ids}):
                    trail.setdefault(r.family_id, []).append(
                        Revocation(r.revoked_at, r.reason, r.actor)
                    )
        return [FamilySummary.of(family, tuple(trail.get(family.id, ()))) for family in found]

"""Read-only views for operators: a user's sessions and the family-revocation audit trail."""

from __future__ import annotations

from sqlalchemy import Engine, and_, bindparam, exists, func, select

from tokensmith.store.records import FamilySummary, Revocation, SessionActivity
from tokensmith.store.sql.models import families, family_revocations, refresh_tokens
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

_used = refresh_tokens.alias("used")
_live = refresh_tokens.alias("live")
_LAST_USE = select(func.max(_used.c.used_at)).where(_used.c.family_id == families.c.id)
_SESSIONS = (
    select(
        families.c.id,
        families.c.client_id,
        families.c.created_at,
        families.c.expires_at,
        refresh_tokens.c.used_at,
        refresh_tokens.c.used_ip,
        refresh_tokens.c.used_user_agent,
    )
    .select_from(
        families.outerjoin(
            refresh_tokens,
            and_(
                refresh_tokens.c.family_id == families.c.id,
                refresh_tokens.c.used_at == _LAST_USE.scalar_subquery(),
            ),
        )
    )
    .where(
        families.c.subject == bindparam("subject"),
        families.c.revoked_at.is_(None),
        families.c.expires_at > bindparam("now"),
        exists().where(
            _live.c.family_id == families.c.id,
            _live.c.used_at.is_(None),
            _live.c.revoked_at.is_(None),
            _live.c.expires_at > bindparam("now"),
        ),
    )
    .order_by(families.c.created_at.desc())
    .limit(bindparam("limit"))
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

    def list_sessions(self, subject: str, now: float, limit: int) -> list[SessionActivity]:
        with self._engine.connect() as conn:
            rows = conn.execute(_SESSIONS, {"subject": subject, "now": now, "limit": limit})
            # Two uses at the same instant would join twice: keep one row per session.
            found = {row[0]: SessionActivity(*row) for row in rows}
        return list(found.values())

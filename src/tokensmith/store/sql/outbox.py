"""The SQL logout outbox (``ts_logout_outbox``; :mod:`tokensmith.logout.outbox`).

Messages are written by the revocations themselves (``statements.ENQUEUE_LOGOUT``); this
module claims, finishes and reschedules them. A claim is one ``UPDATE ... RETURNING`` over
the due, unclaimed rows: on PostgreSQL the inner select takes them ``FOR UPDATE SKIP
LOCKED``, so instances claiming at the same moment get disjoint rows without waiting; SQLite
runs the statement under its single writer lock. A cheap read first keeps an idle outbox
from taking SQLite's write lock every poll.
"""

from __future__ import annotations

from sqlalchemy import Engine, and_, bindparam, delete, func, or_, select, update

from tokensmith.logout.outbox import LogoutMessage
from tokensmith.store.sql.models import logout_outbox as t

_DUE = and_(
    t.c.next_attempt_at <= bindparam("now"),
    or_(t.c.claimed_until.is_(None), t.c.claimed_until <= bindparam("now")),
)
_ANY_DUE = select(t.c.id).where(_DUE).limit(1)
_CLAIM = (
    update(t)
    .where(
        t.c.id.in_(
            select(t.c.id)
            .where(_DUE)
            .order_by(t.c.next_attempt_at)
            .limit(bindparam("n"))
            .with_for_update(skip_locked=True)
        ),
        # Re-checked on the row itself: under READ COMMITTED another claim may have won it.
        _DUE,
    )
    .values(claimed_until=bindparam("until"), claimed_by=bindparam("claimant"))
    .returning(t.c.id, t.c.client_id, t.c.subject, t.c.session_id, t.c.attempts)
)
_MINE = and_(t.c.id == bindparam("mid"), t.c.claimed_by == bindparam("claimant"))
_FORGET = delete(t).where(_MINE)
_RETRY = (
    update(t)
    .where(_MINE)
    .values(
        attempts=t.c.attempts + 1,
        next_attempt_at=bindparam("retry_at"),
        claimed_until=None,
        claimed_by=None,
    )
)
_COUNT = select(func.count()).select_from(t)


class SqlLogoutOutbox:
    """Implements :class:`tokensmith.logout.LogoutOutbox` over the store's engine."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def claim_logouts(
        self, now: float, lease: float, limit: int, claimant: str
    ) -> list[LogoutMessage]:
        with self._engine.connect() as conn:
            if conn.execute(_ANY_DUE, {"now": now}).first() is None:
                return []
        params = {"now": now, "n": limit, "until": now + lease, "claimant": claimant}
        with self._engine.begin() as conn:
            return [LogoutMessage(*row) for row in conn.execute(_CLAIM, params)]

    def logout_delivered(self, message_id: str, claimant: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(_FORGET, {"mid": message_id, "claimant": claimant})

    def logout_failed(self, message_id: str, claimant: str, retry_at: float | None) -> None:
        params = {"mid": message_id, "claimant": claimant}
        with self._engine.begin() as conn:
            if retry_at is None:
                conn.execute(_FORGET, params)
            else:
                conn.execute(_RETRY, {**params, "retry_at": retry_at})

    def pending_logouts(self) -> int:
        with self._engine.connect() as conn:
            return int(conn.execute(_COUNT).scalar_one())

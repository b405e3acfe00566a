"""How an instance hears of revocations other instances logged (:class:`ChangeSignal` of
:mod:`tokensmith.revocation.log`).

On PostgreSQL, :class:`PgListener` keeps one dedicated autocommit connection that
``LISTEN``s on the channel each revoking unit notifies at commit
(``store/sql/statements.py`` ``NOTIFY_LOG``). It is made by the store's engine and then
detached from its pool, so it connects as the store does: every host of a multi-host URL
with ``target_session_attrs`` (README "High availability"), the engine's keepalives and
timeouts. A lost connection is reopened with backoff;
until then the listener is not ``live`` and the feed polls. A reconnect wakes the feed,
which reads the log from its cursor: what was notified meanwhile is caught up, never
skipped. SQLite has no notifications: :class:`Poll` only waits.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from sqlalchemy import Engine

from tokensmith.store.sql.statements import NOTIFY_CHANNEL

logger = logging.getLogger("tokensmith.store.sql.notify")

FIRST_BACKOFF = 0.1
MAX_BACKOFF = 5.0


class Poll:
    """No pushes: waiting is sleeping (until ``close``)."""

    live = False

    def __init__(self) -> None:
        self._closed = threading.Event()

    def wait(self, timeout: float) -> None:
        self._closed.wait(timeout)

    def close(self) -> None:
        self._closed.set()


class PgListener:
    """``LISTEN`` on a connection of its own, reopened with backoff when it drops."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._conn: Any = None
        self._backoff = FIRST_BACKOFF
        self._retry_at = 0.0
        self._closed = threading.Event()
        self._lock = threading.Lock()

    @property
    def live(self) -> bool:
        return self._conn is not None

    def wait(self, timeout: float) -> None:
        if self._conn is None:
            self._reconnect(timeout)
            return
        try:
            if list(self._conn.notifies(timeout=timeout, stop_after=1)):
                # Drain whatever else arrived: one catch-up reads it all.
                list(self._conn.notifies(timeout=0))
        except Exception as exc:  # psycopg.Error: the connection is gone
            logger.warning("revocation listener lost its connection (%s)", type(exc).__name__)
            self._drop()

    def _reconnect(self, timeout: float) -> None:
        delay = self._retry_at - time.monotonic()
        if delay > 0:
            self._closed.wait(min(delay, timeout))
            return
        conn: Any = None
        try:
            # Not a URL rendered for psycopg: that keeps only the last host of a multi-host
            # URL, with its port glued on, and never connects to a failover pair.
            pooled = self._engine.raw_connection()
            pooled.detach()  # ours for good; the pool makes another in its place
            conn = pooled.dbapi_connection
            conn.autocommit = True
            conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        except Exception as exc:  # no primary (TemporarilyUnavailable) or the driver's error
            if conn is not None:
                conn.close()
            self._retry_at = time.monotonic() + self._backoff
            self._backoff = min(MAX_BACKOFF, self._backoff * 2)
            logger.warning("revocation listener cannot connect (%s)", type(exc).__name__)
            return
        with self._lock:
            if self._closed.is_set():
                # Closed while connecting: nobody else would ever close this connection.
                conn.close()
                return
            self._conn = conn
        self._backoff = FIRST_BACKOFF
        # Returning wakes the feed, which catches up with what was logged meanwhile.

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self._retry_at = time.monotonic() + self._backoff
        if conn is not None:
            try:
                conn.close()
            except Exception:  # already broken
                logger.debug("closing the broken listener connection failed", exc_info=True)

    def close(self) -> None:
        with self._lock:
            self._closed.set()
            self._drop()

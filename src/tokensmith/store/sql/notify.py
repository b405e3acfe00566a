"""How an instance hears of revocations other instances logged (:class:`ChangeSignal` of
:mod:`tokensmith.revocation.log`).

On PostgreSQL, :class:`PgListener` keeps one dedicated autocommit connection that
``LISTEN``s on the channel each revoking unit notifies at commit
(``store/sql/statements.py`` ``NOTIFY_LOG``). A lost connection is reopened with backoff;
until then the listener is not ``live`` and the feed polls. A reconnect wakes the feed,
which reads the log from its cursor: what was notified meanwhile is caught up, never
skipped. SQLite has no notifications: :class:`Poll` only waits.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from sqlalchemy.engine import URL

from tokensmith.store.sql.statements import NOTIFY_CHANNEL

logger = logging.getLogger("tokensmith.store.sql.notify")

FIRST_BACKOFF = 0.1
MAX_BACKOFF = 5.0
CONNECT_TIMEOUT = 5


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

    def __init__(self, url: URL) -> None:
        # psycopg's own connection string: the SQLAlchemy driver name means nothing to it.
        self._conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
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
        import psycopg

        conn = None
        try:
            conn = psycopg.connect(self._conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
            conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        except psycopg.Error as exc:
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

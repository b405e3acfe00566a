"""The feed: a thread that keeps an instance's :class:`RevocationCache` current with the
revocation log, so a revocation made by another instance is enforced here within a second
(docs/contract.md "Revocation list"). ``tokensmith serve`` runs one
(``Tokensmith.follow_revocations``); without it, checks read the log themselves every
``revocation_poll_interval``.

It waits on the store's :class:`ChangeSignal` (PostgreSQL ``LISTEN/NOTIFY``) and reads the
log from its cursor whenever the signal fires, reconnects, or ``interval`` passes without
one (polling: SQLite, and PostgreSQL while the listening connection is down). While pushes
arrive it still reads every ``fallback`` seconds. Reading from the cursor makes a missed
notification cost delay, never an entry.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref

from tokensmith.revocation.cache import RevocationCache
from tokensmith.revocation.log import ChangeSignal

logger = logging.getLogger("tokensmith.revocation.feed")

# After a failed read, wait this much longer each time, up to the cap (a database that is
# down is not asked four times a second by every instance).
MAX_BACKOFF = 5.0


class RevocationFeed:
    def __init__(
        self,
        cache: RevocationCache,
        signal: ChangeSignal,
        *,
        interval: float,
        fallback: float,
    ) -> None:
        # A weak reference: the thread ends once the cache (its facade) is gone.
        self._cache = weakref.ref(cache)
        self._signal = signal
        self._interval = interval
        self._fallback = max(fallback, interval)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pid: int | None = None

    @property
    def running(self) -> bool:
        """True while the thread runs in this process (a forked worker inherits the object,
        never the thread)."""
        return self._pid == os.getpid() and not self._stop.is_set()

    def start(self) -> None:
        with self._lock:
            if self._pid != os.getpid():
                self._stop.clear()
                self._pid = os.getpid()
                thread = threading.Thread(target=self._run, name="tokensmith-revocations")
                thread.daemon = True
                thread.start()

    def stop(self) -> None:
        """Let the thread end (within one wait; it closes the signal itself)."""
        with self._lock:
            self._stop.set()
            self._pid = None

    def _run(self) -> None:
        delay = self._interval
        try:
            while not self._stop.is_set():
                self._signal.wait(self._fallback if self._signal.live else delay)
                cache = self._cache()
                if cache is None or self._stop.is_set():
                    return
                try:
                    cache.catch_up()
                    delay = self._interval
                except Exception as exc:  # the database may be down: keep trying
                    delay = min(MAX_BACKOFF, delay * 2)
                    logger.warning("revocation log read failed (%s); retrying", type(exc).__name__)
                del cache
        finally:
            self._signal.close()

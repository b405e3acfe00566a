"""Scheduled upkeep inside a running service: key rotation on schedule, cleanup, and the
delivery of back-channel logouts (a thread of its own: it polls every
``backchannel_poll_interval``, and a slow receiver must not delay key rotation).

Safe with many instances: ``KeyManager.tick()`` decides under the key store's lock, so
only the first instance to see a rotation due performs it and the others find it done;
cleanup deletes in small batches (PostgreSQL skips rows another instance has locked).
A failing run is logged and retried at the next interval; it never stops the service.
"""

from __future__ import annotations

import logging
import random
import threading
from typing import TYPE_CHECKING

from tokensmith.logout.outbox import LOGOUT_BATCH

if TYPE_CHECKING:
    from tokensmith.facade import Tokensmith

logger = logging.getLogger("tokensmith.maintenance")


class Maintenance:
    def __init__(
        self,
        ts: Tokensmith,
        *,
        key_interval: float = 60.0,
        cleanup_interval: float = 300.0,
        jitter: float = 0.1,
    ) -> None:
        self._ts = ts
        self._key_interval = key_interval
        self._cleanup_interval = cleanup_interval
        self._jitter = jitter
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def run_once(self, *, cleanup: bool = True) -> None:
        """One round: the key schedule, then (optionally) a cleanup. Errors are logged."""
        try:
            if self._ts.keys.tick():
                logger.info("scheduled key rotation done")
        except Exception:
            logger.exception("scheduled key rotation failed; will retry")
        if cleanup:
            try:
                removed = self._ts.cleanup()
                if removed:
                    logger.info("cleanup removed %d expired row(s)", removed)
            except Exception:
                logger.exception("cleanup failed; will retry")

    def start(self) -> None:
        if self._threads:
            return
        self._stop.clear()
        for target, name in ((self._loop, "maintenance"), (self._logout_loop, "logout")):
            thread = threading.Thread(target=target, name=f"tokensmith-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []

    def deliver_logouts(self) -> int:
        """One round of back-channel logout delivery; how many were handled. Errors (the
        database away) are logged and the next round tries again."""
        try:
            report = self._ts.deliver_logouts()
        except Exception:
            logger.exception("back-channel logout delivery failed; will retry")
            return 0
        return report.delivered + report.retried + report.dropped

    def _logout_loop(self) -> None:
        interval = self._ts.settings.backchannel_poll_interval
        while not self._stop.is_set():
            # A full batch means more may be due: go on at once.
            if self.deliver_logouts() < LOGOUT_BATCH:
                self._stop.wait(interval * (1 + random.uniform(-self._jitter, self._jitter)))

    def _loop(self) -> None:
        since_cleanup = self._cleanup_interval  # clean up on the first round
        while not self._stop.is_set():
            do_cleanup = since_cleanup >= self._cleanup_interval
            self.run_once(cleanup=do_cleanup)
            since_cleanup = 0.0 if do_cleanup else since_cleanup + self._key_interval
            # Jitter spreads many instances' rounds apart instead of firing in lockstep.
            wait = self._key_interval * (1 + random.uniform(-self._jitter, self._jitter))
            self._stop.wait(wait)

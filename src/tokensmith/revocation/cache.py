"""In-process cache of the revocation list (docs/contract.md "Revocation list", ``check_revoked``).

Verification must stay fast, so the list is loaded at most every ``ttl`` seconds. A
revocation made through this process is applied to the cache at once: a reload that
started before that revocation committed could miss it, so such local entries are
re-applied on top of every reload that began earlier (tracked by a sequence number).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from tokensmith.clock import Clock
from tokensmith.store.protocols import RevocationSource
from tokensmith.store.records import RevocationSnapshot

logger = logging.getLogger("tokensmith.revocation")


@dataclass(frozen=True, slots=True)
class _Local:
    seq: int
    kind: str  # "jti" | "family" | "subject"
    key: str
    value: float


class RevocationCache:
    def __init__(self, source: RevocationSource, *, clock: Clock, ttl: float, horizon: float):
        self._source = source
        self._clock = clock
        self._ttl = ttl
        # Families and not-before times older than the longest token lifetime cannot
        # concern a live access token, so they need not be loaded.
        self._horizon = horizon
        self._lock = threading.Lock()
        self._reload_lock = threading.Lock()
        self._seq = 0
        self._recent: list[_Local] = []
        self._denied: set[str] = set()
        self._families: set[str] = set()
        self._not_before: dict[str, float] = {}
        self._loaded_at: float | None = None

    def is_revoked(
        self, *, jti: str, subject: str, issued_at: float, family_id: str | None
    ) -> bool:
        """True when the jti is denied, its family revoked, or it was issued before the
        subject's not-before time (``revoke_subject``, logout everywhere)."""
        now = self._clock.now()
        loaded_at = self._loaded_at
        if loaded_at is None or now - loaded_at >= self._ttl or now < loaded_at:
            self.reload(now)
        with self._lock:
            if jti in self._denied:
                return True
            if family_id is not None and family_id in self._families:
                return True
            not_before = self._not_before.get(subject)
        return not_before is not None and issued_at < not_before

    def reload(self, now: float | None = None) -> None:
        when = self._clock.now() if now is None else now
        # One reload at a time; other threads keep answering from the previous snapshot.
        if not self._reload_lock.acquire(blocking=self._loaded_at is None):
            return
        try:
            with self._lock:
                start_seq = self._seq
            try:
                snapshot = self._source.load_revocations(when, self._horizon)
            except Exception:
                if self._loaded_at is None:
                    raise  # nothing to answer from: fail closed
                # Keep answering from the last good list (plus local revocations) and try
                # again after another ttl instead of hammering a struggling database.
                logger.exception("revocation list reload failed; using the previous one")
                self._loaded_at = when
                return
            self._install(snapshot, start_seq, when)
        finally:
            self._reload_lock.release()

    def _install(self, snapshot: RevocationSnapshot, start_seq: int, when: float) -> None:
        with self._lock:
            self._denied = set(snapshot.denied_jtis)
            self._families = set(snapshot.revoked_families)
            self._not_before = dict(snapshot.subject_not_before)
            self._recent = [entry for entry in self._recent if entry.seq > start_seq]
            for entry in self._recent:
                self._apply(entry)
            self._loaded_at = when

    def _apply(self, entry: _Local) -> None:
        if entry.kind == "jti":
            self._denied.add(entry.key)
        elif entry.kind == "family":
            self._families.add(entry.key)
        else:
            self._not_before[entry.key] = max(self._not_before.get(entry.key, 0.0), entry.value)

    def _add(self, kind: str, key: str, value: float = 0.0) -> None:
        with self._lock:
            self._seq += 1
            entry = _Local(self._seq, kind, key, value)
            self._recent.append(entry)
            self._apply(entry)

    def deny_jti(self, jti: str) -> None:
        """Record a revocation this process has just committed."""
        self._add("jti", jti)

    def revoke_family(self, family_id: str) -> None:
        self._add("family", family_id)

    def set_not_before(self, subject: str, not_before: float) -> None:
        self._add("subject", subject, not_before)

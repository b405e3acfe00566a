"""In-process cache of the revocation list (docs/contract.md "Revocation list", ``check_revoked``).

Verification must stay fast, so it reads only memory. Two inputs keep that memory current:

- the revocation log (:mod:`tokensmith.revocation.log`), read from a cursor by
  :meth:`RevocationCache.catch_up`: after every revocation this process makes, by the feed
  (:mod:`tokensmith.revocation.feed`) as soon as another instance wrote one, and without a
  feed by the check itself once ``poll_interval`` has passed since the last read;
- a full reload at most every ``ttl`` seconds, which drops entries that expired and is the
  whole source for a store that keeps no log.

A revocation applied meanwhile (from the log or made here) could be missing from a reload
that started before it committed, so such entries are re-applied on top of every reload
that began earlier (tracked by a sequence number).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from tokensmith.clock import Clock
from tokensmith.revocation.log import (
    CLIENT_DISABLED,
    CLIENT_ENABLED,
    FAMILY,
    JTI,
    SUBJECT,
    LogEntry,
    log_of,
)
from tokensmith.store.protocols import RevocationSource
from tokensmith.store.records import RevocationSnapshot

logger = logging.getLogger("tokensmith.revocation")

# Entries read from the log per query, and queries per catch-up: a backlog larger than
# that is read by the next catch-up, which follows at once when the feed sees one.
PAGE = 1000
MAX_PAGES = 100


@dataclass(frozen=True, slots=True)
class _Local:
    seq: int
    kind: str
    key: str
    value: float


class RevocationCache:
    def __init__(
        self,
        source: RevocationSource,
        *,
        clock: Clock,
        ttl: float,
        horizon: float,
        poll_interval: float,
        on_entry: Callable[[LogEntry], None] | None = None,
    ):
        """``on_entry`` hears of every log entry applied (the facade forgets a cached
        client, or re-reads the keys, when another instance changed them)."""
        self._source = source
        self._log = log_of(source)
        self._clock = clock
        self._ttl = ttl
        # Families and not-before times older than the longest token lifetime cannot
        # concern a live access token, so they need not be loaded.
        self._horizon = horizon
        self._on_entry = on_entry
        self._poll_interval = poll_interval
        self._read_at = float("-inf")  # time.monotonic() of the last log read
        self._lock = threading.Lock()
        self._reload_lock = threading.Lock()
        self._catch_up_lock = threading.Lock()
        self._seq = 0
        self._recent: list[_Local] = []
        self._denied: set[str] = set()
        self._families: set[str] = set()
        self._not_before: dict[str, float] = {}
        # Disabled clients and when: known from the log only (the snapshot has none).
        self._disabled: dict[str, float] = {}
        self._loaded_at: float | None = None
        self._cursor: int | None = None

    @property
    def cursor(self) -> int:
        """The id of the last log entry applied (0 before any)."""
        return self._cursor or 0

    @property
    def follows_log(self) -> bool:
        return self._log is not None

    def is_revoked(
        self,
        *,
        jti: str,
        subject: str,
        issued_at: float,
        family_id: str | None,
        client_id: str | None = None,
        poll: bool = True,
    ) -> bool:
        """True when the jti is denied, its family revoked, its client disabled, or it was
        issued before the subject's not-before time (``revoke_subject``, logout
        everywhere). ``poll=False``: a feed keeps the log read, so this never queries it."""
        now = self._clock.now()
        loaded_at = self._loaded_at
        if loaded_at is None or now - loaded_at >= self._ttl or now < loaded_at:
            self.reload(now)
        if self._cursor is None or poll:
            self.poll()  # the first answer waits for the log (disabled clients)
        with self._lock:
            if jti in self._denied:
                return True
            if family_id is not None and family_id in self._families:
                return True
            if client_id is not None and client_id in self._disabled:
                return True
            not_before = self._not_before.get(subject)
        return not_before is not None and issued_at < not_before

    def client_disabled(self, client_id: str) -> bool:
        """Whether the log, read up to now, says ``client_id`` is disabled or deleted."""
        self.catch_up()
        with self._lock:
            return client_id in self._disabled

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
                # Keep answering from the last good list (plus later revocations) and try
                # again after another ttl instead of hammering a struggling database.
                logger.exception("revocation list reload failed; using the previous one")
                self._loaded_at = when
                return
            self._install(snapshot, start_seq, when)
        finally:
            self._reload_lock.release()

    def poll(self) -> None:
        """Read the log if it was never read or ``poll_interval`` has passed since."""
        if self._log is not None and (
            self._cursor is None or time.monotonic() - self._read_at >= self._poll_interval
        ):
            self.catch_up()

    def catch_up(self) -> int:
        """Apply the log entries after the cursor; how many. One catch-up at a time (a
        caller finding one under way returns 0: that one reads what is there)."""
        if self._log is None or not self._catch_up_lock.acquire(blocking=self._cursor is None):
            return 0
        self._read_at = time.monotonic()  # another thread's check need not read as well
        try:
            applied = 0
            for _ in range(MAX_PAGES):
                entries = self._log.revocations_since(self.cursor, PAGE)
                for entry in entries:
                    self._apply_entry(entry)
                applied += len(entries)
                if len(entries) < PAGE:
                    break
            if self._cursor is None:
                self._cursor = 0
            self._read_at = time.monotonic()
            return applied
        finally:
            self._catch_up_lock.release()

    def _apply_entry(self, entry: LogEntry) -> None:
        if entry.kind == JTI:
            self._add("jti", entry.key)
        elif entry.kind == FAMILY:
            self._add("family", entry.key)
        elif entry.kind == SUBJECT:
            self._add("subject", entry.key, entry.at)
        elif entry.kind in (CLIENT_DISABLED, CLIENT_ENABLED):
            with self._lock:
                if entry.kind == CLIENT_DISABLED:
                    self._disabled[entry.key] = entry.at
                else:
                    self._disabled.pop(entry.key, None)
        self._cursor = entry.id
        if self._on_entry is not None:
            self._on_entry(entry)

    def _install(self, snapshot: RevocationSnapshot, start_seq: int, when: float) -> None:
        with self._lock:
            self._denied = set(snapshot.denied_jtis)
            self._families = set(snapshot.revoked_families)
            self._not_before = dict(snapshot.subject_not_before)
            # A client disabled longer than the horizon ago has no token left that verifies.
            since = when - self._horizon
            self._disabled = {c: at for c, at in self._disabled.items() if at > since}
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

"""When did this instance's winning rotations become durable? (docs/contract.md "Refresh store
semantics": a presentation sent before the winner's rotation was durable is a concurrent
loser; SECURITY B3.)

The rotation stamps the token used inside its transaction, before the commit; the commit
(an fsync, a group-commit batch, a PostgreSQL round trip) ends later. A second tab whose
request arrived in between reads the used token once the commit is done and, judged against
the stamp alone, looked like a replay: the family was revoked and the user logged out. The
moment the commit was done is only known after it, in the process that made it, so each
instance keeps it here for the few seconds a request can be in flight. A rotation made by
another instance is not here; the caller then falls back to the winner's stamp.
"""

from __future__ import annotations

import math
import threading
from collections import deque

# How long a durable rotation is remembered. A request still unanswered this long after the
# rotation it lost to is judged against the winner's stamp instead.
RETENTION = 10.0
# A bound on memory under any load (about 100 bytes an entry).
MAX_ENTRIES = 200_000


class RecentRotations:
    """Rotations this instance won, keyed by the consumed token's hash: in flight (the
    compare-and-set won, the commit not yet done) or durable since a known time."""

    def __init__(self) -> None:
        # token hash -> (the attempt that won it, when it became durable: inf in flight)
        self._entries: dict[bytes, tuple[bytes, float]] = {}
        self._expiry: deque[tuple[float, bytes, bytes]] = deque()
        self._lock = threading.Lock()

    def won(self, token_hash: bytes, attempt: bytes, now: float) -> None:
        """``attempt`` consumed ``token_hash``; its commit is in flight."""
        with self._lock:
            self._entries[token_hash] = (attempt, math.inf)
            self._expiry.append((now + RETENTION, token_hash, attempt))
            self._evict(now)

    def durable(self, token_hash: bytes, attempt: bytes, at: float) -> None:
        """``attempt``'s rotation of ``token_hash`` is durable since ``at``."""
        with self._lock:
            if self._entries.get(token_hash, (None,))[0] == attempt:
                self._entries[token_hash] = (attempt, at)
                self._expiry.append((at + RETENTION, token_hash, attempt))

    def answered(self, token_hash: bytes, at: float) -> None:
        """The rotation of ``token_hash`` was answered at ``at``, after it became durable: a
        presentation made before then cannot have seen its answer."""
        with self._lock:
            entry = self._entries.get(token_hash)
            if entry is not None and entry[1] < at:
                self._entries[token_hash] = (entry[0], at)
                self._expiry.append((at + RETENTION, token_hash, entry[0]))

    def failed(self, token_hash: bytes, attempt: bytes) -> None:
        """``attempt`` rolled back: ``token_hash`` was not consumed by it after all."""
        with self._lock:
            if self._entries.get(token_hash, (None,))[0] == attempt:
                del self._entries[token_hash]

    def sent_before_durable(self, token_hash: bytes, sent_at: float) -> bool:
        """True if a request sent at ``sent_at`` was sent before this instance's rotation of
        ``token_hash`` was durable (or answered); False if after, or if none is known."""
        entry = self._entries.get(token_hash)
        return entry is not None and sent_at < entry[1]

    def _evict(self, now: float) -> None:
        while self._expiry and (self._expiry[0][0] <= now or len(self._expiry) > 2 * MAX_ENTRIES):
            _, token_hash, attempt = self._expiry.popleft()
            entry = self._entries.get(token_hash)
            if entry is None or entry[0] != attempt:
                continue
            # A durable entry is kept RETENTION past its commit (``durable`` queued that
            # later expiry); one still in flight this long is dropped: a commit that slow is
            # judged against the stamp.
            if not (math.isfinite(entry[1]) and now < entry[1] + RETENTION):
                del self._entries[token_hash]
        while len(self._entries) > MAX_ENTRIES:
            del self._entries[next(iter(self._entries))]

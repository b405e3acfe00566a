"""The ``jti`` replay check of RFC 9449 §11.1: a proof is accepted once inside the window
its ``iat`` allows. ``ReplayCache`` remembers in this process; ``ProofLedger`` is the same
question asked of a shared store (the refresh store's ``remember_proof``), so instances
sharing a database refuse a proof replayed at another one."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Hashable
from typing import TYPE_CHECKING, Protocol

from tokensmith.errors import InvalidDPoPProof

if TYPE_CHECKING:
    from tokensmith.dpop.proof import Proof

# Keys remembered per generation; past it, new proofs are refused (fail closed) until the
# generation turns over, rather than forgetting proofs that could still be replayed.
MAX_ENTRIES = 262_144


def replay_key(jkt: str, jti: str) -> bytes:
    """What is remembered of a proof: its ``jti`` scoped to its key, so nobody can use up
    another client's ``jti`` values."""
    return hashlib.sha256(f"{jkt}.{jti}".encode()).digest()


class ProofLedger(Protocol):
    def remember_proof(self, key: bytes, expires_at: float) -> bool:
        """Record ``key`` with the end of its window; false if that pair is recorded."""
        ...


def remember_proof(ledger: ProofLedger, proof: Proof) -> None:
    """Record ``proof`` in ``ledger`` (a store transaction); ``InvalidDPoPProof`` if an
    instance sharing it accepted the proof before. A replay is the same proof, so it has
    the same key and the same ``replay_until`` (instances sharing a store share
    ``dpop_iat_window``, as they share every setting that decides what a token is worth)."""
    if not ledger.remember_proof(proof.replay_key, proof.replay_until):
        raise InvalidDPoPProof("DPoP proof replayed")


class ReplayCache:
    """In-process ``jti`` memory in two generations of ``retention`` seconds each: an entry
    lives at least ``retention`` seconds, and both the check and the expiry are O(1)."""

    def __init__(self, retention: float, *, max_entries: int = MAX_ENTRIES) -> None:
        self._retention = retention
        self._max = max_entries
        self._current: dict[Hashable, float] = {}
        self._previous: dict[Hashable, float] = {}
        self._turn_at: float | None = None
        self._lock = threading.Lock()

    def remember(self, key: Hashable, now: float) -> None:
        """Record ``key``; ``InvalidDPoPProof`` if it was seen within its retention."""
        with self._lock:
            self._remember(key, now)

    def _remember(self, key: Hashable, now: float) -> None:
        if self._turn_at is None:
            self._turn_at = now + self._retention
        elif now >= self._turn_at:
            stale = now >= self._turn_at + self._retention
            self._previous = {} if stale else self._current
            self._current = {}
            self._turn_at = now + self._retention
        if key in self._current or key in self._previous:
            raise InvalidDPoPProof("DPoP proof replayed")
        if len(self._current) >= self._max:
            raise InvalidDPoPProof("too many DPoP proofs at once; retry later")
        self._current[key] = now

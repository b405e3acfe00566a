"""The ``jti`` replay check of RFC 9449 §11.1: a proof is accepted once inside the window
its ``iat`` allows. ``ReplayCache`` remembers in this process; ``ProofLedger`` is the same
question asked of a shared store (the refresh store's ``remember_proof``), so instances
sharing a database refuse a proof replayed at another one."""

from __future__ import annotations

import hashlib
import threading
from typing import TYPE_CHECKING, Protocol

from tokensmith.errors import InvalidDPoPProof

if TYPE_CHECKING:
    from tokensmith.dpop.proof import Proof

# Proofs remembered per generation; past it, new proofs are refused (fail closed) until
# the generation turns over, rather than forgetting proofs that could still be replayed...
MAX_ENTRIES = 262_144
# ...except those of a key that holds fewer than this many: while one key (or a few) floods
# the cache, everybody else's proofs still get in, up to MAX_ENTRIES more.
LIGHT_KEY = 64


def replay_key(jkt: str, jti: str) -> bytes:
    """What is remembered of a proof: its ``jti`` scoped to its key, so nobody can use up
    another client's ``jti`` values."""
    # surrogatepass: JSON may carry a lone surrogate (\ud800), which is text all the same.
    return hashlib.sha256(f"{jkt}.{jti}".encode("utf-8", "surrogatepass")).digest()


class ProofLedger(Protocol):
    def remember_proof(self, key: bytes, iat: float) -> bool:
        """Record the proof ``key`` issued at ``iat``; false if that pair is recorded."""
        ...


def remember_proof(ledger: ProofLedger, proof: Proof) -> None:
    """Record ``proof`` in ``ledger`` (a store transaction); ``InvalidDPoPProof`` if an
    instance sharing it accepted the proof before. A replay is the same proof, so it has
    the same key and the same ``iat``, whatever window each instance allows."""
    if not ledger.remember_proof(proof.replay_key, proof.iat):
        raise InvalidDPoPProof("DPoP proof replayed")


class ReplayCache:
    """In-process ``jti`` memory in two generations of ``retention`` seconds each: an entry
    lives at least ``retention`` seconds, and both the check and the expiry are O(1).

    Full, it refuses new proofs rather than forget ones that could still be replayed, but
    only those of keys that hold ``light_key`` entries or more of the generation: a flood
    by a few keys does not lock out everybody else. Callers let in only proofs by the key
    of a token that verified (:func:`tokensmith.http.resource_dpop.check_binding`), so
    using up the extra room takes ``max_entries / light_key`` keys with a token each."""

    def __init__(
        self, retention: float, *, max_entries: int = MAX_ENTRIES, light_key: int = LIGHT_KEY
    ) -> None:
        self._retention = retention
        self._max = max_entries
        self._light = light_key
        # Keyed by hash((jkt, jti)): a small int, whatever the jti's length. It is SipHash
        # under this process's random key (PYTHONHASHSEED unset), so nobody can aim a
        # collision, and a chance one refuses a proof once in 2**64 / len(self).
        self._current: dict[int, float] = {}
        self._previous: dict[int, float] = {}
        self._counts: dict[str, int] = {}  # the current generation's entries per key
        self._turn_at: float | None = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """Entries remembered (both generations)."""
        return len(self._current) + len(self._previous)

    def remember(self, jkt: str, jti: str, now: float) -> None:
        """Record the proof ``jti`` of key ``jkt``; ``InvalidDPoPProof`` if it was seen
        within its retention, or if there is no room for it."""
        key = hash((jkt, jti))
        with self._lock:
            self._remember(jkt, key, now)

    def _remember(self, jkt: str, key: int, now: float) -> None:
        if self._turn_at is None:
            self._turn_at = now + self._retention
        elif now >= self._turn_at:
            stale = now >= self._turn_at + self._retention
            self._previous = {} if stale else self._current
            self._current = {}
            self._counts = {}
            self._turn_at = now + self._retention
        if key in self._current or key in self._previous:
            raise InvalidDPoPProof("DPoP proof replayed")
        held = self._counts.get(jkt, 0)
        size = len(self._current)
        if size >= self._max and (held >= self._light or size >= 2 * self._max):
            raise InvalidDPoPProof("too many DPoP proofs at once; retry later")
        self._counts[jkt] = held + 1
        self._current[key] = now

"""The signing-key lifecycle (docs/contract.md "Keys").

pending (published, not signing) → active (signs; one per algorithm) → retired (published
until every token it signed has expired, plus clock skew and the JWKS cache time) → removed.

``rotate()`` is the operator's explicit step: the pending key becomes active at once. The
scheduled ``tick()`` only promotes a key that has been published for at least the JWKS
max-age, so a verifier never meets a ``kid`` it could not have fetched.

When ``signing_alg`` changes, the old algorithm's active key keeps signing until a key of the
new one may (the next ``rotate()``, or the first ``tick()`` after its pending key has been
published for the JWKS max-age); then it retires like any other (SECURITY B6).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from tokensmith.clock import Clock
from tokensmith.errors import KeyStoreError
from tokensmith.events import EventBus
from tokensmith.keys.algorithms import AlgorithmSpec, PublicKey, spec_for
from tokensmith.keys.jwk import public_jwk
from tokensmith.keys.records import KeyRecord
from tokensmith.keys.signer import Signer
from tokensmith.keys.store import KeyStore
from tokensmith.settings import Settings

# Another process may have rotated: look at the store's version at most this often.
_RELOAD_INTERVAL = 1.0


@dataclass(frozen=True)
class VerificationKey:
    """A public key bound to exactly one algorithm (RFC 8725 §3.1)."""

    kid: str
    alg: str
    public_key: PublicKey
    spec: AlgorithmSpec


@dataclass(frozen=True)
class JwksDocument:
    """The published JWK Set, serialised once per key snapshot, with its ETag."""

    body: dict[str, list[dict[str, str]]]
    payload: bytes
    etag: str


@dataclass(frozen=True)
class _Snapshot:
    records: tuple[KeyRecord, ...]
    version: object
    verification: dict[str, VerificationKey]
    signer: Signer | None
    jwks: JwksDocument


class KeyManager:
    def __init__(self, store: KeyStore, settings: Settings, clock: Clock, events: EventBus) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.events = events
        self.alg = settings.signing_alg
        self._lock = threading.Lock()
        # One signer per published key, from the store: the public key of each is what
        # verification and the JWKS use, so no private key is ever needed here.
        self._signers: dict[str, Signer] = {}
        self._snapshot = _Snapshot((), object(), {}, None, _document([]))
        self._checked_at = float("-inf")

    # -- reading --------------------------------------------------------------------------
    def records(self) -> tuple[KeyRecord, ...]:
        return self._current().records

    def signer(self) -> Signer:
        signer = self._current().signer
        if signer is None:
            raise KeyStoreError(f"no active {self.alg} signing key: run `tokensmith keys generate`")
        return signer

    def verification_key(self, kid: str) -> VerificationKey | None:
        """The published key named ``kid``; a miss re-reads the store once (rate-limited)."""
        key = self._current().verification.get(kid)
        if key is None and self._reload(force=False, min_interval=_RELOAD_INTERVAL / 4):
            key = self._snapshot.verification.get(kid)
        return key

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """Every pending, active and retired key's public JWK; never a private member."""
        return self.jwks_document().body

    def jwks_document(self) -> JwksDocument:
        """The JWK Set ready to serve (bytes and ETag), rebuilt only when the keys change."""
        return self._current().jwks

    def cached_jwks_document(self) -> JwksDocument | None:
        """The document without touching the store, or ``None`` when a look at the store
        is due: lets an event loop serve the JWKS without blocking on file or database I/O."""
        if time.monotonic() - self._checked_at < _RELOAD_INTERVAL:
            return self._snapshot.jwks
        return None

    def jwks_max_age(self) -> int:
        """Seconds a verifier may cache the JWKS: the configured max-age, never past the next
        scheduled state change (docs/contract.md "Keys": derived from the schedule). Uses the keys
        as last
        loaded, never the store."""
        limit = float(self.settings.jwks_max_age)
        due = self._rotation_due_at(self._snapshot.records)
        if due is not None:
            limit = min(limit, max(0.0, due - self.clock.now()))
        return int(limit)

    # -- changing -------------------------------------------------------------------------
    def ensure_active(self) -> None:
        """Make sure an active and a pending key exist (``setup()``, first start)."""

        def mutate(records: list[KeyRecord]) -> list[KeyRecord]:
            now = self.clock.now()
            if self._signing_record(records) is None:
                # No verifier can hold a cached JWKS that lacks a key we never had: a first
                # key (or one after every key was revoked) may sign at once. After a change
                # of algorithm the old key signs on until the new pending one has waited.
                pending = self._find(records, "pending")
                if pending:
                    records = self._replace(records, pending, pending.activate(now))
                else:
                    records.append(self._new_key(now).activate(now))
            if not self._find(records, "pending"):
                records.append(self._new_key(now))
            return records

        self._mutate(mutate)

    def rotate(self) -> KeyRecord:
        """Operator's rotation: pending → active now, old active → retired, new pending."""
        result: list[KeyRecord] = []

        def mutate(records: list[KeyRecord]) -> list[KeyRecord]:
            records = self._promote(records, self.clock.now())
            result[:] = [r for r in records if r.state == "active" and r.alg == self.alg]
            return records

        self._mutate(mutate)
        active = result[0]
        self.events.emit("key_rotated", self.clock.now(), kid=active.kid, alg=active.alg)
        return active

    def tick(self) -> bool:
        """The service's schedule: drop expired retired keys; rotate when due and the pending
        key has been published for at least the JWKS max-age. Returns True if it rotated."""
        rotated: list[KeyRecord] = []

        def mutate(records: list[KeyRecord]) -> list[KeyRecord]:
            now = self.clock.now()
            records = [r for r in records if not self._expired(r, now)]
            if not self._find(records, "pending"):
                records.append(self._new_key(now))
            due = self._rotation_due_at(records)
            if due is not None and due <= now:
                records = self._promote(records, now)
                rotated.extend(r for r in records if r.state == "active" and r.alg == self.alg)
            return records

        self._mutate(mutate)
        for record in rotated:
            self.events.emit("key_rotated", self.clock.now(), kid=record.kid, alg=record.alg)
        return bool(rotated)

    def revoke(self, kid: str) -> KeyRecord:
        """Emergency: stop publishing ``kid`` at once; if it was signing, the next key signs."""
        removed: list[KeyRecord] = []

        def mutate(records: list[KeyRecord]) -> list[KeyRecord]:
            removed[:] = [r for r in records if r.kid == kid]
            if not removed:
                raise KeyStoreError(f"no key with kid {kid!r}")
            records = [r for r in records if r.kid != kid]
            if removed[0].state == "active" and self._signing_record(records) is None:
                records = self._promote(records, self.clock.now())
            return records

        self._mutate(mutate)
        return removed[0]

    # -- internals ------------------------------------------------------------------------
    def _new_key(self, now: float) -> KeyRecord:
        signer = self.store.create_key(self.alg)
        self._signers[signer.kid] = signer
        return KeyRecord(kid=signer.kid, alg=self.alg, state="pending", created_at=now)

    def _promote(self, records: list[KeyRecord], now: float) -> list[KeyRecord]:
        """The configured algorithm's pending key signs; every active key retires, that of
        an algorithm no longer configured included; another algorithm's pending key, which
        never signed, goes."""
        out: list[KeyRecord] = []
        pending = self._find(records, "pending")
        for r in records:
            if r.state == "active":
                out.append(r.retire(now))
            elif pending is not None and r is pending:
                out.append(r.activate(now))
            elif r.state != "pending" or r.alg == self.alg:
                out.append(r)
        if pending is None:
            out.append(self._new_key(now).activate(now))
        out.append(self._new_key(now))
        return out

    def _rotation_due_at(self, records: list[KeyRecord] | tuple[KeyRecord, ...]) -> float | None:
        active = self._signing_record(records)
        pending = self._find(records, "pending")
        if active is None or pending is None or active.activated_at is None:
            return None
        published = pending.created_at + self.settings.jwks_max_age
        if active.alg != self.alg:
            return published  # the algorithm changed: rotate as soon as the new key may sign
        return max(active.activated_at + self.settings.key_rotation_period, published)

    def _signing_record(self, records: list[KeyRecord] | tuple[KeyRecord, ...]) -> KeyRecord | None:
        """The configured algorithm's active key; after a change of algorithm, until a key
        of the new one may sign, the newest active key of another."""
        active = [r for r in records if r.state == "active"]
        return max(active, key=lambda r: (r.alg == self.alg, r.activated_at or 0.0), default=None)

    def _expired(self, record: KeyRecord, now: float) -> bool:
        if record.state != "retired" or record.retired_at is None:
            return False
        keep = self.settings.longest_token_ttl + self.settings.leeway + self.settings.jwks_max_age
        return record.retired_at + keep <= now

    def _find(
        self, records: list[KeyRecord] | tuple[KeyRecord, ...], state: str
    ) -> KeyRecord | None:
        for r in records:
            if r.alg == self.alg and r.state == state:
                return r
        return None

    @staticmethod
    def _replace(records: list[KeyRecord], old: KeyRecord, new: KeyRecord) -> list[KeyRecord]:
        return [new if r is old else r for r in records]

    def _mutate(self, mutate: Callable[[list[KeyRecord]], list[KeyRecord]]) -> None:
        before, _ = self.store.read()
        after = self.store.update(mutate)
        # A key that left the records is no longer published: its private half goes too.
        for gone in {r.kid for r in before} - {r.kid for r in after}:
            self.store.delete_key(gone)
            self._signers.pop(gone, None)
        self._reload(force=True)

    def _current(self) -> _Snapshot:
        # Every signature and verification comes through here: the common case (checked
        # within the interval) is one clock read, without a call into _reload.
        if time.monotonic() - self._checked_at < _RELOAD_INTERVAL:
            return self._snapshot
        self._reload(force=False, min_interval=_RELOAD_INTERVAL)
        return self._snapshot

    def _reload(self, *, force: bool, min_interval: float = 0.0) -> bool:
        """Re-read the store if it changed; True if the snapshot was replaced."""
        if not force and time.monotonic() - self._checked_at < min_interval:
            return False
        with self._lock:
            # Another thread may have loaded while we waited for the lock.
            if not force and time.monotonic() - self._checked_at < min_interval:
                return False
            version = self.store.version()
            changed = force or version != self._snapshot.version
            if changed:
                records, version = self.store.read()
                self._snapshot = self._build(records, version)
            # Stamped only once the snapshot is current: a thread that sees a fresh stamp
            # on the fast path must never be handed a snapshot still being loaded (a new
            # worker's first requests arrive together and would see no signing key).
            self._checked_at = time.monotonic()
            return changed

    def _build(self, records: list[KeyRecord], version: object) -> _Snapshot:
        verification: dict[str, VerificationKey] = {}
        for r in records:
            key_signer = self._signers.get(r.kid)
            if key_signer is None:
                key_signer = self._signers[r.kid] = self.store.signer(r.kid, r.alg)
            spec = spec_for(r.alg)
            verification[r.kid] = VerificationKey(r.kid, r.alg, key_signer.public_key(), spec)
        signing = self._signing_record(records)
        signer = None if signing is None else self._signers[signing.kid]
        jwks = _document([public_jwk(verification[r.kid].public_key, r.alg) for r in records])
        return _Snapshot(tuple(records), version, verification, signer, jwks)


def _document(keys: list[dict[str, str]]) -> JwksDocument:
    body = {"keys": keys}
    payload = json.dumps(body, separators=(",", ":"), sort_keys=True).encode("utf-8")
    etag = '"' + hashlib.sha256(payload).hexdigest()[:32] + '"'
    return JwksDocument(body, payload, etag)

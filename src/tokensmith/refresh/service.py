"""The refresh-token rotation service (docs/contract.md "Refresh store semantics"; RFC 6749 §6;
RFC 9700 §2.2.2 and §4.14.2; SECURITY R1 to R8).

Every state change happens in one store transaction; what a rotation decides inside it lives
in :mod:`tokensmith.refresh.rotation`. The caller (the facade) may sign JWTs while that
transaction commits (``prepare``), but hands nothing out before the method returned, i.e.
before the commit is durable. Logs and events carry family ids and hash prefixes, never a
token or a secret.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
from collections.abc import Callable
from typing import TypeVar

from tokensmith.clock import Clock
from tokensmith.dpop.proof import Proof
from tokensmith.dpop.replay import remember_proof
from tokensmith.errors import (
    CommitInDoubt,
    ConfigError,
    InvalidGrant,
    RefreshTokenReused,
    TemporarilyUnavailable,
)
from tokensmith.events import EventBus
from tokensmith.refresh import indoubt
from tokensmith.refresh.inflight import RecentRotations
from tokensmith.refresh.opaque import hash_prefix, is_well_formed, new_child, new_token, token_hash
from tokensmith.refresh.reuse import RequestContext, ReusePolicy
from tokensmith.refresh.rotation import (
    Attempt,
    Concurrent,
    GraceRetry,
    Outcome,
    Reuse,
    Rotation,
    Session,
    session_of,
)
from tokensmith.refresh.secret import SecretSource
from tokensmith.revocation.cache import RevocationCache
from tokensmith.revocation.feed import RevocationFeed
from tokensmith.revocation.log import LogEntry, log_of
from tokensmith.settings import MAX_LEEWAY, MAX_REUSE_GRACE, Settings
from tokensmith.store.protocols import RefreshStore, RefreshTransaction
from tokensmith.store.records import FamilyRecord, NewToken, Pending
from tokensmith.tokens.claims import SessionClaims

T = TypeVar("T")
logger = logging.getLogger("tokensmith.refresh")

__all__ = ["PendingSession", "RefreshService", "RequestContext", "Session"]

_NO_CONTEXT = RequestContext()
MAX_ID_LENGTH = 64
# Upper bound on cleanup batches in one call, so a cleanup can never spin forever.
MAX_CLEANUP_BATCHES = 10_000


class PendingSession:
    """A started or rotated session whose commit may still be in flight (what
    :meth:`RefreshService.start` and :meth:`RefreshService.rotate` return): mint with
    ``session``, then ``durable()`` before handing anything out. ``durable()`` raises if the
    commit failed, and emits the ``issued``/``rotated`` event once it did not."""

    __slots__ = ("_durable", "session")

    def __init__(self, session: Session, durable: Callable[[], None]) -> None:
        self.session = session
        self._durable = durable

    def durable(self) -> None:
        self._durable()


def _scope_set(scope: str) -> list[str]:
    return list(dict.fromkeys(scope.split()))


class RefreshService:
    """Issue, rotate and revoke refresh-token families over a :class:`RefreshStore`."""

    def __init__(
        self,
        store: RefreshStore,
        *,
        settings: Settings,
        clock: Clock,
        events: EventBus,
        reuse_policy: ReusePolicy | None = None,
        secret_source: SecretSource | None = None,
        on_log_entry: Callable[[LogEntry], None] | None = None,
    ) -> None:
        """``secret_source`` keeps the grace-retry secret (the key store; SECURITY B1);
        ``settings.refresh_secret`` wins over it. ``on_log_entry`` hears of every
        revocation-log entry this instance applies, its own and other instances'."""
        self._store = store
        self._settings = settings
        self._clock = clock
        self._events = events
        self._reuse_policy = reuse_policy
        self._recent = RecentRotations()
        self._rotation = Rotation(settings, clock, self._recent)
        self._secret: bytes | None = (
            settings.refresh_secret.encode("utf-8") if settings.refresh_secret else None
        )
        self._secret_source = secret_source
        self._secret_lock = threading.Lock()
        # How long a revocation can matter: a token verifies until its exp plus the leeway,
        # and any verifier sharing this store may allow up to MAX_LEEWAY (SECURITY B4).
        self._horizon = settings.max_token_lifetime + MAX_LEEWAY
        self.revocations = RevocationCache(
            store,
            clock=clock,
            ttl=settings.revocation_cache_ttl,
            horizon=self._horizon,
            poll_interval=settings.revocation_poll_interval,
            on_entry=on_log_entry,
        )
        self._log = log_of(store)
        self._feed: RevocationFeed | None = None

    @property
    def store(self) -> RefreshStore:
        return self._store

    def derived_key(self, purpose: bytes) -> bytes:
        """A key for ``purpose`` derived from the server secret, so every instance sharing
        the key store has it (DPoP nonces, :mod:`tokensmith.dpop.nonce`)."""
        return hmac.new(self._server_secret(), purpose, hashlib.sha256).digest()

    def record_proof(self, proof: Proof) -> None:
        """Remember a DPoP proof where every instance sees it; ``InvalidDPoPProof`` if one
        already did (RFC 9449 §11.1; SECURITY D1)."""
        self._write(lambda tx: remember_proof(tx, proof))

    def _server_secret(self) -> bytes:
        # Fetched outside any rotation transaction: the SQL key store keeps it in the same
        # database, where a second connection would wait for the lock we hold.
        if self._secret is None:
            with self._secret_lock:
                if self._secret is None:
                    if self._secret_source is None:
                        raise ConfigError(
                            "a grace window needs a refresh secret: set "
                            "TOKENSMITH_REFRESH_SECRET or use a key store that keeps one"
                        )
                    self._secret = self._secret_source.refresh_secret()
        return self._secret

    # -- issuing ----------------------------------------------------------------------------
    def start(
        self,
        *,
        subject: str,
        client_id: str,
        scope: str,
        audience: tuple[str, ...],
        auth_time: int,
        amr: tuple[str, ...],
        acr: str | None,
        access_jti: str,
        access_exp: int,
        claims: SessionClaims | None = None,
        dpop_jkt: str | None = None,
        proof: Proof | None = None,
    ) -> PendingSession:
        """Start a new family for a login. Every login gets a new random ``sid`` (docs/contract.md
        "a login never reuses an earlier session id"; session regeneration, R7). Mint with
        the returned ``session``, then call ``durable()`` before anything leaves."""
        now = self._clock.now()
        lifetimes = self._settings.lifetimes_for(client_id)
        family = FamilyRecord(
            id=secrets.token_urlsafe(16),
            subject=subject,
            client_id=client_id,
            scope=" ".join(_scope_set(scope)),
            audience=tuple(audience),
            auth_time=int(auth_time),
            amr=tuple(amr),
            acr=acr,
            created_at=now,
            expires_at=now + lifetimes.family_ttl,
            claims=claims,
            dpop_jkt=dpop_jkt,
        )
        token: str | None = None
        expires_at: float | None = None
        first: NewToken | None = None
        if lifetimes.issue_refresh_token:
            token = new_token()
            expires_at = min(now + lifetimes.refresh_idle_ttl, family.expires_at)
            first = NewToken(token_hash(token), family.id, None, None, now, expires_at)

        def work(tx: RefreshTransaction) -> None:
            if proof is not None:
                remember_proof(tx, proof)
            tx.insert_family(family)
            if first is not None:
                tx.insert_token(first)
            tx.record_access_token(access_jti, family.id, access_exp)

        pending = self._store.pending(work)

        def durable() -> None:
            pending.durable()
            self._events.emit(
                "issued", now, family_id=family.id, subject=subject, client_id=client_id
            )

        return PendingSession(session_of(family, family.scope, token, expires_at), durable)

    # -- rotation -----------------------------------------------------------------------------
    def rotate(
        self,
        refresh_token: str,
        *,
        client_id: str,
        scope: str | None,
        access_jti: str,
        access_exp: int,
        context: RequestContext | None = None,
        recompute: Callable[[FamilyRecord], SessionClaims | None] | None = None,
        proof: Proof | None = None,
        bind: bool = False,
    ) -> PendingSession:
        """RFC 6749 §6 with rotation (RFC 9700 §4.14.2): consume the token, issue its child.
        ``proof`` is the request's verified DPoP proof; with ``bind`` it binds a family not
        yet bound (RFC 9449 §5), and a bound family needs it (:mod:`.rotation`).
        ``recompute`` gives the family's new application claims (``None`` keeps them); the
        rotation stores them with the child.

        Returns once the rotation is decided, while its commit may still be in flight: mint
        with the returned ``session`` (the facade signs the new JWTs meanwhile), then call
        ``durable()``, which raises if the commit failed; nothing may leave before it
        returned.

        Raises ``InvalidGrant`` for unknown, malformed, expired, revoked or other clients'
        tokens; ``InvalidScope`` for a wider scope; ``RefreshTokenReused`` (after the family
        revocation has committed) for a used token outside the grace window;
        ``TemporarilyUnavailable`` for a retryable store conflict.
        """
        # Garbage never reaches the database (SECURITY R7).
        if not is_well_formed(refresh_token):
            raise InvalidGrant("invalid refresh token")
        requested = None if scope is None or not scope.strip() else _scope_set(scope)
        lifetimes = self._settings.lifetimes_for(client_id)
        # Derivation data only where a grace retry can use it (SECURITY B1): with grace 0 the
        # child is plain random, and nothing kept anywhere can compute it again.
        grace = lifetimes.refresh_reuse_grace > 0
        secret = self._server_secret() if grace else None  # may do I/O once: before the clock
        digest = token_hash(refresh_token)
        claims = None if recompute is None else self._recomputed(digest, client_id, recompute)
        now = self._clock.now()
        ctx = context or _NO_CONTEXT
        sent_at = now if ctx.received_at is None else min(ctx.received_at, now)
        salt, child = new_child(secret, digest)
        attempt = Attempt(
            digest=digest,
            secret=secret,
            now=now,
            sent_at=sent_at,
            lifetimes=lifetimes,
            client_id=client_id,
            requested=requested,
            access_jti=access_jti,
            access_exp=access_exp,
            ctx=ctx,
            salt=salt,
            child=child,
            child_hash=token_hash(child),
            claims=claims,
            proof=proof,
            bind=bind,
        )
        decided: list[Outcome] = []

        def work(tx: RefreshTransaction) -> Outcome:
            decided.append(self._rotation.run(tx, attempt))
            return decided[-1]

        try:
            try:
                pending = self._store.pending(work)
            except CommitInDoubt:
                pending = Pending(self._read_back(attempt, decided[-1] if decided else None))
        except BaseException:
            self._recent.failed(digest, attempt.child_hash)
            raise
        outcome = pending.value
        if isinstance(outcome, Reuse):
            pending.durable()  # R2: the revocation stands before the request fails
            self._after_reuse(outcome, now)
            raise RefreshTokenReused("refresh token was already used")
        if isinstance(outcome, Concurrent):
            # Answered once the batch that decided it is durable (it read the winner's rows).
            pending.durable()
            self._events.emit(
                "refresh_conflict",
                now,
                family_id=outcome.family_id,
                client_id=client_id,
                token=hash_prefix(digest),
            )
            raise InvalidGrant("refresh token was used concurrently")
        retry = isinstance(outcome, GraceRetry)
        session = outcome.session if isinstance(outcome, GraceRetry) else outcome

        def durable() -> None:
            try:
                pending.durable()
            except BaseException:
                self._recent.failed(digest, attempt.child_hash)
                raise
            if not retry:
                self._recent.durable(digest, attempt.child_hash, self._clock.now())
            self._events.emit(
                "rotated",
                now,
                family_id=session.family_id,
                client_id=client_id,
                token=hash_prefix(digest),
                grace_retry=retry,
            )

        return PendingSession(session, durable)

    def _read_back(self, attempt: Attempt, outcome: Outcome | None) -> Session:
        """The commit of ``outcome`` was cut off (:mod:`tokensmith.refresh.indoubt`): the
        rotation's session if its child is in the store, else ``TemporarilyUnavailable``.
        Only a won rotation has a child of its own to look for; a grace retry, a conflict or
        a reuse verdict is safe to decide again, so those are answered as retryable."""
        if isinstance(outcome, Session) and indoubt.committed(
            self._store,
            attempt.child_hash,
            timeout=self._settings.database_in_doubt_timeout,
        ):
            logger.warning("in-doubt rotation in family %s had committed", outcome.family_id)
            return outcome
        logger.warning("in-doubt rotation of %s had not committed", hash_prefix(attempt.digest))
        raise TemporarilyUnavailable("the token store failed during commit; retry the request")

    def _recomputed(
        self,
        digest: bytes,
        client_id: str,
        recompute: Callable[[FamilyRecord], SessionClaims | None],
    ) -> SessionClaims | None:
        # Read and run before the unit of work, like the secret above: the hook is
        # application code (it may ask a user directory) and must not hold the store's
        # transaction or the group-commit leader. The rotation re-reads and decides.
        record = self._store.find_token(digest)
        if record is None or record.family.client_id != client_id:
            return None  # the rotation refuses this token (SECURITY R5)
        return recompute(record.family)

    def answered(self, refresh_token: str) -> None:
        """The server sent the answer to a refresh of ``refresh_token`` (this instance's
        rotation of it): a presentation of the same token that arrived before this moment
        is a concurrent loser, not a replay (SECURITY B3)."""
        self._recent.answered(token_hash(refresh_token), self._clock.now())

    def _after_reuse(self, outcome: Reuse, now: float) -> None:
        incident = outcome.incident
        self.revocations.revoke_family(incident.family_id)
        self.logged()
        logger.warning(
            "refresh token reuse in family %s (%s); family revoked",
            incident.family_id,
            incident.kind.value,
        )
        self._events.emit("reuse_detected", now, **incident.event_data())
        if outcome.revoked is not None:
            self._family_revoked(outcome.revoked, now, "reuse_detected")
        if self._reuse_policy is not None:
            try:
                self._reuse_policy(incident, self)
            except Exception:
                # The default response (family revoked) already stands; the request fails.
                logger.exception("reuse policy failed for family %s", incident.family_id)

    def describe(self, refresh_token: str) -> Session | None:
        """RFC 7662 §2.2 for a refresh token: its session while the token is active
        (unused, unrevoked, unexpired, family live), else ``None``."""
        if not is_well_formed(refresh_token):
            return None
        now = self._clock.now()
        record = self._store.find_token(token_hash(refresh_token))
        if (
            record is None
            or record.used_at is not None
            or record.revoked_at is not None
            or record.family.revoked_at is not None
            or now >= min(record.expires_at, record.family.expires_at)
        ):
            return None
        return session_of(record.family, record.family.scope, None, record.expires_at)

    # -- revocation ---------------------------------------------------------------------------
    def _write(self, work: Callable[[RefreshTransaction], T]) -> T:
        """``work``'s result once it is durable."""
        return self._store.atomic(work)

    def logged(self) -> None:
        """Read the revocation log now: this instance has just written to it (its cursor
        moves on at once, so ``GET /revocations/stream`` sends the entry without waiting
        for the feed). A failure is left to the feed's next read."""
        try:
            self.revocations.catch_up()
        except Exception as exc:
            logger.warning("revocation log read failed (%s)", type(exc).__name__)

    def log_revocation(self, kind: str, key: str) -> None:
        """Log a revocation kept outside the refresh store (``tokensmith.revocation.log``:
        a client disabled or enabled, a key revoked) for the other instances and remote
        verifiers. A store without a log has no one to tell."""
        if self._log is not None:
            self._log.append_revocation(kind, key, self._clock.now())
            self.logged()

    @property
    def revocation_horizon(self) -> float:
        """How long after its revocation a family, subject, client or key entry matters."""
        return self._horizon

    def revocation_entries(self, cursor: int, limit: int) -> tuple[list[LogEntry], int, bool]:
        """The log entries after ``cursor`` that still matter (up to ``limit`` read), the
        cursor to read from next, and whether more may follow."""
        if self._log is None:
            return [], cursor, False
        entries = self._log.revocations_since(cursor, limit)
        last = entries[-1].id if entries else cursor
        now = self._clock.now()
        live = [e for e in entries if e.expires(self._horizon) > now]
        return live, last, len(entries) == limit

    def follow_revocations(self) -> None:
        """Follow other instances' revocations in a thread (:mod:`tokensmith.revocation.feed`)
        if the store has any: they are then enforced as they commit (PostgreSQL
        ``NOTIFY``) instead of at the next check after ``revocation_poll_interval``."""
        signal = None if self._log is None else self._log.change_signal()
        if signal is None or (self._feed is not None and self._feed.running):
            return
        settings = self._settings
        self._feed = RevocationFeed(
            self.revocations,
            signal,
            interval=settings.revocation_poll_interval,
            fallback=max(settings.revocation_cache_ttl, settings.revocation_poll_interval),
        )
        self._feed.start()

    def stop_following(self) -> None:
        if self._feed is not None:
            self._feed.stop()

    def revoke_refresh_token(self, refresh_token: str, *, client_id: str | None = None) -> bool:
        """RFC 7009 §2.1: revoke the token's whole family (and its access tokens). Unknown or
        garbage tokens, and another client's token, return ``False`` without an error
        (§2.2: invalid tokens do not cause an error response)."""
        if not is_well_formed(refresh_token):
            return False
        digest = token_hash(refresh_token)
        now = self._clock.now()
        actor = None if client_id is None else f"client:{client_id}"

        def work(tx: RefreshTransaction) -> tuple[str, FamilyRecord | None] | None:
            record = tx.get_token(digest)
            if record is None or (client_id is not None and record.family.client_id != client_id):
                return None
            family_id = record.family.id
            return family_id, tx.revoke_family(family_id, now, "token_revoked", actor)

        found = self._write(work)
        if found is None:
            return False
        family_id, revoked = found
        self.revocations.revoke_family(family_id)
        self.logged()
        if revoked is not None:
            self._family_revoked(revoked, now, "token_revoked")
        return True

    def revoke_family(self, family_id: str, *, reason: str = "revoked") -> bool:
        """End one session (``sid``). True if this call revoked it; False if it was unknown
        or already revoked."""
        if not isinstance(family_id, str) or not 0 < len(family_id) <= MAX_ID_LENGTH:
            return False
        now = self._clock.now()
        revoked = self._write(lambda tx: tx.revoke_family(family_id, now, reason[:64], None))
        if revoked is None:
            return False
        self.revocations.revoke_family(family_id)
        self.logged()
        self._family_revoked(revoked, now, reason)
        return True

    def revoke_subject(self, subject: str) -> int:
        """Logout everywhere: revoke every live family of ``subject`` and set its not-before
        time, so access tokens issued earlier fail without a denylist row each."""
        now = self._clock.now()
        family_ids = self._write(lambda tx: tx.revoke_subject(subject, now))
        self.revocations.set_not_before(subject, now)
        for family_id in family_ids:
            self.revocations.revoke_family(family_id)
        self.logged()
        for family_id in family_ids:
            self._events.emit(
                "family_revoked",
                now,
                family_id=family_id,
                subject=subject,
                reason="subject_revoked",
            )
        self._events.emit("subject_revoked", now, subject=subject, families=len(family_ids))
        return len(family_ids)

    def revoke_client(self, client_id: str) -> int:
        """End every live family of ``client_id`` (its refresh tokens are refused and the
        access tokens they issued denied), as when the client is deleted."""
        now = self._clock.now()
        actor = f"client:{client_id}"

        def work(tx: RefreshTransaction) -> list[FamilyRecord]:
            revoked = (
                tx.revoke_family(family_id, now, "client_deleted", actor)
                for family_id in tx.client_families(client_id, now)
            )
            return [family for family in revoked if family is not None]

        families = self._write(work)
        for family in families:
            self.revocations.revoke_family(family.id)
        self.logged()
        for family in families:
            self._family_revoked(family, now, "client_deleted")
        return len(families)

    def revoke_access_token(self, jti: str, expires_at: int) -> None:
        """Deny one access token by ``jti`` until it can no longer verify, ``expires_at`` +
        ``MAX_LEEWAY`` (never by token string, V5; SECURITY B4)."""
        self._write(lambda tx: tx.deny_access_token(jti, float(expires_at)))
        self.revocations.deny_jti(jti)
        self.logged()

    def is_access_token_revoked(
        self,
        *,
        jti: str,
        subject: str,
        issued_at: int,
        family_id: str | None,
        client_id: str | None = None,
    ) -> bool:
        """Denied jti, revoked family, disabled client, or issued before the subject's
        not-before time. Answered from the in-process cache: revocations made through this
        instance are visible at once, other instances' through the log within
        ``revocation_poll_interval`` (or as they commit, with a feed on PostgreSQL)."""
        feed = self._feed
        return self.revocations.is_revoked(
            jti=jti,
            subject=subject,
            issued_at=issued_at,
            family_id=family_id,
            client_id=client_id,
            poll=feed is None or not feed.running,
        )

    def _family_revoked(self, family: FamilyRecord, now: float, reason: str) -> None:
        self._events.emit(
            "family_revoked",
            now,
            family_id=family.id,
            subject=family.subject,
            client_id=family.client_id,
            reason=reason,
        )

    # -- maintenance --------------------------------------------------------------------------
    def cleanup(self, *, batch_size: int = 500) -> int:
        """Purge rows of expired families in small batches (docs/contract.md: "never in one huge
        delete"). Used tokens are kept until their family expires so reuse is still
        detected; a family is purged only once every access token it issued has expired."""
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        now = self._clock.now()
        # Salts outlive no grace window (SECURITY B1): past the longest one allowed, no
        # retry can use them.
        _batches(lambda: self._store.clear_salts(now - MAX_REUSE_GRACE, batch_size))
        # A proof is refused once its iat is older than the window; MAX_LEEWAY more covers
        # instances whose clocks run behind this one's.
        proofs_before = now - self._settings.dpop_iat_window - MAX_LEEWAY
        return _batches(
            lambda: self._store.purge_expired(now, batch_size, self._horizon, proofs_before)
        )


def _batches(batch: Callable[[], int]) -> int:
    """Run ``batch`` until it reports nothing left (at most ``MAX_CLEANUP_BATCHES`` times);
    the rows it reported in all."""
    total = 0
    for _ in range(MAX_CLEANUP_BATCHES):
        done = batch()
        total += done
        if done == 0:
            break
    return total

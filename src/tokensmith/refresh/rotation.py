"""What a rotation decides inside its unit of work (docs/contract.md "Refresh store semantics";
RFC 9700 §4.14.2; SECURITY R1 to R5): the compare-and-set that consumes a token, scope
narrowing, grace retries, concurrent losers and reuse.

Everything here runs in the store's transaction, under group commit possibly in a leader
thread that serialises every caller's unit, so it does only what needs the rows; the
caller (:class:`tokensmith.refresh.service.RefreshService`) prepares the inputs before and
acts on the outcome after.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from tokensmith.clock import Clock
from tokensmith.dpop.proof import Proof
from tokensmith.dpop.replay import remember_proof
from tokensmith.errors import InvalidDPoPProof, InvalidGrant, InvalidScope
from tokensmith.refresh.inflight import RecentRotations
from tokensmith.refresh.opaque import derive_child, hash_prefix, token_hash
from tokensmith.refresh.reuse import RequestContext, ReuseIncident, classify
from tokensmith.settings import Lifetimes, Settings
from tokensmith.store.protocols import RefreshTransaction
from tokensmith.store.records import FamilyRecord, NewToken, TokenRecord
from tokensmith.tokens.claims import SessionClaims

MAX_CONTEXT_LENGTH = 255


@dataclass(frozen=True)
class Session:
    """What ``RefreshService.start`` and ``rotate`` return: everything the facade needs to
    mint tokens."""

    family_id: str
    subject: str
    client_id: str
    scope: str
    audience: tuple[str, ...]
    auth_time: int
    amr: tuple[str, ...]
    acr: str | None
    refresh_token: str | None
    refresh_expires_at: int | None
    claims: SessionClaims | None = None


@dataclass(frozen=True, slots=True)
class GraceRetry:
    session: Session


class Attempt(NamedTuple):
    """One ``RefreshService.rotate`` call's inputs, read once and passed down as a unit.
    The child token is derived by the caller before queueing (see the module docstring)."""

    digest: bytes
    secret: bytes | None  # only with a grace window (SECURITY B1)
    now: float
    # When the request arrived (over HTTP: before its form was read), for telling a
    # concurrent loser from a replay; never later than ``now``.
    sent_at: float
    lifetimes: Lifetimes
    client_id: str
    requested: list[str] | None
    access_jti: str
    access_exp: int
    ctx: RequestContext
    salt: bytes | None
    child: str
    child_hash: bytes
    # Recomputed by the refresh claims hook (None: keep the family's); stored by the winner.
    claims: SessionClaims | None = None
    # The request's verified DPoP proof, and whether it binds an unbound family (RFC 9449 §5).
    proof: Proof | None = None
    bind: bool = False


@dataclass(frozen=True, slots=True)
class Reuse:
    incident: ReuseIncident
    revoked: FamilyRecord | None


@dataclass(frozen=True, slots=True)
class Concurrent:
    """Lost to a rotation that was not yet durable when this request was sent (SECURITY
    B3): refused, nothing revoked."""

    family_id: str


Outcome = Session | GraceRetry | Reuse | Concurrent


def _clip(value: str | None, limit: int) -> str | None:
    return None if value is None else value[:limit]


def narrow(granted: str, requested: list[str] | None) -> str:
    """RFC 6749 §6: the requested scope must not exceed the original grant; a narrower
    one narrows only this access token (the refresh token keeps the original scope)."""
    if requested is None:
        return granted
    if not set(requested) <= set(granted.split()):
        raise InvalidScope("requested scope exceeds the granted scope")
    return " ".join(requested)


def session_of(
    family: FamilyRecord, scope: str, token: str | None, expires_at: float | None
) -> Session:
    return Session(
        family_id=family.id,
        subject=family.subject,
        client_id=family.client_id,
        scope=scope,
        audience=family.audience,
        auth_time=family.auth_time,
        amr=family.amr,
        acr=family.acr,
        refresh_token=token,
        refresh_expires_at=None if expires_at is None else int(expires_at),
        claims=family.claims,
    )


class Rotation:
    """The rules of one rotation over a :class:`RefreshTransaction`."""

    def __init__(self, settings: Settings, clock: Clock, recent: RecentRotations) -> None:
        self._settings = settings
        self._clock = clock
        self._recent = recent

    def run(self, tx: RefreshTransaction, a: Attempt) -> Outcome:
        # A proof seen by any instance sharing this store is refused (SECURITY D1).
        proof = a.proof
        if proof is not None:
            remember_proof(tx, proof)
        # Two passes at most: a second one only after losing the compare-and-set, to see
        # what the winner committed.
        for _ in range(2):
            record = tx.get_token(a.digest)
            if record is None:
                raise InvalidGrant("invalid refresh token")
            family = record.family
            if a.claims is not None:
                family = family._replace(claims=a.claims)
            # Bound to its client (SECURITY R5): nothing changes for another client.
            if family.client_id != a.client_id:
                raise InvalidGrant("invalid refresh token")
            # Revoked (family revocation, logout, reuse) is never a grace retry (R3).
            if family.revoked_at is not None or record.revoked_at is not None:
                raise InvalidGrant("refresh token revoked")
            if a.now >= family.expires_at:
                raise InvalidGrant("refresh token expired")
            if record.used_at is not None:
                return self._used(tx, record, a)
            if a.now >= record.expires_at:
                raise InvalidGrant("refresh token expired")
            _require_bound_key(family, proof)
            narrowed = narrow(family.scope, a.requested)
            child_expires = min(a.now + a.lifetimes.refresh_idle_ttl, family.expires_at)
            ip = _clip(a.ctx.ip, 64)
            ua = _clip(a.ctx.user_agent, MAX_CONTEXT_LENGTH)
            if not tx.mark_used(a.digest, a.now, ip, ua):
                continue
            # The child's issue time is read after winning the compare-and-set, just before
            # commit: a caller of another instance whose request started before it was in
            # flight at the same time as this rotation (a concurrent loser), not replaying a
            # finished one. This instance's own callers learn the commit's end instead.
            issued = max(a.now, self._clock.now())
            self._recent.won(a.digest, a.child_hash, issued)
            tx.insert_token(
                NewToken(a.child_hash, family.id, a.digest, a.salt, issued, child_expires)
            )
            tx.record_access_token(a.access_jti, family.id, a.access_exp)
            if a.claims is not None and a.claims != record.family.claims:
                tx.set_family_claims(family.id, a.claims)
            if a.bind and proof is not None and family.dpop_jkt is None:
                tx.set_family_jkt(family.id, proof.jkt)
            return session_of(family, narrowed, a.child, child_expires)
        # Still losing after re-reading: a conflict, not an answer about this token.
        return Concurrent(family.id)

    def _used(self, tx: RefreshTransaction, record: TokenRecord, a: Attempt) -> Outcome:
        """A used token came back: a grace retry, a concurrent loser, or reuse (R2, R3)."""
        family = record.family
        used_at = record.used_at
        assert used_at is not None
        child = tx.get_child(record.token_hash)
        child_live = (
            child is not None
            and child.used_at is None
            and child.revoked_at is None
            and a.now < child.expires_at
        )
        grace = a.lifetimes.refresh_reuse_grace
        # A retry must prove the key the original use proved; another key (or none) is a
        # copy of the token in other hands, never a retry or a concurrent tab (SECURITY D2).
        same_key = _proves_bound_key(family, a.proof)
        if same_key and child is not None and child_live and grace > 0 and a.now < used_at + grace:
            narrowed = narrow(family.scope, a.requested)
            limit = self._settings.refresh_grace_retries
            if (
                child.salt is not None
                and a.secret is not None
                and tx.count_grace_retry(record.token_hash, limit)
            ):
                token = derive_child(a.secret, child.salt, record.token_hash)
                # A changed server secret cannot reproduce the child; refuse, do not fork.
                if token_hash(token) != child.token_hash:
                    raise InvalidGrant("refresh token was already used")
                tx.record_access_token(a.access_jti, family.id, a.access_exp)
                return GraceRetry(session_of(family, narrowed, token, child.expires_at))
        # Sent before the winning rotation was durable: a request in flight at the same
        # time, not a replay of a finished rotation. Refused without revoking, so concurrent
        # callers leave the family with exactly one active token (R1, B3). Sent before the
        # winner's stamp (taken just before its commit) is certainly so; past it, this
        # instance knows when its own rotations became durable and were answered, while
        # another instance's rotation is judged by the stamp alone.
        if same_key and (
            (child is not None and child_live and a.sent_at <= child.issued_at)
            or self._recent.sent_before_durable(record.token_hash, a.sent_at)
        ):
            return Concurrent(family.id)
        incident = ReuseIncident(
            family_id=family.id,
            subject=family.subject,
            client_id=family.client_id,
            kind=classify(
                used_at=used_at, now=a.now, child_used=child is None or child.used_at is not None
            ),
            token_hash_prefix=hash_prefix(record.token_hash),
            first_used_at=used_at,
            first_ip=record.used_ip,
            first_user_agent=record.used_user_agent,
            reused_at=a.now,
            reuse_client_id=a.client_id,
            reuse_ip=a.ctx.ip,
            reuse_user_agent=a.ctx.user_agent,
            family_revoked=True,
        )
        revoked = tx.revoke_family(family.id, a.now, "reuse_detected", f"client:{a.client_id}")
        return Reuse(incident, revoked)


def _proves_bound_key(family: FamilyRecord, proof: Proof | None) -> bool:
    return family.dpop_jkt is None or (proof is not None and proof.jkt == family.dpop_jkt)


def _require_bound_key(family: FamilyRecord, proof: Proof | None) -> None:
    """RFC 9449 §5: a bound family's refresh tokens need a proof by its key; refused before
    any write, so nothing changes (SECURITY D2)."""
    if family.dpop_jkt is None:
        return
    if proof is None:
        raise InvalidGrant("refresh token is bound to a DPoP key: send a DPoP proof")
    if proof.jkt != family.dpop_jkt:
        raise InvalidDPoPProof("DPoP proof key is not the one the refresh token is bound to")

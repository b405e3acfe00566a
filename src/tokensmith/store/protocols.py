"""The small Protocols the core depends on: what it needs from storage, never how a
backend batches or locks.

A unit of work (``RefreshStore.atomic`` or ``RefreshStore.pending``) runs in one
transaction: everything done through its :class:`RefreshTransaction` commits together and
rolls back completely if it raises (SECURITY R4). ``pending`` hands the result back before
the commit may be durable, so the caller can sign its tokens meanwhile; whatever it makes
leaves only after ``durable()`` returned. Backends translate their own failures into
:class:`StoreError` or, for conflicts a retry will fix,
:class:`tokensmith.errors.TemporarilyUnavailable`.

Implementations: :class:`tokensmith.store.memory.MemoryStore` (the reference) and
:class:`tokensmith.store.sql.SqlStore`; ``tests/contract/`` runs one suite over both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, TypeVar, runtime_checkable

from tokensmith.store.records import (
    FamilyRecord,
    FamilySummary,
    NewToken,
    Pending,
    RevocationSnapshot,
    SessionActivity,
    TokenRecord,
)
from tokensmith.tokens.claims import SessionClaims

if TYPE_CHECKING:
    from tokensmith.clients import ClientRegistry


class RefreshTransaction(Protocol):
    def get_token(self, token_hash: bytes) -> TokenRecord | None:
        """The token and its family. Locks the family against concurrent revocation where
        the backend has row locks (CWE-367); SQLite serialises writers instead."""
        ...

    def get_child(self, parent_hash: bytes) -> TokenRecord | None: ...

    def insert_family(self, family: FamilyRecord) -> None: ...

    def insert_token(self, token: NewToken) -> None: ...

    def mark_used(self, token_hash: bytes, now: float, ip: str | None, ua: str | None) -> bool:
        """Compare-and-set: true only for the one caller that consumed an unused, unrevoked
        token (SECURITY R1)."""
        ...

    def count_grace_retry(self, token_hash: bytes, limit: int) -> bool:
        """Count one grace retry on a used token; false once ``limit`` retries were made."""
        ...

    def record_access_token(self, jti: str, family_id: str, expires_at: float) -> None: ...

    def revoke_family(
        self, family_id: str, now: float, reason: str, actor: str | None
    ) -> FamilyRecord | None:
        """Revoke the family and all its tokens, deny its access tokens that may still verify
        (``exp`` + ``MAX_LEEWAY`` not passed) and write an audit row. Returns the family if
        this call revoked it, ``None`` if it was unknown or already revoked."""
        ...

    def set_family_claims(self, family_id: str, claims: SessionClaims | None) -> None:
        """Replace the family's application claims (a refresh claims hook recomputed them)."""
        ...

    def set_family_jkt(self, family_id: str, jkt: str) -> None:
        """Bind the family's refresh tokens to a DPoP key (RFC 9449 §5; SECURITY D2)."""
        ...

    def remember_proof(self, key: bytes, iat: float) -> bool:
        """Record a DPoP proof by its replay key and its ``iat`` (a replay has both the
        same); false if it is recorded (RFC 9449 §11.1, shared by every instance;
        SECURITY D1)."""
        ...

    def client_families(self, client_id: str, now: float) -> list[str]:
        """Ids of ``client_id``'s live families, locked like :meth:`get_token`'s."""
        ...

    def revoke_subject(self, subject: str, now: float) -> list[str]:
        """Revoke every live family of ``subject`` and set its not-before time to ``now``."""
        ...

    def deny_access_token(self, jti: str, expires_at: float) -> None: ...


T = TypeVar("T")


class RevocationSource(Protocol):
    def load_revocations(self, now: float, horizon: float) -> RevocationSnapshot:
        """Denied jtis of tokens that may still verify (``exp`` + ``MAX_LEEWAY`` of
        ``tokensmith.settings`` not passed: no verifier of ours accepts one later), and
        families/not-before times newer than ``now - horizon`` (older ones can only concern
        access tokens that have expired)."""
        ...


class RefreshStore(RevocationSource, Protocol):
    def atomic(self, work: Callable[[RefreshTransaction], T]) -> T:
        """Run ``work`` as one unit of work and return its result once it is durable; raise
        what it raised (its writes undone) or why the commit failed."""
        ...

    def pending(self, work: Callable[[RefreshTransaction], T]) -> Pending[T]:
        """Run ``work`` as one unit of work and return its result, whose commit may still be
        in flight: the caller has work to do (signing) before it waits in ``durable()``.
        Raises what ``work`` raised (its writes undone)."""
        ...

    def family_tokens(self, family_id: str) -> list[TokenRecord]:
        """Every stored token of the family in issue order, as last committed (an audit
        read: a session's rotation chain)."""
        ...

    def find_token(self, token_hash: bytes) -> TokenRecord | None:
        """The token and its family as last committed, read outside any write transaction
        (no lock: for answers like introspection, never for a decision that writes)."""
        ...

    def clear_salts(self, cutoff: float, batch_size: int) -> int:
        """Forget the derivation salt of up to ``batch_size`` tokens issued at or before
        ``cutoff`` (no grace retry can use them any more); returns how many."""
        ...

    def purge_expired(
        self, now: float, batch_size: int, horizon: float, proofs_before: float
    ) -> int:
        """Delete one batch of rows of families expired ``horizon`` seconds before ``now``,
        of denylist entries whose token can no longer verify (``exp`` + ``MAX_LEEWAY``
        passed) and of DPoP proofs issued before ``proofs_before``; returns rows deleted
        (0 when nothing is left)."""
        ...


class AuditReader(Protocol):
    def list_families(self, subject: str, limit: int = 100) -> list[FamilySummary]:
        """The newest ``limit`` sessions of ``subject``, each with its revocation trail."""
        ...

    def list_sessions(self, subject: str, now: float, limit: int) -> list[SessionActivity]:
        """The newest ``limit`` live sessions of ``subject`` (unrevoked, unexpired, with an
        unused refresh token that has not expired), each with its last refresh."""
        ...


@runtime_checkable
class Registries(Protocol):
    """A store that also keeps the client registry and the audit trail (both stores here
    do), so a ``refresh_store`` given to the facade brings them along."""

    def client_registry(self) -> ClientRegistry: ...

    def audit_reader(self) -> AuditReader: ...

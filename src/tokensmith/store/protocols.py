"""The small Protocols the refresh and revocation services depend on.

A unit of work (``RefreshStore.atomic``) runs in one transaction: everything done through
its :class:`RefreshTransaction` commits together when it returns and rolls back completely
if it raises (SECURITY R4). Backends translate their own failures into :class:`StoreError`
or, for conflicts a retry will fix, :class:`tokensmith.errors.TemporarilyUnavailable`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

from tokensmith.store.records import FamilyRecord, NewToken, RevocationSnapshot, TokenRecord


class RefreshTransaction(Protocol):
    def get_token(self, token_hash: bytes) -> TokenRecord | None:
        """The token and its family. Locks the family against concurrent revocation where
        the backend has row locks (CWE-367); SQLite serialises writers instead."""
        ...

    def get_child(self, parent_hash: bytes) -> TokenRecord | None: ...

    def get_family(self, family_id: str) -> FamilyRecord | None: ...

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

    def client_families(self, client_id: str, now: float) -> list[str]:
        """Ids of ``client_id``'s live families, locked like :meth:`get_token`'s."""
        ...

    def revoke_subject(self, subject: str, now: float) -> list[str]:
        """Revoke every live family of ``subject`` and set its not-before time to ``now``."""
        ...

    def deny_access_token(self, jti: str, expires_at: float) -> None: ...


T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class UnitOfWork(Protocol[T_co]):
    """A unit of work handed to :meth:`RefreshStore.atomic`."""

    def result(self) -> T_co:
        """What the work returned (or raise what it raised; its writes are then undone).
        May be available before the writes are durable."""
        ...

    def committed(self) -> None:
        """Return once the work's writes are durable; raise if they were rolled back.
        Nothing derived from the result may leave the process before this returned."""
        ...


class RevocationSource(Protocol):
    def load_revocations(self, now: float, horizon: float) -> RevocationSnapshot:
        """Denied jtis of tokens that may still verify (``exp`` + ``MAX_LEEWAY`` of
        ``tokensmith.settings`` not passed: no verifier of ours accepts one later), and
        families/not-before times newer than ``now - horizon`` (older ones can only concern
        access tokens that have expired)."""
        ...


class RefreshStore(RevocationSource, Protocol):
    def atomic(
        self, work: Callable[[RefreshTransaction], T], *, background: bool = False
    ) -> UnitOfWork[T]:
        """Run ``work`` in a transaction of its own or, where the backend groups commits,
        in a savepoint of a shared one; either way it commits or rolls back as a whole.
        ``background``: the caller has work to do before it waits in ``committed``; a
        backend may commit on another thread meanwhile (or ignore the hint)."""
        ...

    def find_token(self, token_hash: bytes) -> TokenRecord | None:
        """The token and its family as last committed, read outside any write transaction
        (no lock: for answers like introspection, never for a decision that writes)."""
        ...

    def clear_salts(self, cutoff: float, batch_size: int) -> int:
        """Forget the derivation salt of up to ``batch_size`` tokens issued at or before
        ``cutoff`` (no grace retry can use them any more); returns how many."""
        ...

    def purge_expired(self, now: float, batch_size: int, horizon: float) -> int:
        """Delete one batch of rows of families expired ``horizon`` seconds before ``now``
        and of denylist entries whose token can no longer verify (``exp`` + ``MAX_LEEWAY``
        passed); returns rows deleted (0 when nothing is left)."""
        ...

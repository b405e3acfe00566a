"""Plain records exchanged between the refresh service and a store.

Times are epoch seconds as floats everywhere (docs/contract.md "Python API"); a token or
family is expired at exactly its ``expires_at`` (SECURITY R6).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, NamedTuple, TypeVar

from tokensmith.errors import StoreError
from tokensmith.tokens.claims import SessionClaims

__all__ = [
    "FamilyRecord",
    "FamilySummary",
    "NewToken",
    "Pending",
    "Revocation",
    "RevocationSnapshot",
    "SessionActivity",
    "StoreError",
    "TokenRecord",
]

T = TypeVar("T")


# The records read and written by every rotation are named tuples: as immutable as a frozen
# dataclass, and built in a third of the time (a frozen dataclass sets each field through
# object.__setattr__), which counts on the group-commit leader's serial path.
class FamilyRecord(NamedTuple):
    """One login session (the OIDC ``sid``): every refresh token rotated from one ``issue``."""

    id: str
    subject: str
    client_id: str
    scope: str
    audience: tuple[str, ...]
    auth_time: int
    amr: tuple[str, ...]
    acr: str | None
    created_at: float
    expires_at: float
    revoked_at: float | None = None
    revoke_reason: str | None = None
    # Application claims carried to every token of the session (README "Custom claims").
    claims: SessionClaims | None = None
    # RFC 9449 §5: the RFC 7638 thumbprint of the DPoP key its refresh tokens are bound to.
    dpop_jkt: str | None = None


class TokenRecord(NamedTuple):
    """A stored refresh token (only its SHA-256 hash) joined with its family."""

    token_hash: bytes
    parent_hash: bytes | None
    salt: bytes | None
    issued_at: float
    expires_at: float
    used_at: float | None
    revoked_at: float | None
    grace_retries: int
    used_ip: str | None
    used_user_agent: str | None
    family: FamilyRecord


class NewToken(NamedTuple):
    token_hash: bytes
    family_id: str
    parent_hash: bytes | None
    salt: bytes | None
    issued_at: float
    expires_at: float


class SessionActivity(NamedTuple):
    """A live session as its user sees it: created when, by which client, and the time,
    IP and user agent of its last refresh (``None`` until it was refreshed once)."""

    family_id: str
    client_id: str
    created_at: float
    expires_at: float
    last_used_at: float | None
    ip: str | None
    user_agent: str | None


@dataclass(frozen=True, slots=True)
class RevocationSnapshot:
    """What an access-token check needs, loaded in one read (docs/contract.md "Revocation list")."""

    denied_jtis: frozenset[str]
    revoked_families: frozenset[str]
    subject_not_before: dict[str, float]


@dataclass(frozen=True, slots=True)
class Revocation:
    """One entry of a family's revocation audit trail."""

    revoked_at: float
    reason: str
    actor: str | None


@dataclass(frozen=True)
class FamilySummary:
    """A session as an operator sees it (``tokensmith families``), with its audit trail."""

    family_id: str
    subject: str
    client_id: str
    scope: str
    created_at: float
    expires_at: float
    revoked_at: float | None
    revoke_reason: str | None
    revocations: tuple[Revocation, ...]

    @classmethod
    def of(cls, family: FamilyRecord, revocations: tuple[Revocation, ...]) -> FamilySummary:
        return cls(
            family.id,
            family.subject,
            family.client_id,
            family.scope,
            family.created_at,
            family.expires_at,
            family.revoked_at,
            family.revoke_reason,
            revocations,
        )


def _already_durable() -> None:
    return None


class Pending(Generic[T]):
    """A unit of work that ran: its ``value`` is known, its commit may still be in flight
    (a group commit's fsync). Nothing derived from ``value`` may leave the process before
    :meth:`durable` returned; it raises if the commit failed and the writes were undone."""

    __slots__ = ("_durable", "value")

    def __init__(self, value: T, durable: Callable[[], None] = _already_durable) -> None:
        self.value = value
        self._durable = durable

    def durable(self) -> None:
        self._durable()

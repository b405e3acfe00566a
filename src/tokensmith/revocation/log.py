"""The revocation log: every revocation as one entry under a cursor (docs/contract.md
"Revocation list").

An entry's ``id`` grows in commit order: a reader that has seen entry N has seen every entry
that will ever commit with a lower id, so "everything after my cursor" never skips one
(``store/sql/transaction.py`` says how the SQL store keeps that promise on PostgreSQL, where
sequence values may commit out of order). Instances follow the log to enforce each other's
revocations (:mod:`tokensmith.revocation.feed`); ``GET /revocations`` serves it to remote
resource servers.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol, runtime_checkable

__all__ = [
    "CLIENT_DISABLED",
    "CLIENT_ENABLED",
    "FAMILY",
    "JTI",
    "KID",
    "KINDS",
    "SUBJECT",
    "ChangeSignal",
    "LogEntry",
    "RevocationLog",
    "log_of",
]

JTI = "jti"  # one access token, until its exp + MAX_LEEWAY
FAMILY = "family"  # a session (the tokens' ``sid``)
SUBJECT = "subject"  # tokens of the subject issued before ``at`` (logout everywhere)
CLIENT_DISABLED = "client_disabled"  # the client's tokens, while it stays disabled
CLIENT_ENABLED = "client_enabled"  # ends an earlier CLIENT_DISABLED
KID = "kid"  # every token signed with the key (``keys revoke``)
KINDS = (JTI, FAMILY, SUBJECT, CLIENT_DISABLED, CLIENT_ENABLED, KID)


class LogEntry(NamedTuple):
    id: int
    kind: str
    key: str
    at: float
    # When the entry stops mattering; None: ``horizon`` seconds after ``at`` (the longest a
    # token issued before ``at`` can verify, SECURITY B4).
    until: float | None

    def expires(self, horizon: float) -> float:
        return self.until if self.until is not None else self.at + horizon


@runtime_checkable
class ChangeSignal(Protocol):
    """Wakes a follower of the log when another instance may have written to it."""

    @property
    def live(self) -> bool:
        """True while changes are pushed (the follower may then poll rarely)."""
        ...

    def wait(self, timeout: float) -> None:
        """Return on a change, a reconnect (a change may have been missed) or ``timeout``."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class RevocationLog(Protocol):
    """What a store offers to follow its revocations. The refresh transaction's revoking
    methods append their entries in the same unit of work, so an entry and its revocation
    commit together."""

    def revocations_since(self, cursor: int, limit: int) -> list[LogEntry]:
        """Up to ``limit`` entries with ``id > cursor``, in id order."""
        ...

    def append_revocation(self, kind: str, key: str, at: float) -> None:
        """Log a revocation kept outside the refresh store (a client disabled or enabled, a
        key revoked) in a unit of work of its own."""
        ...

    def change_signal(self) -> ChangeSignal | None:
        """How to hear of other processes' entries; ``None`` when there are none (a store
        in this process's memory)."""
        ...


def log_of(store: object) -> RevocationLog | None:
    """``store`` as a :class:`RevocationLog`, or ``None`` when it keeps no log (a custom
    store). Asked of its class: looking up attributes on the instance would run its
    ``__getattr__``."""
    return store if issubclass(type(store), RevocationLog) else None  # type: ignore[return-value]

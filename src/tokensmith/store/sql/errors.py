"""Map driver errors to the core's: retryable conflicts versus everything else (SECURITY R4).

A PostgreSQL serialization failure (40001), deadlock (40P01), lock timeout (55P03) or a
write on a server that is no longer the primary (25006), a SQLite "database is locked",
or a dropped connection is retryable: the transaction was rolled back and nothing
happened, so it is never counted as reuse. Anything else is a :class:`StoreError`. A
connection that died after ``COMMIT`` was sent is the exception: the repository makes it
a :class:`tokensmith.errors.CommitInDoubt`.
"""

from __future__ import annotations

from tokensmith.errors import TemporarilyUnavailable
from tokensmith.store.records import StoreError

RETRYABLE_SQLSTATES = frozenset({"40001", "40P01", "55P03", "25006"})
# The server ended the session (pg_terminate_backend, shutdown): the connection is gone.
DISCONNECT_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "08000", "08003", "08006"})
_SQLITE_BUSY = ("database is locked", "database table is locked", "database is busy")


def busy() -> TemporarilyUnavailable:
    return TemporarilyUnavailable("the token store is busy; retry the request")


def unreachable(orig: BaseException | None) -> TemporarilyUnavailable:
    """No connection could be made: every host of the URL refused, or none is an accepting
    primary (a failover). The driver's first line names the hosts tried; it is logged and
    printed by the CLI, never sent to an HTTP client (a 503 body has no description)."""
    first = (str(orig).strip().splitlines() or [""])[0][:200]
    return TemporarilyUnavailable(f"the token store is unreachable ({first})")


def translate(
    orig: BaseException | None, *, disconnect: bool
) -> StoreError | TemporarilyUnavailable:
    """The core error for a driver exception (``disconnect``: the connection is gone)."""
    if getattr(orig, "sqlstate", None) in RETRYABLE_SQLSTATES or disconnect:
        return busy()
    if any(marker in str(orig).lower() for marker in _SQLITE_BUSY):
        return busy()
    # The class name helps operators; the statement and parameters stay out of the message.
    return StoreError(f"token store error ({type(orig).__name__})")

"""Map driver errors to the core's: retryable conflicts versus everything else (SECURITY R4).

A PostgreSQL serialization failure (40001), deadlock (40P01) or lock timeout (55P03), a
SQLite "database is locked", or a dropped connection is retryable: the transaction was
rolled back and nothing happened, so it is never counted as reuse. Anything else is a
:class:`StoreError`.
"""

from __future__ import annotations

from tokensmith.errors import TemporarilyUnavailable
from tokensmith.store.records import StoreError

RETRYABLE_SQLSTATES = frozenset({"40001", "40P01", "55P03"})
# The server ended the session (pg_terminate_backend, shutdown): the connection is gone.
DISCONNECT_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "08000", "08003", "08006"})
_SQLITE_BUSY = ("database is locked", "database table is locked", "database is busy")


def translate(
    orig: BaseException | None, *, disconnect: bool
) -> StoreError | TemporarilyUnavailable:
    """The core error for a driver exception (``disconnect``: the connection is gone)."""
    if getattr(orig, "sqlstate", None) in RETRYABLE_SQLSTATES or disconnect:
        return TemporarilyUnavailable("the token store is busy; retry the request")
    if any(marker in str(orig).lower() for marker in _SQLITE_BUSY):
        return TemporarilyUnavailable("the token store is busy; retry the request")
    # The class name helps operators; the statement and parameters stay out of the message.
    return StoreError(f"token store error ({type(orig).__name__})")

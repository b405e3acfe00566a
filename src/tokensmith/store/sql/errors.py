"""Map driver errors to the core's: retryable conflicts versus everything else (SECURITY R4).

A PostgreSQL serialization failure (40001), deadlock (40P01) or lock timeout (55P03), a
SQLite "database is locked", or a dropped connection is retryable: the transaction was
rolled back and nothing happened, so it is never counted as reuse. Anything else is a
:class:`StoreError`.
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError

from tokensmith.errors import TemporarilyUnavailable
from tokensmith.store.records import StoreError

RETRYABLE_SQLSTATES = frozenset({"40001", "40P01", "55P03"})
_SQLITE_BUSY = ("database is locked", "database table is locked", "database is busy")


def translate(exc: DBAPIError) -> StoreError | TemporarilyUnavailable:
    orig = exc.orig
    if getattr(orig, "sqlstate", None) in RETRYABLE_SQLSTATES or exc.connection_invalidated:
        return TemporarilyUnavailable("the token store is busy; retry the request")
    if any(marker in str(orig).lower() for marker in _SQLITE_BUSY):
        return TemporarilyUnavailable("the token store is busy; retry the request")
    # The class name helps operators; the statement and parameters stay out of the message.
    return StoreError(f"token store error ({type(orig).__name__})")

"""Storage contracts for refresh tokens and revocation (the core side; no SQLAlchemy here).

Services depend on the Protocols in :mod:`tokensmith.store.protocols`; ``store/memory`` (the
reference) and ``store/sql`` implement them, and the contract suite runs the same tests over
every backend.
"""

from __future__ import annotations

from tokensmith.store.protocols import (
    AuditReader,
    RefreshStore,
    RefreshTransaction,
    Registries,
    RevocationSource,
)
from tokensmith.store.records import (
    FamilyRecord,
    FamilySummary,
    NewToken,
    Pending,
    Revocation,
    RevocationSnapshot,
    StoreError,
    TokenRecord,
)

__all__ = [
    "AuditReader",
    "FamilyRecord",
    "FamilySummary",
    "NewToken",
    "Pending",
    "RefreshStore",
    "RefreshTransaction",
    "Registries",
    "Revocation",
    "RevocationSnapshot",
    "RevocationSource",
    "StoreError",
    "TokenRecord",
]

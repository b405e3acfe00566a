"""Storage contracts for refresh tokens and revocation (the core side; no SQLAlchemy here).

Services depend on the Protocols in :mod:`tokensmith.store.protocols`; ``store/sql`` is one
implementation of them, and the contract suite runs the same tests over every backend.
"""

from __future__ import annotations

from tokensmith.store.protocols import (
    RefreshStore,
    RefreshTransaction,
    RevocationSource,
    UnitOfWork,
)
from tokensmith.store.records import (
    FamilyRecord,
    NewToken,
    RevocationSnapshot,
    StoreError,
    TokenRecord,
)

__all__ = [
    "FamilyRecord",
    "NewToken",
    "RefreshStore",
    "RefreshTransaction",
    "RevocationSnapshot",
    "RevocationSource",
    "StoreError",
    "TokenRecord",
    "UnitOfWork",
]

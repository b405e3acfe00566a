"""tokensmith: JWT issuance, key rotation and refresh-token rotation for SPAs and APIs.

One import line is enough for most users::

    from tokensmith import Tokensmith, Settings
"""

from __future__ import annotations

from tokensmith.clock import Clock, ManualClock, SystemClock
from tokensmith.errors import (
    CommitInDoubt,
    ConfigError,
    InvalidClient,
    InvalidGrant,
    InvalidKey,
    InvalidRequest,
    InvalidScope,
    InvalidToken,
    KeyStoreError,
    RefreshTokenReused,
    StoreError,
    TemporarilyUnavailable,
    TokenExpired,
    TokensmithError,
)
from tokensmith.events import Event, EventBus
from tokensmith.facade import TokenResponse, Tokensmith
from tokensmith.keys import Signer
from tokensmith.settings import ClientLifetimes, Settings
from tokensmith.tokens.claims import ClaimsRequest

__version__ = "0.1.0"

__all__ = [
    "ClaimsRequest",
    "ClientLifetimes",
    "Clock",
    "CommitInDoubt",
    "ConfigError",
    "Event",
    "EventBus",
    "InvalidClient",
    "InvalidGrant",
    "InvalidKey",
    "InvalidRequest",
    "InvalidScope",
    "InvalidToken",
    "KeyStoreError",
    "ManualClock",
    "RefreshTokenReused",
    "Settings",
    "Signer",
    "StoreError",
    "SystemClock",
    "TemporarilyUnavailable",
    "TokenExpired",
    "TokenResponse",
    "Tokensmith",
    "TokensmithError",
    "__version__",
]

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
    InvalidDPoPProof,
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
    UseDPoPNonce,
)
from tokensmith.events import Event, EventBus
from tokensmith.facade import TokenResponse, Tokensmith
from tokensmith.keys import Signer
from tokensmith.settings import ClientLifetimes, Settings
from tokensmith.tokens.claims import ClaimsRequest

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # Lazily: the resource-server side needs httpx and tokensmith.http (Starlette), which
    # ``import tokensmith`` does not load (tests/test_portability.py).
    if name == "RemoteRevocations":
        from tokensmith.http.remote_revocations import RemoteRevocations

        return RemoteRevocations
    raise AttributeError(f"module 'tokensmith' has no attribute {name!r}")


__all__ = [
    "ClaimsRequest",
    "ClientLifetimes",
    "Clock",
    "CommitInDoubt",
    "ConfigError",
    "Event",
    "EventBus",
    "InvalidClient",
    "InvalidDPoPProof",
    "InvalidGrant",
    "InvalidKey",
    "InvalidRequest",
    "InvalidScope",
    "InvalidToken",
    "KeyStoreError",
    "ManualClock",
    "RefreshTokenReused",
    "RemoteRevocations",
    "Settings",
    "Signer",
    "StoreError",
    "SystemClock",
    "TemporarilyUnavailable",
    "TokenExpired",
    "TokenResponse",
    "Tokensmith",
    "TokensmithError",
    "UseDPoPNonce",
    "__version__",
]

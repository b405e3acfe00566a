"""Where the grace-retry derivation secret comes from (SECURITY B1; docs/contract.md "Refresh store
semantics": "The derivation secret never lives in the database").

The secret keys the HMAC that re-derives a grace retry's child
(:func:`tokensmith.refresh.opaque.derive_child`); anyone holding it and a row's salt computes
that child. So it lives with the signing keys (the file key store's ``refresh-secret``, the
SQL key store's sealed column, a KMS-backed store) or comes from
``TOKENSMITH_REFRESH_SECRET``, and the refresh core only sees this protocol.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class SecretSource(Protocol):
    def refresh_secret(self) -> bytes:
        """The secret shared by every process of this deployment, created on first use and
        the same on every call."""
        ...

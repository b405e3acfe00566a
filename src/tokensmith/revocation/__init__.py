"""Access-token revocation: jti denylist, revoked families, per-subject not-before."""

from __future__ import annotations

from tokensmith.revocation.cache import RevocationCache

__all__ = ["RevocationCache"]

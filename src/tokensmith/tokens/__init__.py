"""JWT minting and strict verification."""

from __future__ import annotations

from tokensmith.tokens.mint import (
    AccessTokenClaims,
    IdTokenClaims,
    at_hash,
    mint_access_token,
    mint_id_token,
    new_jti,
)
from tokensmith.tokens.verify import AccessTokenVerifier, IdTokenVerifier

__all__ = [
    "AccessTokenClaims",
    "AccessTokenVerifier",
    "IdTokenClaims",
    "IdTokenVerifier",
    "at_hash",
    "mint_access_token",
    "mint_id_token",
    "new_jti",
]

"""DPoP, RFC 9449: proofs of possession that make tokens useless without the client's key.

:class:`ProofVerifier` checks a proof (usable on its own); :class:`Nonces` are the
stateless server nonces; :mod:`tokensmith.dpop.replay` keeps ``jti`` values. The facade
(``Tokensmith.dpop``), the token endpoint and the resource-server guard use these.
"""

from tokensmith.dpop.htu import normalize_htu
from tokensmith.dpop.nonce import NONCE_STEP, Nonces
from tokensmith.dpop.proof import (
    DEFAULT_DPOP_ALGS,
    Proof,
    ProofVerifier,
    access_token_hash,
)
from tokensmith.dpop.replay import ProofLedger, ReplayCache

__all__ = [
    "DEFAULT_DPOP_ALGS",
    "NONCE_STEP",
    "Nonces",
    "Proof",
    "ProofLedger",
    "ProofVerifier",
    "ReplayCache",
    "access_token_hash",
    "normalize_htu",
]

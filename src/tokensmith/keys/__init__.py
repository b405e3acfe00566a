"""Signing keys: algorithms, JWKs and thumbprints, stores, and the rotation lifecycle."""

from __future__ import annotations

from tokensmith.keys.algorithms import ALGORITHMS, AlgorithmSpec, generate_private_key
from tokensmith.keys.jwk import public_jwk, thumbprint
from tokensmith.keys.lifecycle import KeyManager, VerificationKey
from tokensmith.keys.records import KeyRecord
from tokensmith.keys.signer import LocalSigner, Signer
from tokensmith.keys.store import FileKeyStore, KeyStore

__all__ = [
    "ALGORITHMS",
    "AlgorithmSpec",
    "FileKeyStore",
    "KeyManager",
    "KeyRecord",
    "KeyStore",
    "LocalSigner",
    "Signer",
    "VerificationKey",
    "generate_private_key",
    "public_jwk",
    "thumbprint",
]

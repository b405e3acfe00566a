"""The JWS algorithms tokensmith signs and verifies with, and what each needs of a key.

Signature maths is PyJWT's algorithm objects (on ``cryptography``); this table binds each
algorithm to exactly one key type (RFC 8725 §3.1). There is no HMAC and no ``none`` here,
so no spelling of either can ever select a verifier.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import Algorithm, ECAlgorithm, OKPAlgorithm, RSAAlgorithm, RSAPSSAlgorithm

from tokensmith.errors import ConfigError

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey

MIN_RSA_BITS = 2048
RSA_BITS = 3072  # NIST SP 800-57: 128-bit security through 2030 and beyond


@dataclass(frozen=True)
class AlgorithmSpec:
    name: str
    kty: str
    crv: str | None
    jws: Algorithm
    # OIDC Core §3.1.3.6: at_hash uses the hash of the JWS alg; for EdDSA/Ed25519 SHA-512.
    at_hash: Callable[[bytes], Any]
    signature_length: int | None  # fixed for EC (R||S) and Ed25519, None for RSA
    generate: Callable[[], PrivateKey]

    def key_matches(self, key: PublicKey | PrivateKey) -> bool:
        if self.kty == "EC":
            return (
                isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey)
                and key.curve.name == _EC_CURVES[self.crv or ""].name
            )
        if self.kty == "OKP":
            return isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey)
        return (
            isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey) and key.key_size >= MIN_RSA_BITS
        )


_EC_CURVES: dict[str, ec.EllipticCurve] = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1()}


def _rsa() -> PrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)


ALGORITHMS: dict[str, AlgorithmSpec] = {
    "ES256": AlgorithmSpec(
        "ES256",
        "EC",
        "P-256",
        ECAlgorithm(ECAlgorithm.SHA256),
        hashlib.sha256,
        64,
        lambda: ec.generate_private_key(ec.SECP256R1()),
    ),
    "ES384": AlgorithmSpec(
        "ES384",
        "EC",
        "P-384",
        ECAlgorithm(ECAlgorithm.SHA384),
        hashlib.sha384,
        96,
        lambda: ec.generate_private_key(ec.SECP384R1()),
    ),
    "EdDSA": AlgorithmSpec(
        "EdDSA",
        "OKP",
        "Ed25519",
        OKPAlgorithm(),
        hashlib.sha512,
        64,
        ed25519.Ed25519PrivateKey.generate,
    ),
    "RS256": AlgorithmSpec(
        "RS256",
        "RSA",
        None,
        RSAAlgorithm(RSAAlgorithm.SHA256),
        hashlib.sha256,
        None,
        _rsa,
    ),
    "PS256": AlgorithmSpec(
        "PS256",
        "RSA",
        None,
        RSAPSSAlgorithm(RSAPSSAlgorithm.SHA256),
        hashlib.sha256,
        None,
        _rsa,
    ),
}
# RFC 9864 "Ed25519" is the fully specified name of what JWS calls EdDSA with that curve.
ALGORITHMS["Ed25519"] = ALGORITHMS["EdDSA"]


def spec_for(alg: str) -> AlgorithmSpec:
    try:
        return ALGORITHMS[alg]
    except KeyError:
        raise ConfigError(f"unsupported signing algorithm {alg!r}") from None


def generate_private_key(alg: str) -> PrivateKey:
    return spec_for(alg).generate()

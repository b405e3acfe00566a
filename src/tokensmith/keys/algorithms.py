"""The JWS algorithms tokensmith signs and verifies with, and what each needs of a key.

Signature maths is ``cryptography``'s, through PyJWT's algorithm objects; this table binds
each algorithm to exactly one key type (RFC 8725 §3.1). There is no HMAC and no ``none`` here,
so no spelling of either can ever select a verifier.

The ECDSA and RSA objects below are PyJWT's classes with ``sign``/``verify`` trimmed to what
they do per call once the padding and hash objects are built in advance: PyJWT builds an
``ECDSA(SHA256())`` or ``PSS(MGF1(...))`` per signature and converts R||S through hex strings,
3-5 µs per token on top of a 30-60 µs ECDSA operation. Results and failures are PyJWT's:
R||S of exactly twice the curve's byte length, DER in between, ``False`` on a bad signature.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from jwt.algorithms import Algorithm, ECAlgorithm, OKPAlgorithm, RSAAlgorithm

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


class _ECDSA(ECAlgorithm):
    """PyJWT's ``ECAlgorithm`` with a prebuilt ``ECDSA`` object and integer R||S conversion."""

    def __init__(self, hash_alg: type[hashes.HashAlgorithm]) -> None:
        super().__init__(hash_alg)
        self._ecdsa = ec.ECDSA(hash_alg())

    def sign(self, msg: bytes, key: ec.EllipticCurvePrivateKey) -> bytes:
        r, s = decode_dss_signature(key.sign(msg, self._ecdsa))
        size = (key.curve.key_size + 7) // 8
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")  # RFC 7518 §3.4

    def verify(
        self, msg: bytes, key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey, sig: bytes
    ) -> bool:
        size = (key.curve.key_size + 7) // 8
        if len(sig) != 2 * size:
            return False
        der = encode_dss_signature(
            int.from_bytes(sig[:size], "big"), int.from_bytes(sig[size:], "big")
        )
        public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
        try:
            public.verify(der, msg, self._ecdsa)
        except InvalidSignature:
            return False
        return True


class _RSA(RSAAlgorithm):
    """PyJWT's RSA algorithms with prebuilt padding and hash objects: PKCS #1 v1.5 (RS256)
    or, with ``pss``, RSASSA-PSS with MGF1 of the same hash and a digest-long salt (PS256,
    RFC 7518 §3.5)."""

    def __init__(self, hash_alg: type[hashes.HashAlgorithm], *, pss: bool = False) -> None:
        super().__init__(hash_alg)
        self._hash = hash_alg()
        self._padding: padding.AsymmetricPadding = (
            padding.PSS(mgf=padding.MGF1(hash_alg()), salt_length=self._hash.digest_size)
            if pss
            else padding.PKCS1v15()
        )

    def sign(self, msg: bytes, key: rsa.RSAPrivateKey) -> bytes:
        return key.sign(msg, self._padding, self._hash)

    def verify(self, msg: bytes, key: rsa.RSAPublicKey, sig: bytes) -> bool:
        try:
            key.verify(sig, msg, self._padding, self._hash)
        except InvalidSignature:
            return False
        return True


def _rsa() -> PrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)


ALGORITHMS: dict[str, AlgorithmSpec] = {
    "ES256": AlgorithmSpec(
        "ES256",
        "EC",
        "P-256",
        _ECDSA(ECAlgorithm.SHA256),
        hashlib.sha256,
        64,
        lambda: ec.generate_private_key(ec.SECP256R1()),
    ),
    "ES384": AlgorithmSpec(
        "ES384",
        "EC",
        "P-384",
        _ECDSA(ECAlgorithm.SHA384),
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
        _RSA(RSAAlgorithm.SHA256),
        hashlib.sha256,
        None,
        _rsa,
    ),
    "PS256": AlgorithmSpec(
        "PS256",
        "RSA",
        None,
        _RSA(RSAAlgorithm.SHA256, pss=True),
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

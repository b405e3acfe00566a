"""Public JWKs (RFC 7517/7518/8037) and RFC 7638 thumbprints, the ``kid`` of every key."""

from __future__ import annotations

import base64
import hashlib
import json

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tokensmith.keys.algorithms import PublicKey

# RFC 7638 §3.2: the required members of each key type, which alone enter the thumbprint.
_REQUIRED = {"EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x"), "RSA": ("e", "kty", "n")}
_CURVE_NAMES = {"secp256r1": "P-256", "secp384r1": "P-384"}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _int_b64(value: int, length: int | None = None) -> str:
    size = length if length is not None else max(1, (value.bit_length() + 7) // 8)
    return b64url(value.to_bytes(size, "big"))


def public_members(key: PublicKey) -> dict[str, str]:
    """The RFC 7638 required members of ``key`` (what the thumbprint hashes)."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        numbers = key.public_numbers()
        size = (key.curve.key_size + 7) // 8
        return {
            "crv": _CURVE_NAMES[key.curve.name],
            "kty": "EC",
            "x": _int_b64(numbers.x, size),
            "y": _int_b64(numbers.y, size),
        }
    if isinstance(key, ed25519.Ed25519PublicKey):
        raw = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        return {"crv": "Ed25519", "kty": "OKP", "x": b64url(raw)}
    if isinstance(key, rsa.RSAPublicKey):
        rsa_numbers = key.public_numbers()
        return {"e": _int_b64(rsa_numbers.e), "kty": "RSA", "n": _int_b64(rsa_numbers.n)}
    raise TypeError(f"unsupported key type {type(key).__name__}")


def thumbprint(members: dict[str, str]) -> str:
    """RFC 7638 §3: SHA-256 over the required members, sorted, with no whitespace."""
    required = {name: members[name] for name in _REQUIRED[members["kty"]]}
    canonical = json.dumps(required, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


def public_jwk(key: PublicKey, alg: str) -> dict[str, str]:
    """The JWK a JWKS publishes: public members only, ``use: sig``, the alg it is bound to."""
    members = public_members(key)
    return {**members, "kid": thumbprint(members), "use": "sig", "alg": alg}

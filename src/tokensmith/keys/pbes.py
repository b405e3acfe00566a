"""Passphrase encryption of the file key store's files at a cost we choose (SECURITY B6).

Private keys stay PKCS#8 PEM (RFC 5958 §3 ``EncryptedPrivateKeyInfo``), encrypted with
PBES2 (RFC 8018 §6.2): PBKDF2-HMAC-SHA256 and AES-256-CBC. cryptography's
``BestAvailableEncryption`` writes that with 2,048 PBKDF2 iterations and has no knob for
PKCS#8, so the few DER structures are written here. Reading stays with cryptography
(OpenSSL), which takes the iteration count from the file: keys written at the old count
still load, and ``tokensmith keys reencrypt`` rewrites them at the current one.

The refresh secret (:mod:`tokensmith.refresh.secret`) is 32 raw bytes, not a key: its file
is JSON carrying the PBKDF2 parameters, sealed with AES-256-GCM (NIST SP 800-38D).
"""

from __future__ import annotations

import base64
import json
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from tokensmith.errors import ConfigError, KeyStoreError
from tokensmith.keys.algorithms import PrivateKey

# OWASP Password Storage Cheat Sheet: PBKDF2-HMAC-SHA256 needs at least 600,000 iterations
# (SECURITY B6). About 0.1 s here, paid once per key and process (KeyManager keeps keys).
PBKDF2_ITERATIONS = 600_000
SALT_BYTES = 16
_PEM_LABEL = b"ENCRYPTED PRIVATE KEY"
# DER encodings of the object identifiers RFC 8018 §A.2/§A.4/§B.1.2 name.
_OID_PBES2 = bytes.fromhex("06092a864886f70d01050d")
_OID_PBKDF2 = bytes.fromhex("06092a864886f70d01050c")
_OID_HMAC_SHA256 = bytes.fromhex("06082a864886f70d0209")
_OID_AES256_CBC = bytes.fromhex("060960864801650304012a")
_NULL = b"\x05\x00"
_SECRET_AAD = b"tokensmith refresh secret"
_SECRET_KDF = "pbkdf2-sha256"


def _der(tag: int, body: bytes) -> bytes:
    size = len(body)
    if size < 0x80:
        return bytes([tag, size]) + body
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + body


def _seq(*parts: bytes) -> bytes:
    return _der(0x30, b"".join(parts))


def _octets(value: bytes) -> bytes:
    return _der(0x04, value)


def _integer(value: int) -> bytes:
    return _der(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def _pbkdf2(passphrase: bytes, salt: bytes, iterations: int) -> bytes:
    return PBKDF2HMAC(hashes.SHA256(), 32, salt, iterations).derive(passphrase)


def encrypt_private_key(
    key: PrivateKey, passphrase: bytes, iterations: int = PBKDF2_ITERATIONS
) -> bytes:
    """``key`` as an encrypted PKCS#8 PEM (PBES2, PBKDF2-HMAC-SHA256, AES-256-CBC)."""
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    salt, iv = os.urandom(SALT_BYTES), os.urandom(16)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(der) + padder.finalize()
    cipher = Cipher(algorithms.AES(_pbkdf2(passphrase, salt, iterations)), modes.CBC(iv))
    encryptor = cipher.encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    kdf = _seq(
        _OID_PBKDF2, _seq(_octets(salt), _integer(iterations), _seq(_OID_HMAC_SHA256, _NULL))
    )
    scheme = _seq(_OID_PBES2, _seq(kdf, _seq(_OID_AES256_CBC, _octets(iv))))
    body = base64.encodebytes(_seq(scheme, _octets(ciphertext))).replace(b"\n", b"")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return b"\n".join(
        [b"-----BEGIN " + _PEM_LABEL + b"-----", *lines, b"-----END " + _PEM_LABEL + b"-----", b""]
    )


def is_encrypted_pem(pem: bytes) -> bool:
    return _PEM_LABEL in pem


def seal_secret(secret: bytes, passphrase: bytes | None) -> bytes:
    """The refresh-secret file's content: sealed under ``passphrase``, or plain without one
    (then the file's 0600 mode is its only protection, as for unencrypted keys)."""
    if passphrase is None:
        return _json({"version": 1, "secret": _b64(secret)})
    salt, nonce = os.urandom(SALT_BYTES), os.urandom(12)
    key = _pbkdf2(passphrase, salt, PBKDF2_ITERATIONS)
    ciphertext = AESGCM(key).encrypt(nonce, secret, _SECRET_AAD)
    fields = {"kdf": _SECRET_KDF, "iterations": PBKDF2_ITERATIONS, "salt": _b64(salt)}
    return _json({"version": 1, **fields, "nonce": _b64(nonce), "ciphertext": _b64(ciphertext)})


def secret_is_sealed(content: bytes) -> bool:
    return b'"ciphertext"' in content


def open_secret(content: bytes, passphrase: bytes | None) -> bytes:
    """The secret in a file written by :func:`seal_secret`, at the cost recorded there."""
    try:
        data = json.loads(content)
        if "secret" in data:
            return _unb64(data["secret"])
        if data["kdf"] != _SECRET_KDF:
            raise ValueError(data["kdf"])
        salt, nonce = _unb64(data["salt"]), _unb64(data["nonce"])
        sealed, iterations = _unb64(data["ciphertext"]), int(data["iterations"])
    except (ValueError, KeyError, TypeError) as exc:
        raise KeyStoreError(f"the refresh secret file is damaged: {exc}") from None
    if passphrase is None:
        raise ConfigError("the refresh secret is encrypted: set TOKENSMITH_KEY_PASSPHRASE")
    try:
        return AESGCM(_pbkdf2(passphrase, salt, iterations)).decrypt(nonce, sealed, _SECRET_AAD)
    except InvalidTag:
        raise ConfigError(
            "cannot open the refresh secret: wrong passphrase or damaged file"
        ) from None


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text)


def _json(value: dict[str, object]) -> bytes:
    return (json.dumps(value, indent=2) + "\n").encode("utf-8")

"""Private keys sealed at rest for stores that are not a private file (the SQL key store).

The sealing key is derived from ``TOKENSMITH_KEY_PASSPHRASE`` with scrypt (RFC 7914; r=8,
p=1, the cost ``n`` recorded next to the random per-store salt, so stores sealed at the old
n=2**15 still open); each private key (PKCS#8 DER) is sealed with AES-256-GCM under a
fresh 96-bit nonce (NIST SP 800-38D §8.2.2), with its ``kid`` as the associated data, so a
ciphertext copied onto another key's row does not open. The refresh secret is sealed the
same way under its own associated data. A fixed check value sealed the same way tells a
wrong passphrase apart from a damaged or moved key.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from tokensmith.errors import ConfigError, KeyStoreError
from tokensmith.keys.algorithms import PrivateKey

SALT_BYTES = 16
NONCE_BYTES = 12
# OWASP Password Storage Cheat Sheet: scrypt N >= 2**17 with r=8, p=1 (SECURITY B6). That
# is 128 MiB and ~0.4 s here, paid once per SqlKeyStore instance, never per request.
SCRYPT_N = 2**17
SCRYPT_R = 8
SCRYPT_P = 1
_CHECK_PLAINTEXT = b"tokensmith key store v1"
_CHECK_AAD = b"tokensmith passphrase check"
_SECRET_AAD = b"tokensmith refresh secret"


def new_salt() -> bytes:
    return os.urandom(SALT_BYTES)


def derive_key(passphrase: str, salt: bytes, n: int) -> bytes:
    """The 256-bit AES key for ``passphrase`` and the store's ``salt`` (slow by design)."""
    kdf = Scrypt(salt=salt, length=32, n=n, r=SCRYPT_R, p=SCRYPT_P)
    return kdf.derive(passphrase.encode("utf-8"))


def require_passphrase(passphrase: str | None) -> str:
    if not passphrase:
        raise ConfigError(
            "the SQL key store encrypts private keys at rest: set TOKENSMITH_KEY_PASSPHRASE"
        )
    return passphrase


class KeySealer:
    """Seals and opens private keys under one derived AES-256-GCM key."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    @classmethod
    def from_passphrase(cls, passphrase: str, salt: bytes, n: int) -> KeySealer:
        return cls(derive_key(passphrase, salt, n))

    def seal(self, kid: str, key: PrivateKey) -> tuple[bytes, bytes]:
        """``(nonce, ciphertext)`` of ``key`` as PKCS#8 DER, bound to ``kid``."""
        der = key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        nonce = os.urandom(NONCE_BYTES)
        return nonce, self._aead.encrypt(nonce, der, kid.encode("utf-8"))

    def open(self, kid: str, nonce: bytes, ciphertext: bytes) -> PrivateKey:
        try:
            der = self._aead.decrypt(nonce, ciphertext, kid.encode("utf-8"))
        except InvalidTag:
            # The passphrase was checked already: this row was altered or belongs elsewhere.
            raise KeyStoreError(
                f"private key {kid} does not decrypt: it is damaged or not this kid's key"
            ) from None
        return serialization.load_der_private_key(der, password=None)  # type: ignore[return-value]

    def seal_secret(self, secret: bytes) -> tuple[bytes, bytes]:
        """``(nonce, ciphertext)`` of the refresh secret (SECURITY B1)."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce, self._aead.encrypt(nonce, secret, _SECRET_AAD)

    def open_secret(self, nonce: bytes, ciphertext: bytes) -> bytes:
        try:
            return self._aead.decrypt(nonce, ciphertext, _SECRET_AAD)
        except InvalidTag:
            raise KeyStoreError("the refresh secret does not decrypt: it is damaged") from None

    def check_value(self) -> tuple[bytes, bytes]:
        """A sealed constant stored next to the salt: proves a later passphrase is the same."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce, self._aead.encrypt(nonce, _CHECK_PLAINTEXT, _CHECK_AAD)

    def verify_check_value(self, nonce: bytes, ciphertext: bytes) -> None:
        try:
            plaintext = self._aead.decrypt(nonce, ciphertext, _CHECK_AAD)
        except InvalidTag:
            plaintext = b""
        if plaintext != _CHECK_PLAINTEXT:
            raise ConfigError(
                "cannot open the SQL key store: wrong passphrase (TOKENSMITH_KEY_PASSPHRASE)"
            )

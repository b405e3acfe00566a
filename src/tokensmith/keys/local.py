"""The ``KeyStore`` half shared by stores that hold private keys themselves.

``FileKeyStore`` and ``SqlKeyStore`` keep each key's private half (PEM file or sealed row)
and sign in this process with a ``LocalSigner``; only how they save and load the key
differs. A store whose keys never leave a device (``keys/pkcs11.py``) implements
``create_key`` and ``signer`` itself.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from tokensmith.keys.algorithms import PrivateKey, spec_for
from tokensmith.keys.signer import LocalSigner, Signer


class LocalKeys(ABC):
    @abstractmethod
    def save_private_key(self, kid: str, key: PrivateKey) -> None: ...

    @abstractmethod
    def load_private_key(self, kid: str) -> PrivateKey: ...

    def create_key(self, alg: str) -> Signer:
        """A new key for ``alg``, saved under its RFC 7638 thumbprint; its signer is
        handed back so the caller never loads (and decrypts) what it just made."""
        signer = LocalSigner.from_key(spec_for(alg).generate(), alg)
        self.save_private_key(signer.kid, signer.private_key)
        return signer

    def signer(self, kid: str, alg: str) -> Signer:
        return LocalSigner(self.load_private_key(kid), alg, kid)

"""The ``Signer`` protocol: anything that can produce a JWS signature for one key.

The local implementation holds a ``cryptography`` private key; a KMS- or HSM-held key
implements the same four members and never exposes private material.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from tokensmith.keys.algorithms import AlgorithmSpec, PrivateKey, PublicKey, spec_for
from tokensmith.keys.jwk import public_jwk


class Signer(Protocol):
    @property
    def kid(self) -> str: ...

    @property
    def alg(self) -> str: ...

    def public_key(self) -> PublicKey: ...

    def sign(self, signing_input: bytes) -> bytes:
        """The raw JWS signature (R||S for ECDSA, RFC 7518 §3.4) over ``signing_input``."""
        ...


@dataclass(frozen=True)
class LocalSigner:
    private_key: PrivateKey = field(repr=False)
    alg: str
    kid: str
    _spec: AlgorithmSpec = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_spec", spec_for(self.alg))

    @classmethod
    def from_key(cls, private_key: PrivateKey, alg: str) -> LocalSigner:
        return cls(private_key, alg, public_jwk(private_key.public_key(), alg)["kid"])

    def public_key(self) -> PublicKey:
        return self.private_key.public_key()

    def sign(self, signing_input: bytes) -> bytes:
        return self._spec.jws.sign(signing_input, self.private_key)

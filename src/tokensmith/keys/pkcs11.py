"""A key store whose private keys are made in a PKCS#11 token and never leave it.

Each key is a key pair generated on the token (``CKA_TOKEN``, ``CKA_SENSITIVE``, not
``CKA_EXTRACTABLE``; PKCS#11 v2.40 §4.9), both halves labelled and ID'd by the key's
``kid``, the RFC 7638 thumbprint of its public half. The lifecycle records (pending,
active, retired and their times) are metadata only and live in ``keys_dir/keys.json``,
under the file store's lock (``keys/store.py``), so every process on the machine sees the
same active key; no key material is ever written there.

Signatures come from the token in the form JWS wants (RFC 7518 §3): ``CKM_ECDSA`` over a
digest computed here gives R||S already (PKCS#11 v2.40 §2.3.1), ``CKM_SHA256_RSA_PKCS`` is
RS256, ``CKM_SHA256_RSA_PKCS_PSS`` with MGF1-SHA256 and a 32-byte salt is PS256, and
``CKM_EDDSA`` (PKCS#11 v3.0 §2.3.14) is EdDSA where the module offers it.

``python-pkcs11`` (``tokensmith[pkcs11]``) is imported only when a store is opened.
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tokensmith.errors import ConfigError, KeyStoreError
from tokensmith.keys.algorithms import RSA_BITS, PublicKey, spec_for
from tokensmith.keys.jwk import public_jwk
from tokensmith.keys.records import KeyRecord
from tokensmith.keys.signer import Signer
from tokensmith.keys.store import FileKeyStore, Mutation

if TYPE_CHECKING:
    import pkcs11
    from pkcs11 import Mechanism

    from tokensmith.settings import Settings

# A key pair between generation and being named by its kid (a crash leaves it so labelled).
_UNNAMED = "tokensmith-unnamed"


@dataclass(frozen=True)
class _Scheme:
    """How one JWS algorithm is made and signed on a token."""

    key_type: Any  # pkcs11.KeyType
    generate: Mechanism
    sign: Mechanism
    key_length: int | None = None
    curve: str | None = None  # named curve of CKA_EC_PARAMS
    param: Any = None  # the signing mechanism's parameter
    prehash: Callable[[bytes], bytes] | None = None  # CKM_ECDSA signs a digest


@functools.cache
def _schemes() -> dict[str, _Scheme]:
    from pkcs11 import MGF, KeyType, Mechanism

    def ecdsa(curve: str, digest: Callable[[bytes], Any]) -> _Scheme:
        return _Scheme(
            KeyType.EC,
            Mechanism.EC_KEY_PAIR_GEN,
            Mechanism.ECDSA,
            curve=curve,
            prehash=lambda data: digest(data).digest(),
        )

    def rsa(sign: Mechanism, param: object = None) -> _Scheme:
        generate = Mechanism.RSA_PKCS_KEY_PAIR_GEN
        return _Scheme(KeyType.RSA, generate, sign, key_length=RSA_BITS, param=param)

    return {
        "ES256": ecdsa("secp256r1", hashlib.sha256),
        "ES384": ecdsa("secp384r1", hashlib.sha384),
        # RFC 8410 OID of Ed25519 (PKCS#11 v3.0 §2.3.5 allows it as CKA_EC_PARAMS).
        "EdDSA": _Scheme(
            KeyType.EC_EDWARDS,
            Mechanism.EC_EDWARDS_KEY_PAIR_GEN,
            Mechanism.EDDSA,
            curve="1.3.101.112",
        ),
        "RS256": rsa(Mechanism.SHA256_RSA_PKCS),
        "PS256": rsa(Mechanism.SHA256_RSA_PKCS_PSS, (Mechanism.SHA256, MGF.SHA256, 32)),
    }


@dataclass(frozen=True)
class Pkcs11Signer:
    """A ``Signer`` over a token-held private key; ``sign`` runs on the token."""

    kid: str
    alg: str
    _public: PublicKey = field(repr=False)
    _key: pkcs11.SignMixin = field(repr=False)
    _scheme: _Scheme = field(repr=False)
    _session_lock: threading.Lock = field(repr=False, compare=False)

    def public_key(self) -> PublicKey:
        return self._public

    def sign(self, signing_input: bytes) -> bytes:
        from pkcs11 import PKCS11Error

        scheme = self._scheme
        data = scheme.prehash(signing_input) if scheme.prehash else signing_input
        try:
            # A PKCS#11 session serves one thread at a time (PKCS#11 v2.40 §5.6).
            with self._session_lock:
                signature: bytes = self._key.sign(
                    data, mechanism=scheme.sign, mechanism_param=scheme.param
                )
        except PKCS11Error as exc:
            raise KeyStoreError(f"the token failed to sign with {self.kid}: {exc!r}") from exc
        return signature


class Pkcs11KeyStore:
    """A ``KeyStore``: keys in the token labelled ``token_label`` of the PKCS#11 library
    ``module``, lifecycle records in ``keys_dir``. Opening it logs in (a ``ConfigError``
    for a missing library, token or wrong PIN); one session serves the process."""

    def __init__(
        self, module: str, token_label: str, pin: str, keys_dir: str | os.PathLike[str]
    ) -> None:
        try:
            import pkcs11
        except ImportError:
            raise ConfigError(
                "key_store 'pkcs11' needs python-pkcs11: install tokensmith[pkcs11]"
            ) from None
        self._records = FileKeyStore(keys_dir)
        self._lock = threading.Lock()
        try:
            token = pkcs11.lib(module).get_token(token_label=token_label)
        except pkcs11.NoSuchToken:
            raise ConfigError(f"no PKCS#11 token labelled {token_label!r} in {module}") from None
        except pkcs11.PKCS11Error as exc:
            raise ConfigError(f"cannot load the PKCS#11 module {module}: {exc}") from None
        self._session = _login(token, pin)
        self._token_label = token_label
        self._mechanisms = frozenset(token.slot.get_mechanisms())

    # -- records: metadata only, in keys.json ---------------------------------------------
    def read(self) -> tuple[list[KeyRecord], object]:
        return self._records.read()

    def version(self) -> object:
        return self._records.version()

    def update(self, mutate: Mutation) -> list[KeyRecord]:
        return self._records.update(mutate)

    # -- keys: in the token ---------------------------------------------------------------
    def supports(self, alg: str) -> bool:
        """Whether the token offers the mechanisms to make and sign with ``alg`` keys."""
        scheme = _schemes()[spec_for(alg).name]
        return {scheme.generate, scheme.sign} <= self._mechanisms

    def create_key(self, alg: str) -> Signer:
        from pkcs11 import Attribute, MechanismFlag

        scheme = self._scheme(alg)
        public_template: dict[Attribute, Any] = {}
        if scheme.curve is not None:
            from pkcs11.util.ec import encode_named_curve_parameters

            public_template[Attribute.EC_PARAMS] = encode_named_curve_parameters(scheme.curve)
        never_exported = {
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False,
            Attribute.PRIVATE: True,
        }
        with self._lock:
            public, private = self._session.generate_keypair(
                scheme.key_type,
                scheme.key_length,
                label=_UNNAMED,
                store=True,
                capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
                mechanism=scheme.generate,
                public_template=public_template,
                private_template=never_exported,
            )
            public_key = _public_key(public, alg)
            kid = public_jwk(public_key, alg)["kid"]
            for half in (public, private):
                half[Attribute.LABEL] = kid
                half[Attribute.ID] = kid.encode("ascii")
        signing = cast("pkcs11.SignMixin", private)
        return Pkcs11Signer(kid, alg, public_key, signing, scheme, self._lock)

    def signer(self, kid: str, alg: str) -> Signer:
        from pkcs11 import ObjectClass, PKCS11Error

        scheme = self._scheme(alg)
        try:
            with self._lock:
                private = self._session.get_key(ObjectClass.PRIVATE_KEY, id=kid.encode("ascii"))
                public = self._session.get_key(ObjectClass.PUBLIC_KEY, id=kid.encode("ascii"))
                public_key = _public_key(cast("pkcs11.PublicKey", public), alg)
        except PKCS11Error as exc:
            raise KeyStoreError(
                f"key {kid} is not usable in PKCS#11 token {self._token_label!r}: {exc!r}"
            ) from None
        if public_jwk(public_key, alg)["kid"] != kid:
            raise KeyStoreError(f"the token's key {kid} is not the key of that thumbprint")
        signing = cast("pkcs11.SignMixin", private)
        return Pkcs11Signer(kid, alg, public_key, signing, scheme, self._lock)

    def delete_key(self, kid: str) -> None:
        """Destroy both halves on the token (C_DestroyObject)."""
        from pkcs11 import Attribute

        with self._lock:
            for obj in list(self._session.get_objects({Attribute.ID: kid.encode("ascii")})):
                obj.destroy()

    def _scheme(self, alg: str) -> _Scheme:
        if not self.supports(alg):
            raise ConfigError(
                f"PKCS#11 token {self._token_label!r} does not offer the mechanisms for {alg}"
            )
        return _schemes()[spec_for(alg).name]


def _login(token: pkcs11.Token, pin: str) -> pkcs11.Session:
    import pkcs11

    try:
        return token.open(rw=True, user_pin=pin)
    except pkcs11.UserAlreadyLoggedIn:
        # Login is per process and token (PKCS#11 v2.40 §5.6): another store in this
        # process logged in already, and every new session shares it.
        return token.open(rw=True)
    except (pkcs11.PinIncorrect, pkcs11.PinInvalid, pkcs11.PinLenRange):
        raise ConfigError(f"PKCS#11 login to token {token.label!r} failed: wrong PIN") from None
    except pkcs11.PinLocked:
        raise ConfigError(f"PKCS#11 token {token.label!r}: the user PIN is locked") from None
    except pkcs11.PKCS11Error as exc:
        raise ConfigError(f"PKCS#11 login to token {token.label!r} failed: {exc!r}") from None


def _public_key(obj: pkcs11.PublicKey, alg: str) -> PublicKey:
    """The token's public key object as a ``cryptography`` key."""
    from pkcs11 import Attribute

    spec = spec_for(alg)
    if spec.kty == "RSA":
        e = int.from_bytes(obj[Attribute.PUBLIC_EXPONENT], "big")
        n = int.from_bytes(obj[Attribute.MODULUS], "big")
        return rsa.RSAPublicNumbers(e, n).public_key()
    point: bytes = obj[Attribute.EC_POINT]
    if spec.kty == "OKP":
        return ed25519.Ed25519PublicKey.from_public_bytes(_octets(point, 32))
    curve = ec.SECP256R1() if spec.crv == "P-256" else ec.SECP384R1()
    size = 1 + 2 * ((curve.key_size + 7) // 8)
    return ec.EllipticCurvePublicKey.from_encoded_point(curve, _octets(point, size))


def _octets(value: bytes, size: int) -> bytes:
    """CKA_EC_POINT is a DER OCTET STRING (PKCS#11 v2.40 §2.3.3); some modules give the
    bare point. Every size here is below 128, so the DER length is one byte."""
    if len(value) == size:
        return value
    if len(value) == size + 2 and value[0] == 0x04 and value[1] == size:
        return value[2:]
    raise KeyStoreError("the token returned a public key point of an unexpected size")


def open_pkcs11_key_store(settings: Settings) -> Pkcs11KeyStore:
    """The store ``key_store = "pkcs11"`` selects; the PIN comes from the settings or,
    with ``pkcs11_pin_file``, from that file's first line."""
    pin = settings.pkcs11_pin
    if settings.pkcs11_pin_file is not None:
        try:
            pin = Path(settings.pkcs11_pin_file).read_text("utf-8").splitlines()[0]
        except (OSError, UnicodeDecodeError, IndexError):
            raise ConfigError(
                f"cannot read the PKCS#11 PIN from {settings.pkcs11_pin_file}"
            ) from None
    # Settings.__post_init__ has checked that these are set.
    assert settings.pkcs11_module and settings.pkcs11_token_label and pin is not None
    return Pkcs11KeyStore(
        settings.pkcs11_module, settings.pkcs11_token_label, pin, settings.keys_dir
    )

"""Where key material and lifecycle metadata live.

``KeyStore`` is the protocol the lifecycle depends on: lifecycle records, and keys it makes
and hands out as ``Signer``s, so the lifecycle never holds a private key (a PKCS#11 token's
never leave it, ``keys/pkcs11.py``). ``FileKeyStore`` is the default:
one PKCS#8 PEM file per key (mode 0600, encrypted when a passphrase is set) and a
``keys.json`` with the lifecycle records. Every change runs under an exclusive ``flock``
and replaces ``keys.json`` atomically, so two processes rotating at once serialise.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives import serialization

from tokensmith.errors import ConfigError, KeyStoreError
from tokensmith.keys.algorithms import PrivateKey
from tokensmith.keys.local import LocalKeys
from tokensmith.keys.records import KeyRecord
from tokensmith.keys.signer import Signer

logger = logging.getLogger("tokensmith.keys")

Mutation = Callable[[list[KeyRecord]], list[KeyRecord]]
# A kid is an RFC 7638 thumbprint: 43 base64url characters. Anything else never names a file.
_KID = re.compile(r"[A-Za-z0-9_-]{43}")


class KeyStore(Protocol):
    def read(self) -> tuple[list[KeyRecord], object]:
        """The records and a version marker that changes whenever they change."""
        ...

    def version(self) -> object: ...

    def update(self, mutate: Mutation) -> list[KeyRecord]:
        """Run ``mutate`` on the current records under an exclusive lock and save the result."""
        ...

    def create_key(self, alg: str) -> Signer:
        """Make a key for ``alg`` where this store keeps keys; its ``kid`` is the RFC 7638
        thumbprint of its public key."""
        ...

    def signer(self, kid: str, alg: str) -> Signer:
        """The signer of a key made by ``create_key`` (its public key included)."""
        ...

    def delete_key(self, kid: str) -> None:
        """Destroy the key's private half; a missing key is not an error."""
        ...


class FileKeyStore(LocalKeys):
    def __init__(self, directory: str | os.PathLike[str], passphrase: str | None = None) -> None:
        self.directory = Path(directory)
        self._passphrase = passphrase.encode("utf-8") if passphrase else None
        self._meta = self.directory / "keys.json"
        self._lock_path = self.directory / ".lock"

    # -- metadata -------------------------------------------------------------------------
    def version(self) -> object:
        try:
            st = self._meta.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def read(self) -> tuple[list[KeyRecord], object]:
        version = self.version()
        if version is None:
            return [], None
        try:
            data = json.loads(self._meta.read_text("utf-8"))
            records = [KeyRecord.from_json(item) for item in data["keys"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise KeyStoreError(f"cannot read {self._meta}: {exc}") from exc
        return records, version

    def update(self, mutate: Mutation) -> list[KeyRecord]:
        with self._locked():
            records, _ = self.read()
            new = mutate(list(records))
            if new != records:
                self._write_meta(new)
            return new

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self._ensure_dir()
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the flock

    def _write_meta(self, records: list[KeyRecord]) -> None:
        body = json.dumps({"version": 1, "keys": [r.to_json() for r in records]}, indent=2)
        tmp = self._meta.with_name(f".keys.json.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(body + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self._meta)

    def _ensure_dir(self) -> None:
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create keys directory {self.directory}: {exc}") from exc

    # -- private keys ---------------------------------------------------------------------
    def _pem_path(self, kid: str) -> Path:
        if not _KID.fullmatch(kid):
            raise KeyStoreError("malformed kid")
        return self.directory / f"{kid}.pem"

    def save_private_key(self, kid: str, key: PrivateKey) -> None:
        self._ensure_dir()
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(self._passphrase)
            if self._passphrase
            else serialization.NoEncryption()
        )
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )
        path = self._pem_path(kid)
        tmp = path.with_name(f".{kid}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    def load_private_key(self, kid: str) -> PrivateKey:
        path = self._pem_path(kid)
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise KeyStoreError(f"private key {kid} is missing from {self.directory}") from exc
        encrypted = b"ENCRYPTED PRIVATE KEY" in pem
        if encrypted and not self._passphrase:
            raise ConfigError(f"key {kid} is encrypted: set TOKENSMITH_KEY_PASSPHRASE")
        if not encrypted and self._passphrase:
            logger.warning("key %s is stored unencrypted although a passphrase is set", kid)
        try:
            key = serialization.load_pem_private_key(
                pem, password=self._passphrase if encrypted else None
            )
        except ValueError as exc:
            raise ConfigError(f"cannot load key {kid}: wrong passphrase or corrupt file") from exc
        return key  # type: ignore[return-value]

    def delete_key(self, kid: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._pem_path(kid).unlink()

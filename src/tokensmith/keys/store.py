"""Where key material and lifecycle metadata live.

``KeyStore`` is the protocol the lifecycle depends on: lifecycle records, and keys it makes
and hands out as ``Signer``s, so the lifecycle never holds a private key (a PKCS#11 token's
never leave it, ``keys/pkcs11.py``). ``FileKeyStore`` is the default: one PKCS#8 PEM file
per key (mode 0600, encrypted when a passphrase is set, see :mod:`tokensmith.keys.pbes`), a
``keys.json`` with the lifecycle records, and the ``refresh-secret`` for grace retries
(SECURITY B1: with the keys, never in the database). Every change runs under an exclusive
``flock`` and replaces its file atomically, so two processes rotating (or creating the
secret) at once serialise and agree.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives import serialization

from tokensmith.errors import ConfigError, KeyStoreError
from tokensmith.filelock import exclusive_lock
from tokensmith.keys import pbes
from tokensmith.keys.algorithms import PrivateKey
from tokensmith.keys.local import LocalKeys
from tokensmith.keys.records import KeyRecord
from tokensmith.keys.signer import Signer

logger = logging.getLogger("tokensmith.keys")

Mutation = Callable[[list[KeyRecord]], list[KeyRecord]]
# A kid is an RFC 7638 thumbprint: 43 base64url characters. Anything else never names a file.
_KID = re.compile(r"[A-Za-z0-9_-]{43}")
REFRESH_SECRET_FILE = "refresh-secret"
REFRESH_SECRET_BYTES = 32
Progress = Callable[[str], None]


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
        self._secret_path = self.directory / REFRESH_SECRET_FILE
        self._secret: bytes | None = None
        self._secret_lock = threading.Lock()

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
        with exclusive_lock(self._lock_path):
            yield

    def _write_meta(self, records: list[KeyRecord]) -> None:
        body = json.dumps({"version": 1, "keys": [r.to_json() for r in records]}, indent=2)
        self._replace(self._meta, (body + "\n").encode("utf-8"))

    @staticmethod
    def _replace(path: Path, content: bytes) -> None:
        """Write ``path`` atomically: a 0600 temporary file, fsynced, renamed over it."""
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

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
        self._replace(self._pem_path(kid), _pem(key, self._passphrase))

    def load_private_key(self, kid: str) -> PrivateKey:
        return self._load_pem(kid, self._passphrase)

    def _load_pem(self, kid: str, *passphrases: bytes | None) -> PrivateKey:
        """The key in ``kid``'s PEM, opened with the first of ``passphrases`` that fits."""
        path = self._pem_path(kid)
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise KeyStoreError(f"private key {kid} is missing from {self.directory}") from exc
        encrypted = pbes.is_encrypted_pem(pem)
        candidates = [p for p in passphrases if p] if encrypted else [None]
        if not candidates:
            raise ConfigError(f"key {kid} is encrypted: set TOKENSMITH_KEY_PASSPHRASE")
        if not encrypted and self._passphrase:
            logger.warning("key %s is stored unencrypted although a passphrase is set", kid)
        for password in candidates:
            try:
                return serialization.load_pem_private_key(pem, password=password)  # type: ignore[return-value]
            except ValueError:
                continue
        raise ConfigError(f"cannot load key {kid}: wrong passphrase or corrupt file")

    def delete_key(self, kid: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._pem_path(kid).unlink()

    # -- refresh secret -------------------------------------------------------------------
    def refresh_secret(self) -> bytes:
        """The grace-retry secret (:class:`tokensmith.refresh.secret.SecretSource`): read
        once per instance; the first process to need it creates it under the lock."""
        if self._secret is None:
            with self._secret_lock:
                if self._secret is None:
                    self._secret = self._read_or_create_secret(secrets.token_bytes)
        return self._secret

    def adopt_refresh_secret(self, secret: bytes) -> bool:
        """Keep ``secret`` (moved out of the database by migration 0005) unless this store
        has one already; true if it was kept."""
        with self._secret_lock:
            self._secret = self._read_or_create_secret(lambda _n: secret)
            return self._secret == secret

    def _read_or_create_secret(self, make: Callable[[int], bytes]) -> bytes:
        with contextlib.suppress(FileNotFoundError):
            return pbes.open_secret(self._secret_path.read_bytes(), self._passphrase)
        with self._locked():
            with contextlib.suppress(FileNotFoundError):
                return pbes.open_secret(self._secret_path.read_bytes(), self._passphrase)
            secret = make(REFRESH_SECRET_BYTES)
            self._replace(self._secret_path, pbes.seal_secret(secret, self._passphrase))
            return secret

    # -- re-encryption --------------------------------------------------------------------
    def reencrypt(self, new_passphrase: str | None, progress: Progress) -> int:
        """Rewrite every private key and the refresh secret at the current KDF cost
        (SECURITY B6), under ``new_passphrase`` when given. Each file is replaced
        atomically and a file already under the new passphrase still opens, so a run that
        stopped half-way can simply run again. Returns the number of files rewritten."""
        new = new_passphrase.encode("utf-8") if new_passphrase else self._passphrase
        if new is None:
            raise ConfigError("the keys are not encrypted: give a new passphrase to encrypt them")
        done = 0
        with self._locked():
            for path in sorted(self.directory.glob("*.pem")):
                key = self._load_pem(path.stem, self._passphrase, new)
                self._replace(path, _pem(key, new))
                done += 1
                progress(f"re-encrypted key {path.stem}")
            if self._secret_path.exists():
                content = self._secret_path.read_bytes()
                try:
                    secret = pbes.open_secret(content, self._passphrase)
                except ConfigError:
                    secret = pbes.open_secret(content, new)
                self._replace(self._secret_path, pbes.seal_secret(secret, new))
                done += 1
                progress(f"re-encrypted {REFRESH_SECRET_FILE}")
        self._passphrase = new
        return done


def _pem(key: PrivateKey, passphrase: bytes | None) -> bytes:
    if passphrase:
        return pbes.encrypt_private_key(key, passphrase)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )

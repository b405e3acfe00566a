"""SECURITY B6: key material at rest at current KDF strength (OWASP Password Storage Cheat
Sheet: PBKDF2-HMAC-SHA256 >= 600,000 iterations, scrypt N >= 2**17), with keys written at
the old cost still loading and ``tokensmith keys reencrypt`` bringing them up to date.
Everything here runs at the real cost.
"""

from __future__ import annotations

import base64
import re
import stat
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization

from tokensmith.cli import cli
from tokensmith.clock import ManualClock
from tokensmith.errors import ConfigError
from tokensmith.keys import FileKeyStore, generate_private_key, public_jwk
from tokensmith.keys.algorithms import PrivateKey

from .conftest import cli_env, make_keys

OLD, NEW = "old passphrase", "new passphrase"
# RFC 8018 §A.2 PBKDF2-params as DER: a 16-byte salt, then the iteration count.
_PBKDF2_PARAMS = re.compile(rb"\x04\x10.{16}\x02(?P<n>[\x01-\x04])", re.DOTALL)
_HMAC_SHA256 = bytes.fromhex("06082a864886f70d0209")


def _iterations(pem: bytes) -> int:
    der = base64.b64decode(b"".join(pem.strip().splitlines()[1:-1]))
    found = _PBKDF2_PARAMS.search(der)
    assert found is not None and _HMAC_SHA256 in der
    start = found.end()
    return int.from_bytes(der[start : start + found.group("n")[0]], "big")


def _legacy_key(store_dir: Path, passphrase: str) -> tuple[str, PrivateKey]:
    """A key as earlier versions wrote it: cryptography's PKCS#8 default, 2,048 iterations."""
    key = generate_private_key("ES256")
    kid = public_jwk(key.public_key(), "ES256")["kid"]
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase.encode()),
    )
    store_dir.mkdir(exist_ok=True)
    (store_dir / f"{kid}.pem").write_bytes(pem)
    return kid, key


def test_a_new_encrypted_key_file_uses_pbkdf2_sha256_with_600000_iterations(
    tmp_path: Path, clock: ManualClock
) -> None:
    km = make_keys(tmp_path / "keys", clock, key_passphrase=OLD)
    pems = list((tmp_path / "keys").glob("*.pem"))
    assert len(pems) == 2
    for pem in pems:
        assert _iterations(pem.read_bytes()) == 600_000
        assert serialization.load_pem_private_key(pem.read_bytes(), OLD.encode())
    assert km.signer() is not None


def test_a_key_at_the_old_cost_still_loads_and_reencrypt_brings_it_to_the_current_cost(
    tmp_path: Path,
) -> None:
    kid, key = _legacy_key(tmp_path, OLD)
    assert _iterations((tmp_path / f"{kid}.pem").read_bytes()) == 2_048
    store = FileKeyStore(tmp_path, OLD)
    assert store.load_private_key(kid).private_numbers() == key.private_numbers()  # type: ignore[union-attr]
    said: list[str] = []
    assert store.reencrypt(None, said.append) == 1
    assert said == [f"re-encrypted key {kid}"]
    assert _iterations((tmp_path / f"{kid}.pem").read_bytes()) == 600_000
    assert stat.S_IMODE((tmp_path / f"{kid}.pem").stat().st_mode) == 0o600
    assert FileKeyStore(tmp_path, OLD).load_private_key(kid).private_numbers() == (  # type: ignore[union-attr]
        key.private_numbers()  # type: ignore[union-attr]
    )


def test_the_refresh_secret_file_is_0600_sealed_under_the_passphrase_and_made_once(
    tmp_path: Path,
) -> None:
    found: list[bytes] = []
    threads = [
        threading.Thread(target=lambda: found.append(FileKeyStore(tmp_path, OLD).refresh_secret()))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(found) == 4 and len(set(found)) == 1 and len(found[0]) == 32
    path = tmp_path / "refresh-secret"
    content = path.read_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert b'"iterations": 600000' in content
    assert found[0] not in content and base64.urlsafe_b64encode(found[0]) not in content
    with pytest.raises(ConfigError, match="passphrase"):
        FileKeyStore(tmp_path, "wrong").refresh_secret()
    with pytest.raises(ConfigError, match="TOKENSMITH_KEY_PASSPHRASE"):
        FileKeyStore(tmp_path).refresh_secret()


def test_keys_reencrypt_changes_the_passphrase_of_every_key_and_the_refresh_secret(
    tmp_path: Path,
) -> None:
    env = {**cli_env(tmp_path), "TOKENSMITH_KEY_PASSPHRASE": OLD, "NEW_PW": NEW}
    runner = CliRunner()
    assert runner.invoke(cli, ["keys", "generate"], env=env).exit_code == 0
    keys_dir = tmp_path / "keys"
    secret = FileKeyStore(keys_dir, OLD).refresh_secret()
    kid, _ = _legacy_key(keys_dir, OLD)  # a stray old-cost key is rewritten too
    result = runner.invoke(cli, ["keys", "reencrypt", "--new-passphrase-env", "NEW_PW"], env=env)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert f"re-encrypted key {kid}" in lines and "re-encrypted refresh-secret" in lines
    assert lines[-1] == "done: 4 re-encrypted"
    assert NEW not in result.output
    reopened = FileKeyStore(keys_dir, NEW)
    assert reopened.refresh_secret() == secret
    for pem in keys_dir.glob("*.pem"):
        assert _iterations(pem.read_bytes()) == 600_000
        reopened.load_private_key(pem.stem)
        with pytest.raises(ConfigError, match="wrong passphrase"):
            FileKeyStore(keys_dir, OLD).load_private_key(pem.stem)


def test_keys_reencrypt_with_an_unset_variable_is_a_one_line_error(tmp_path: Path) -> None:
    env = {**cli_env(tmp_path), "TOKENSMITH_KEY_PASSPHRASE": OLD}
    result = CliRunner().invoke(cli, ["keys", "reencrypt", "--new-passphrase-env", "NOPE"], env=env)
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line.startswith("Error: ") and line.endswith("NOPE is not set or empty")

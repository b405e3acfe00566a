"""The PKCS#11 key store against a real SoftHSM2 token (issue #12 item 5).

Keys are made in the token and never leave it: tokens it signs verify with joserfc against
the JWKS, the lifecycle (rotate, retire, remove, revoke) destroys what it drops, processes
sharing the token and ``keys_dir`` agree on the active key, and ``keys_dir`` holds no key
material. Every test gets a fresh token; without softhsm2 installed they skip, saying so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pkcs11
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from joserfc import jwt as joserfc_jwt
from joserfc.jwk import KeySet
from pkcs11 import Attribute, ObjectClass

from tokensmith import Tokensmith
from tokensmith.cli import cli
from tokensmith.clock import ManualClock
from tokensmith.errors import ConfigError
from tokensmith.events import EventBus
from tokensmith.keys import KeyManager
from tokensmith.keys.pkcs11 import Pkcs11KeyStore, open_pkcs11_key_store
from tokensmith.settings import Settings
from tokensmith.tokens import AccessTokenClaims, mint_access_token, new_jti

from .conftest import ISSUER
from .softhsm import SoftHsmToken, init_token, softhsm_module

pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated via RFC 9864")

NOW = 1_800_000_000.0
HSM_ALGS = ("ES256", "ES384", "RS256", "PS256", "EdDSA")


@pytest.fixture
def hsm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SoftHsmToken:
    module = softhsm_module()
    if module is None:
        pytest.skip("softhsm2 is not installed (apt-get install softhsm2; .ci/run does)")
    # Restored after the test: init_token points this process's SoftHSM2 at the new token.
    monkeypatch.setenv("SOFTHSM2_CONF", str(tmp_path / "hsm" / "softhsm2.conf"))
    return init_token(tmp_path / "hsm", f"ts-{tmp_path.name}"[:32], module)


def hsm_settings(hsm: SoftHsmToken, tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "issuer": ISSUER,
        "database_url": f"sqlite:///{tmp_path / 'ts.db'}",
        "keys_dir": str(tmp_path / "keys"),
        "key_store": "pkcs11",
        "pkcs11_module": hsm.module,
        "pkcs11_token_label": hsm.label,
        "pkcs11_pin": hsm.pin,
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


def hsm_keys(
    hsm: SoftHsmToken, tmp_path: Path, clock: ManualClock, alg: str = "ES256"
) -> KeyManager:
    settings = hsm_settings(hsm, tmp_path, signing_alg=alg)
    km = KeyManager(open_pkcs11_key_store(settings), settings, clock, EventBus())
    km.ensure_active()
    return km


def token_objects(hsm: SoftHsmToken, kid: str) -> list[dict[Attribute, object]]:
    """What the token holds under ``kid``, read through a session of our own (the store
    has logged this process in; a session opened with the PIN would log out on close)."""
    token = pkcs11.lib(hsm.module).get_token(token_label=hsm.label)
    with token.open() as session:
        attrs = [Attribute.CLASS, Attribute.LABEL, Attribute.TOKEN]
        found = session.get_objects({Attribute.ID: kid.encode("ascii")})
        objects = [obj.get_attributes(attrs) for obj in found]
        for obj in session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY}):
            if obj[Attribute.LABEL] == kid:
                objects.append(
                    obj.get_attributes(
                        [
                            Attribute.CLASS,
                            Attribute.SENSITIVE,
                            Attribute.EXTRACTABLE,
                            Attribute.ALWAYS_SENSITIVE,
                            Attribute.NEVER_EXTRACTABLE,
                            Attribute.LOCAL,
                        ]
                    )
                )
    return objects


def _access_token(km: KeyManager, now: float = NOW) -> str:
    claims = AccessTokenClaims(
        "alice", "spa", "api", "openid", int(now), int(now) + 300, new_jti(), "s1"
    )
    return mint_access_token(km.signer(), ISSUER, claims)


@pytest.mark.parametrize("alg", HSM_ALGS)
def test_tokens_signed_in_the_token_verify_with_joserfc_against_the_jwks(
    hsm: SoftHsmToken, tmp_path: Path, alg: str
) -> None:
    settings = hsm_settings(hsm, tmp_path, signing_alg=alg)
    store = open_pkcs11_key_store(settings)
    if not store.supports(alg):
        pytest.skip(f"this PKCS#11 module does not offer the mechanisms for {alg}")
    ts = Tokensmith(settings, key_store=store)
    ts.setup()
    issued = ts.issue(subject="alice", client_id="spa", scope="openid", audience="api")
    keys = KeySet.import_key_set(ts.jwks())  # type: ignore[arg-type]
    jose_alg = "Ed25519" if alg == "EdDSA" else alg
    for token in (issued.access_token, issued.id_token):
        assert token is not None
        decoded = joserfc_jwt.decode(token, keys, algorithms=[alg, jose_alg])
        assert decoded.claims["sub"] == "alice" and decoded.header["alg"] == alg
    assert ts.verify_access_token(issued.access_token, audience="api")["sub"] == "alice"


def test_keys_are_made_in_the_token_sensitive_and_never_extractable(
    hsm: SoftHsmToken, tmp_path: Path, clock: ManualClock
) -> None:
    km = hsm_keys(hsm, tmp_path, clock)
    for record in km.records():
        objects = token_objects(hsm, record.kid)
        classes = sorted(o[Attribute.CLASS] for o in objects[:2])
        assert classes == [ObjectClass.PUBLIC_KEY, ObjectClass.PRIVATE_KEY]
        assert all(o[Attribute.LABEL] == record.kid and o[Attribute.TOKEN] for o in objects[:2])
        private = objects[2]
        assert private[Attribute.SENSITIVE] and private[Attribute.ALWAYS_SENSITIVE]
        assert not private[Attribute.EXTRACTABLE] and private[Attribute.NEVER_EXTRACTABLE]
        assert private[Attribute.LOCAL]  # generated on the token, never imported


def test_the_keys_directory_holds_no_private_key_material(
    hsm: SoftHsmToken, tmp_path: Path, clock: ManualClock
) -> None:
    km = hsm_keys(hsm, tmp_path, clock, "RS256")
    km.rotate()
    files = [p for p in (tmp_path / "keys").rglob("*") if p.is_file()]
    assert {p.name for p in files} == {"keys.json", ".lock"}
    for path in files:
        data = path.read_bytes()
        assert b"PRIVATE KEY" not in data
        for load in (serialization.load_pem_private_key, serialization.load_der_private_key):
            with pytest.raises((ValueError, TypeError)):
                load(data, password=None)
    records = json.loads((tmp_path / "keys" / "keys.json").read_text())["keys"]
    assert len(records) == 3 and all(set(r) <= {"kid", "alg", "state"} | _TIMES for r in records)


_TIMES = {"created_at", "activated_at", "retired_at"}


def test_rotate_retire_and_remove_destroy_the_dropped_key_in_the_token(
    hsm: SoftHsmToken, tmp_path: Path, clock: ManualClock
) -> None:
    km = hsm_keys(hsm, tmp_path, clock)
    first = km.signer().kid
    before = _access_token(km)
    rotated = km.rotate()
    assert rotated.kid != first and km.signer().kid == rotated.kid
    assert [r.state for r in km.records() if r.kid == first] == ["retired"]
    # A token signed before the rotation still verifies against the published key.
    key = km.verification_key(first)
    assert key is not None and key.spec.jws.verify(
        before.rpartition(".")[0].encode(), key.public_key, _signature(before)
    )
    keep = km.settings.longest_token_ttl + km.settings.leeway + km.settings.jwks_max_age
    clock.advance(keep + 1)
    km.tick()
    assert first not in {r.kid for r in km.records()}
    assert token_objects(hsm, first) == []
    assert len(token_objects(hsm, rotated.kid)) == 3


def _signature(token: str) -> bytes:
    import base64

    segment = token.rpartition(".")[2]
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def test_keys_revoke_from_the_cli_destroys_the_key_in_the_token(
    hsm: SoftHsmToken, tmp_path: Path, clock: ManualClock
) -> None:
    km = hsm_keys(hsm, tmp_path, clock)
    active = km.signer().kid
    pin_file = tmp_path / "pin"
    pin_file.write_text(hsm.pin + "\n")
    env = {**hsm.env(), "TOKENSMITH_ISSUER": ISSUER, "TOKENSMITH_KEYS_DIR": str(tmp_path / "keys")}
    del env["TOKENSMITH_PKCS11_PIN"]
    env["TOKENSMITH_PKCS11_PIN_FILE"] = str(pin_file)
    result = CliRunner().invoke(cli, ["keys", "revoke", "--", active], env=env)
    assert result.exit_code == 0, result.output
    assert f"revoked: {active}" in result.output
    assert token_objects(hsm, active) == []
    result = CliRunner().invoke(cli, ["keys", "jwks"], env=env)
    published = {k["kid"] for k in json.loads(result.output)["keys"]}
    assert active not in published and len(published) == 2


def test_two_processes_sharing_the_token_see_the_same_active_key(
    hsm: SoftHsmToken, tmp_path: Path
) -> None:
    clock = ManualClock(time.time())
    a = hsm_keys(hsm, tmp_path, clock)
    b = hsm_keys(hsm, tmp_path, clock)  # a second store in this process shares the login
    assert a.signer().kid == b.signer().kid
    env = {
        **os.environ,
        **hsm.env(),
        "TOKENSMITH_ISSUER": ISSUER,
        "TOKENSMITH_KEYS_DIR": str(tmp_path / "keys"),
    }
    exe = Path(sys.executable).with_name("tokensmith")
    proc = subprocess.run(
        [str(exe), "keys", "rotate"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    new_kid = proc.stdout.split()[1]
    time.sleep(1.1)  # KeyManager looks at the store's version at most once a second
    for km in (a, b):
        assert km.signer().kid == new_kid
        # The key the other process made in the token signs here and verifies.
        token = _access_token(km, clock.now())
        key = km.verification_key(new_kid)
        assert key is not None
        assert key.spec.jws.verify(
            token.rpartition(".")[0].encode(), key.public_key, _signature(token)
        )


def test_the_signer_serves_many_threads_on_one_session(
    hsm: SoftHsmToken, tmp_path: Path, clock: ManualClock
) -> None:
    km = hsm_keys(hsm, tmp_path, clock)
    signer = km.signer()
    key = km.verification_key(signer.kid)
    assert key is not None
    failures: list[bytes] = []

    def work(n: int) -> None:
        for i in range(40):
            message = f"{n}:{i}".encode()
            if not key.spec.jws.verify(message, key.public_key, signer.sign(message)):
                failures.append(message)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert failures == []


def test_a_wrong_pin_is_a_one_line_config_error(hsm: SoftHsmToken, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="wrong PIN"):
        Pkcs11KeyStore(hsm.module, hsm.label, "not-the-pin", tmp_path / "keys")
    env = {**hsm.env(), "TOKENSMITH_PKCS11_PIN": "not-the-pin", "TOKENSMITH_ISSUER": ISSUER}
    result = CliRunner().invoke(cli, ["keys", "list"], env=env)
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0 and "wrong PIN" in result.output
    assert "not-the-pin" not in result.output and "Traceback" not in result.output


def test_an_unknown_token_or_module_is_a_config_error(hsm: SoftHsmToken, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no PKCS#11 token labelled 'absent'"):
        Pkcs11KeyStore(hsm.module, "absent", hsm.pin, tmp_path / "keys")
    with pytest.raises(ConfigError, match="cannot load the PKCS#11 module"):
        Pkcs11KeyStore(str(tmp_path / "missing.so"), hsm.label, hsm.pin, tmp_path / "keys")


def test_without_python_pkcs11_the_store_asks_for_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pkcs11", None)  # what `import pkcs11` meets uninstalled
    with pytest.raises(ConfigError, match=r"install tokensmith\[pkcs11\]"):
        Pkcs11KeyStore("/nonexistent.so", "label", "pin", tmp_path / "keys")


def test_importing_tokensmith_does_not_import_pkcs11() -> None:
    code = "import sys, tokensmith, tokensmith.cli, tokensmith.http; print('pkcs11' in sys.modules)"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert proc.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"pkcs11_module": None}, "TOKENSMITH_PKCS11_MODULE"),
        ({"pkcs11_token_label": None}, "TOKENSMITH_PKCS11_TOKEN_LABEL"),
        ({"pkcs11_pin": None}, "exactly one of"),
        ({"pkcs11_pin_file": "/run/secrets/pin"}, "exactly one of"),
    ],
    ids=["module missing", "token label missing", "no PIN", "PIN and PIN file"],
)
def test_settings_require_the_module_the_token_and_one_pin(
    overrides: dict[str, object], message: str
) -> None:
    values: dict[str, object] = {
        "issuer": ISSUER,
        "key_store": "pkcs11",
        "pkcs11_module": "/usr/lib/softhsm/libsofthsm2.so",
        "pkcs11_token_label": "tokensmith",
        "pkcs11_pin": "1234",
        **overrides,
    }
    with pytest.raises(ConfigError, match=message):
        Settings(**values)  # type: ignore[arg-type]
    env = {"TOKENSMITH_KEY_STORE": "pkcs11", "TOKENSMITH_PKCS11_PIN": "secret-pin"}
    env |= {"TOKENSMITH_PKCS11_MODULE": "/m.so", "TOKENSMITH_PKCS11_TOKEN_LABEL": "t"}
    settings = Settings.from_env(env)
    assert settings.pkcs11_token_label == "t" and "secret-pin" not in repr(settings)

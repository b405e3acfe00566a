"""docs/contract.md "Keys" and SECURITY K1/K2: lifecycle, publication timing, the file key store."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
import threading
from pathlib import Path

import pytest
from joserfc.jwk import import_key

from tests import alg_change
from tests.conftest import ALGS, ISSUER, make_keys
from tokensmith.clock import ManualClock
from tokensmith.errors import ConfigError, InvalidToken, KeyStoreError
from tokensmith.events import EventBus
from tokensmith.keys import FileKeyStore, KeyManager, KeyRecord
from tokensmith.keys import lifecycle as lifecycle_module
from tokensmith.settings import Settings
from tokensmith.tokens import AccessTokenClaims, AccessTokenVerifier, mint_access_token

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "k", "oth"}


def _token(km: KeyManager, clock: ManualClock, ttl: int = 300) -> str:
    now = int(clock.now())
    claims = AccessTokenClaims("alice", "spa", "api", "openid", now, now + ttl, f"j{now}", "s")
    return mint_access_token(km.signer(), ISSUER, claims)


def _verifier(km: KeyManager, clock: ManualClock) -> AccessTokenVerifier:
    return AccessTokenVerifier(km, issuer=ISSUER, clock=clock, leeway=60)


def _states(km: KeyManager) -> list[str]:
    return sorted(r.state for r in km.records())


def test_first_setup_makes_an_active_and_a_pending_key(keys: KeyManager) -> None:
    assert _states(keys) == ["active", "pending"]
    assert {k["kid"] for k in keys.jwks()["keys"]} == {r.kid for r in keys.records()}


def test_setup_is_idempotent(keys: KeyManager) -> None:
    before = keys.records()
    keys.ensure_active()
    assert keys.records() == before


@pytest.mark.parametrize("alg", ALGS)
def test_kid_is_the_rfc7638_thumbprint_computed_by_another_library(
    tmp_path: Path, clock: ManualClock, alg: str
) -> None:
    km = make_keys(tmp_path, clock, alg)
    for jwk in km.jwks()["keys"]:
        assert jwk["kid"] == import_key(jwk).thumbprint()
        assert jwk["alg"] == alg and jwk["use"] == "sig"
        assert not PRIVATE_MEMBERS & set(jwk)


def test_rsa_keys_are_at_least_2048_bits(tmp_path: Path, clock: ManualClock) -> None:
    km = make_keys(tmp_path, clock, "PS256")
    for jwk in km.jwks()["keys"]:
        key = km.verification_key(jwk["kid"])
        assert key is not None and key.public_key.key_size >= 2048  # type: ignore[union-attr]


def test_rotation_publishes_old_and_new_keys_with_distinct_kids(
    keys: KeyManager, clock: ManualClock
) -> None:
    old_active = keys.signer().kid
    pending = next(r.kid for r in keys.records() if r.state == "pending")
    new_active = keys.rotate()
    assert new_active.kid == pending  # the published pending key signs, never a fresh one
    published = [k["kid"] for k in keys.jwks()["keys"]]
    assert old_active in published and pending in published
    assert len(published) == len(set(published)) == 3
    assert _states(keys) == ["active", "pending", "retired"]
    assert keys.signer().kid == pending


def test_a_token_signed_just_before_two_rotations_verifies_until_its_key_is_removed(
    keys: KeyManager, clock: ManualClock
) -> None:
    verifier = _verifier(keys, clock)
    token = _token(keys, clock, ttl=300)
    clock.advance(1)
    keys.rotate()
    keys.rotate()
    assert verifier.verify(token, audience="api")["sub"] == "alice"
    clock.advance(299 + 59)  # exp + leeway - 1 s: still valid
    assert verifier.verify(token, audience="api")["sub"] == "alice"
    # Retired keys stay published for token lifetime + leeway + JWKS max-age.
    keep = keys.settings.longest_token_ttl + keys.settings.leeway + keys.settings.jwks_max_age
    clock.advance(keep)
    keys.tick()
    assert len(keys.records()) == 2
    with pytest.raises(InvalidToken, match="unknown kid"):
        verifier.verify(token, audience="api")


def test_retired_key_is_kept_until_every_token_it_signed_has_expired(
    keys: KeyManager, clock: ManualClock
) -> None:
    old = keys.signer().kid
    keys.rotate()
    keep = keys.settings.longest_token_ttl + keys.settings.leeway + keys.settings.jwks_max_age
    clock.advance(keep - 1)
    keys.tick()
    assert old in {r.kid for r in keys.records()}
    assert (keys.store.directory / f"{old}.pem").exists()  # type: ignore[attr-defined]
    clock.advance(1)
    keys.tick()
    assert old not in {r.kid for r in keys.records()}
    assert not (keys.store.directory / f"{old}.pem").exists()  # type: ignore[attr-defined]


def test_schedule_only_promotes_a_key_published_for_the_jwks_max_age(
    tmp_path: Path, clock: ManualClock
) -> None:
    km = make_keys(tmp_path, clock, key_rotation_period=60, jwks_max_age=600)
    first = km.signer().kid
    clock.advance(61)  # rotation is due, but the pending key is only 61 s published
    assert km.tick() is False and km.signer().kid == first
    clock.advance(600 - 61)
    assert km.tick() is True and km.signer().kid != first


def test_schedule_does_not_rotate_before_the_period(keys: KeyManager, clock: ManualClock) -> None:
    first = keys.signer().kid
    clock.advance(keys.settings.key_rotation_period - 1)
    assert keys.tick() is False and keys.signer().kid == first
    clock.advance(1)
    assert keys.tick() is True and keys.signer().kid != first


def test_jwks_max_age_never_outlasts_the_next_scheduled_change(
    tmp_path: Path, clock: ManualClock
) -> None:
    km = make_keys(tmp_path, clock, key_rotation_period=3600, jwks_max_age=600)
    assert km.jwks_max_age() == 600
    clock.advance(3600 - 100)
    assert km.jwks_max_age() == 100
    clock.advance(200)
    assert km.jwks_max_age() == 0


def test_rotation_emits_key_rotated(keys: KeyManager) -> None:
    seen: list[str] = []
    keys.events.register(lambda e: seen.append(e.name))
    keys.rotate()
    assert seen == ["key_rotated"]


def test_emergency_revoke_stops_publishing_and_the_next_key_signs(
    keys: KeyManager, clock: ManualClock
) -> None:
    verifier = _verifier(keys, clock)
    token = _token(keys, clock)
    compromised = keys.signer().kid
    keys.revoke(compromised)
    assert compromised not in {k["kid"] for k in keys.jwks()["keys"]}
    assert keys.signer().kid != compromised
    assert _states(keys) == ["active", "pending"]
    with pytest.raises(InvalidToken):
        verifier.verify(token, audience="api")
    assert verifier.verify(_token(keys, clock), audience="api")["sub"] == "alice"


def test_revoking_an_unknown_kid_is_an_error(keys: KeyManager) -> None:
    with pytest.raises(KeyStoreError):
        keys.revoke("A" * 43)


def test_private_keys_are_pkcs8_pem_with_mode_0600(keys: KeyManager) -> None:
    directory: Path = keys.store.directory  # type: ignore[attr-defined]
    pems = sorted(directory.glob("*.pem"))
    assert len(pems) == 2
    for pem in pems:
        assert stat.S_IMODE(pem.stat().st_mode) == 0o600
        assert pem.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    meta = json.loads((directory / "keys.json").read_text())
    assert {k["kid"] for k in meta["keys"]} == {p.stem for p in pems}


def test_private_keys_are_encrypted_when_a_passphrase_is_set(
    tmp_path: Path, clock: ManualClock
) -> None:
    make_keys(tmp_path, clock, key_passphrase="correct horse")
    for pem in tmp_path.glob("*.pem"):
        assert pem.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    settings = Settings(issuer=ISSUER, keys_dir=str(tmp_path))
    without = KeyManager(FileKeyStore(tmp_path), settings, clock, EventBus())
    with pytest.raises(ConfigError, match="PASSPHRASE"):
        without.signer()
    wrong = KeyManager(FileKeyStore(tmp_path, "wrong"), settings, clock, EventBus())
    with pytest.raises(ConfigError, match="wrong passphrase"):
        wrong.signer()


def test_a_kid_never_names_a_path(keys: KeyManager) -> None:
    with pytest.raises(KeyStoreError):
        keys.store.load_private_key("../../etc/passwd")


def test_another_process_rotation_is_seen_on_an_unknown_kid(
    tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = make_keys(tmp_path, clock)
    settings = Settings(issuer=ISSUER, keys_dir=str(tmp_path))
    b = KeyManager(FileKeyStore(tmp_path), settings, clock, EventBus())
    assert b.signer().kid == a.signer().kid
    a.rotate()
    a.rotate()  # a brand-new key now signs, one b has never seen
    later = lifecycle_module.time.monotonic() + 10  # past b's reload interval
    monkeypatch.setattr(lifecycle_module.time, "monotonic", lambda: later)
    assert b.verification_key(a.signer().kid) is not None
    assert b.signer().kid == a.signer().kid


def _rotate_many(directory: str, times: int) -> None:
    settings = Settings(issuer=ISSUER, keys_dir=directory)
    km = KeyManager(FileKeyStore(directory), settings, ManualClock(), EventBus())
    for _ in range(times):
        km.rotate()


def test_two_processes_rotating_at_once_leave_a_consistent_store(
    tmp_path: Path, clock: ManualClock
) -> None:
    make_keys(tmp_path, clock)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_rotate_many, args=(str(tmp_path), 5)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    records, _ = FileKeyStore(tmp_path).read()
    states = sorted(r.state for r in records)
    # Every one of the 10 rotations retired exactly one key: none lost, none doubled.
    assert states == ["active", "pending"] + ["retired"] * 10
    assert {p.stem for p in tmp_path.glob("*.pem")} == {r.kid for r in records}
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))


def test_key_directory_is_private(tmp_path: Path, clock: ManualClock) -> None:
    make_keys(tmp_path / "fresh", clock)
    assert stat.S_IMODE(os.stat(tmp_path / "fresh").st_mode) == 0o700


def test_a_fresh_manager_never_hands_out_an_empty_snapshot_under_concurrency(
    tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new worker's first requests arrive together: while one thread loads the keys,
    the others must wait for them, not see "no active signing key"."""
    make_keys(tmp_path, clock)
    store = FileKeyStore(tmp_path)
    slow_read = store.read
    gate = threading.Event()

    def read() -> tuple[list[KeyRecord], object]:
        gate.wait(5)
        return slow_read()

    monkeypatch.setattr(store, "read", read)
    km = KeyManager(store, Settings(issuer=ISSUER, keys_dir=str(tmp_path)), clock, EventBus())
    kids: list[str] = []
    errors: list[Exception] = []

    def sign() -> None:
        try:
            kids.append(km.signer().kid)
        except Exception as exc:  # the bug surfaced as KeyStoreError
            errors.append(exc)

    threads = [threading.Thread(target=sign) for _ in range(8)]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join(10)
    assert errors == [] and len(set(kids)) == 1 and len(kids) == 8


def test_the_schedule_retires_a_key_of_an_algorithm_no_longer_configured(
    tmp_path: Path, clock: ManualClock
) -> None:
    alg_change.scheduled_rotation_retires_the_old_algorithm(
        lambda alg: make_keys(tmp_path, clock, alg), clock
    )


def test_rotate_retires_a_key_of_an_algorithm_no_longer_configured(
    tmp_path: Path, clock: ManualClock
) -> None:
    alg_change.operator_rotation_retires_the_old_algorithm(
        lambda alg: make_keys(tmp_path, clock, alg)
    )

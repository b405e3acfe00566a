"""Issue 5 "Scale-out": the SQL key store, on SQLite (a real file) and PostgreSQL.

Private keys are sealed at rest (AES-256-GCM, scrypt-derived key, kid as associated data),
the lifecycle behaves as over the file store, and several instances on one database agree:
one rotates at a time and the others pick the change up within their reload interval.
"""

from __future__ import annotations

import multiprocessing
import secrets
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import create_engine, text

from tests import alg_change
from tests import keystore_workers as workers
from tests.refresh.conftest import PG_URL, Backend
from tokensmith import Tokensmith
from tokensmith.clock import ManualClock
from tokensmith.errors import ConfigError, KeyStoreError, TemporarilyUnavailable
from tokensmith.events import EventBus
from tokensmith.keys import KeyManager
from tokensmith.keys import lifecycle as lifecycle_module
from tokensmith.settings import Settings
from tokensmith.store.sql import SqlKeyStore
from tokensmith.store.sql import keys as sql_keys
from tokensmith.store.sql.models import metadata

ISSUER = "https://as.example.com"
PASSPHRASE = workers.PASSPHRASE
T0 = 1_800_000_000.0


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
    ids=["on SQLite", "on PostgreSQL"],
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A database with the current schema: a SQLite file, or a fresh PostgreSQL schema
    selected through ``search_path`` (as the refresh suite does)."""
    if request.param == "sqlite":
        found = Backend("sqlite", f"sqlite:///{tmp_path / 'keys.db'}")
        _create_schema(found)
        yield found
        return
    if not PG_URL:
        pytest.skip("TOKENSMITH_TEST_PG_URL is not set: PostgreSQL case not run")
    schema = f"k_{secrets.token_hex(6)}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        found = Backend("postgresql", PG_URL, {"options": f"-csearch_path={schema}"})
        _create_schema(found)
        yield found
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def _create_schema(backend: Backend) -> None:
    engine = backend.engine()
    try:
        metadata.create_all(engine)
    finally:
        engine.dispose()


StoreFactory = Callable[..., SqlKeyStore]


@pytest.fixture
def open_store(backend: Backend) -> Iterator[StoreFactory]:
    """Opens key stores on the test database, as separate instances would; disposes them."""
    opened: list[SqlKeyStore] = []

    def factory(passphrase: str | None = PASSPHRASE) -> SqlKeyStore:
        engine = backend.engine()
        try:
            store = SqlKeyStore(engine, passphrase)
        except BaseException:
            engine.dispose()
            raise
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.engine.dispose()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


def _manager(store: SqlKeyStore, clock: ManualClock, **settings: Any) -> KeyManager:
    return KeyManager(store, Settings(issuer=ISSUER, **settings), clock, EventBus())


@pytest.fixture
def keys(open_store: StoreFactory, clock: ManualClock) -> KeyManager:
    km = _manager(open_store(), clock)
    km.ensure_active()
    return km


def _raw(store: SqlKeyStore, sql: str) -> list[Any]:
    with store.engine.connect() as conn:
        return list(conn.execute(text(sql)))


def _states(km: KeyManager) -> list[str]:
    return sorted(r.state for r in km.records())


def _later(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    later = lifecycle_module.time.monotonic() + seconds
    monkeypatch.setattr(lifecycle_module.time, "monotonic", lambda: later)


# -- at rest ------------------------------------------------------------------------------
def test_private_keys_at_rest_are_aes_gcm_ciphertexts_not_pem_or_der(keys: KeyManager) -> None:
    store: SqlKeyStore = keys.store  # type: ignore[assignment]
    rows = _raw(store, "SELECT kid, nonce, ciphertext FROM ts_private_keys")
    assert {row.kid for row in rows} == {r.kid for r in keys.records()}
    assert len({bytes(row.nonce) for row in rows}) == len(rows)  # a fresh nonce per key
    for row in rows:
        ciphertext = bytes(row.ciphertext)
        der = store.load_private_key(row.kid).private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        assert len(row.nonce) == 12
        assert len(ciphertext) == len(der) + 16  # the GCM tag
        assert b"PRIVATE KEY" not in ciphertext and der not in ciphertext
        assert der[8:40] not in ciphertext


def test_a_ciphertext_moved_to_another_kid_does_not_open(
    keys: KeyManager, open_store: StoreFactory
) -> None:
    store: SqlKeyStore = keys.store  # type: ignore[assignment]
    first, second = (r.kid for r in keys.records())
    with store.engine.begin() as conn:
        a, b = (
            conn.execute(
                text("SELECT nonce, ciphertext FROM ts_private_keys WHERE kid = :k"), {"k": k}
            ).one()
            for k in (first, second)
        )
        swap = text("UPDATE ts_private_keys SET nonce = :n, ciphertext = :c WHERE kid = :k")
        conn.execute(swap, {"n": b.nonce, "c": b.ciphertext, "k": first})
        conn.execute(swap, {"n": a.nonce, "c": a.ciphertext, "k": second})
    fresh = open_store()
    for kid in (first, second):
        with pytest.raises(KeyStoreError, match="does not decrypt"):
            fresh.load_private_key(kid)


@pytest.mark.parametrize("passphrase", [None, ""], ids=["unset", "empty"])
def test_the_store_refuses_to_start_without_a_passphrase(
    open_store: StoreFactory, passphrase: str | None
) -> None:
    with pytest.raises(ConfigError, match="TOKENSMITH_KEY_PASSPHRASE"):
        open_store(passphrase)


def test_a_wrong_passphrase_is_a_config_error(
    keys: KeyManager, open_store: StoreFactory, clock: ManualClock
) -> None:
    wrong = _manager(open_store("not the passphrase"), clock)
    with pytest.raises(ConfigError, match="wrong passphrase"):
        wrong.signer()
    with pytest.raises(ConfigError, match="wrong passphrase"):
        wrong.rotate()
    assert keys.records() == tuple(keys.store.read()[0])  # nothing was changed


# -- the lifecycle over the SQL store -----------------------------------------------------
def test_ensure_active_makes_an_active_and_a_pending_key_once(keys: KeyManager) -> None:
    assert _states(keys) == ["active", "pending"]
    version = keys.store.version()
    keys.ensure_active()
    assert keys.store.version() == version  # nothing changed, nothing written


def test_rotate_promotes_the_published_pending_key(keys: KeyManager) -> None:
    old = keys.signer().kid
    pending = next(r.kid for r in keys.records() if r.state == "pending")
    assert keys.rotate().kid == pending
    assert keys.signer().kid == pending
    assert _states(keys) == ["active", "pending", "retired"]
    assert old in {k["kid"] for k in keys.jwks()["keys"]}


def test_tick_rotates_when_due_and_removes_expired_keys_with_their_private_half(
    keys: KeyManager, clock: ManualClock
) -> None:
    store: SqlKeyStore = keys.store  # type: ignore[assignment]
    first = keys.signer().kid
    clock.advance(keys.settings.key_rotation_period - 1)
    assert keys.tick() is False
    clock.advance(1)
    assert keys.tick() is True and keys.signer().kid != first
    s = keys.settings
    clock.advance(s.longest_token_ttl + s.leeway + s.jwks_max_age)
    keys.tick()
    assert first not in {r.kid for r in keys.records()}
    assert {row.kid for row in _raw(store, "SELECT kid FROM ts_private_keys")} == {
        r.kid for r in keys.records()
    }


def test_revoke_stops_publishing_at_once_and_the_next_key_signs(keys: KeyManager) -> None:
    store: SqlKeyStore = keys.store  # type: ignore[assignment]
    compromised = keys.signer().kid
    keys.revoke(compromised)
    assert compromised not in {k["kid"] for k in keys.jwks()["keys"]}
    assert keys.signer().kid != compromised
    assert _states(keys) == ["active", "pending"]
    assert not _raw(store, f"SELECT kid FROM ts_private_keys WHERE kid = '{compromised}'")


def test_revoking_an_unknown_kid_changes_nothing(keys: KeyManager) -> None:
    version = keys.store.version()
    with pytest.raises(KeyStoreError, match="no key"):
        keys.revoke("A" * 43)
    assert keys.store.version() == version


def test_a_missing_schema_says_to_run_the_migrations(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        with pytest.raises(KeyStoreError, match="db upgrade"):
            SqlKeyStore(engine, PASSPHRASE).read()
    finally:
        engine.dispose()


# -- several instances on one database ----------------------------------------------------
def test_a_rotation_through_one_instance_reaches_the_other_within_its_reload_interval(
    keys: KeyManager, open_store: StoreFactory, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = _manager(open_store(), clock)
    assert other.signer().kid == keys.signer().kid
    seen = other.store.version()
    rotated = keys.rotate()
    assert other.store.version() != seen
    assert other.signer().kid != rotated.kid  # still within its reload interval
    reload_after = 2.0  # past the 1 s reload interval, far below the JWKS max-age
    assert reload_after < other.settings.jwks_max_age
    _later(monkeypatch, reload_after)
    assert rotated.kid in {k["kid"] for k in other.jwks()["keys"]}
    assert other.signer().kid == rotated.kid
    assert other.jwks() == keys.jwks()


def _run(target: Callable[..., None], backend: Backend, *args: Any) -> None:
    ctx = multiprocessing.get_context("spawn")
    db = (backend.url, backend.connect_args)
    procs = [ctx.Process(target=target, args=(*db, *args)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0


def test_four_processes_rotating_at_once_lose_no_rotation(
    backend: Backend, keys: KeyManager, open_store: StoreFactory
) -> None:
    _run(workers.rotate_many, backend, T0, 5)
    fresh = open_store()
    records, version = fresh.read()
    # Every one of the 20 rotations retired exactly one key: none lost, none doubled.
    assert sorted(r.state for r in records) == ["active", "pending"] + ["retired"] * 20
    assert version == 1 + 20  # ensure_active, then one change per rotation
    private = {row.kid for row in _raw(fresh, "SELECT kid FROM ts_private_keys")}
    assert private == {r.kid for r in records}
    for record in records:
        fresh.load_private_key(record.kid)


def test_four_processes_ticking_at_the_same_moment_rotate_once(
    backend: Backend, keys: KeyManager, open_store: StoreFactory
) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    results = ctx.Queue()
    due = T0 + keys.settings.key_rotation_period
    _run(workers.tick_together, backend, due, barrier, results)
    outcomes = [results.get(timeout=10) for _ in range(4)]
    assert sorted(outcomes) == [False, False, False, True]
    records, _ = open_store().read()
    assert sorted(r.state for r in records) == ["active", "pending", "retired"]


# -- settings and the facade --------------------------------------------------------------
def test_settings_select_the_key_store_from_the_environment() -> None:
    env = {"TOKENSMITH_KEY_STORE": "sql", "TOKENSMITH_KEY_PASSPHRASE": PASSPHRASE}
    assert Settings.from_env(env).key_store == "sql"
    assert Settings.from_env({}).key_store == "file"
    with pytest.raises(ConfigError, match="key_store"):
        Settings(issuer=ISSUER, key_store="ldap")
    with pytest.raises(ConfigError, match="TOKENSMITH_KEY_PASSPHRASE"):
        Settings.from_env({"TOKENSMITH_KEY_STORE": "sql"})


def test_the_facade_keeps_keys_in_the_database_with_key_store_sql(
    tmp_path: Path, clock: ManualClock
) -> None:
    settings = Settings(
        issuer=ISSUER,
        database_url=f"sqlite:///{tmp_path / 'ts.db'}",
        keys_dir=str(tmp_path / "keys"),
        key_store="sql",
        key_passphrase=PASSPHRASE,
    )
    ts = Tokensmith(settings, clock=clock)
    assert isinstance(ts.keys.store, SqlKeyStore)
    try:
        ts.setup()  # migrates before the key store is first used
        assert len(ts.jwks()["keys"]) == 2
        assert not (tmp_path / "keys").exists()
        again = Tokensmith(settings, clock=clock)
        assert again.keys.signer().kid == ts.keys.signer().kid
        again.keys.store.engine.dispose()  # type: ignore[attr-defined]
    finally:
        ts.keys.store.engine.dispose()  # type: ignore[attr-defined]


def _restart(open_store: StoreFactory, clock: ManualClock) -> alg_change.Restart:
    def restart(alg: str) -> KeyManager:
        km = _manager(open_store(), clock, signing_alg=alg)
        km.ensure_active()
        return km

    return restart


def test_the_schedule_retires_a_key_of_an_algorithm_no_longer_configured(
    open_store: StoreFactory, clock: ManualClock
) -> None:
    alg_change.scheduled_rotation_retires_the_old_algorithm(_restart(open_store, clock), clock)


def test_rotate_retires_a_key_of_an_algorithm_no_longer_configured(
    open_store: StoreFactory, clock: ManualClock
) -> None:
    alg_change.operator_rotation_retires_the_old_algorithm(_restart(open_store, clock))


# -- KDF cost and the refresh secret (SECURITY B1, B6) -----------------------------------
def test_a_new_store_seals_at_scrypt_n_2_17_and_keeps_the_refresh_secret_sealed(
    keys: KeyManager, open_store: StoreFactory
) -> None:
    store: SqlKeyStore = keys.store  # type: ignore[assignment]
    assert _raw(store, "SELECT scrypt_n FROM ts_key_store") == [(2**17,)]
    secret = store.refresh_secret()
    ((sealed,),) = _raw(store, "SELECT secret FROM ts_key_store")
    assert len(secret) == 32 and secret not in bytes(sealed)
    assert open_store().refresh_secret() == secret  # every instance reads the first one


def test_a_store_sealed_at_the_old_cost_opens_and_reencrypt_reseals_it(
    open_store: StoreFactory, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as old_version:
        old_version.setattr(sql_keys, "SCRYPT_N", 2**15)
        legacy = open_store()
        km = _manager(legacy, clock)
        km.ensure_active()
        secret = legacy.refresh_secret()
    assert _raw(legacy, "SELECT scrypt_n FROM ts_key_store") == [(2**15,)]
    kids = [r.kid for r in km.records()]
    store = open_store()
    assert all(store.load_private_key(kid) for kid in kids)
    said: list[str] = []
    assert store.reencrypt("a new passphrase", said.append) == 2
    assert sorted(said[:-1]) == sorted(f"re-encrypted key {kid}" for kid in kids)
    assert said[-1] == "re-encrypted the refresh secret"
    assert _raw(store, "SELECT scrypt_n FROM ts_key_store") == [(2**17,)]
    reopened = open_store("a new passphrase")
    assert all(reopened.load_private_key(kid) for kid in kids)
    assert reopened.refresh_secret() == secret
    with pytest.raises(ConfigError, match="wrong passphrase"):
        open_store().load_private_key(kids[0])


def test_an_instance_running_through_a_reencrypt_seals_and_opens_keys_as_it_resealed(
    open_store: StoreFactory, clock: ManualClock
) -> None:
    running = open_store()
    km = _manager(running, clock)
    km.ensure_active()
    open_store().reencrypt(None, lambda _line: None)
    km.rotate()  # the running instance seals the new pending key
    assert all(open_store().load_private_key(r.kid) for r in km.records())
    elsewhere = _manager(open_store(), clock)
    elsewhere.rotate()  # and opens a key made after the reencrypt elsewhere
    assert all(running.load_private_key(r.kid) for r in elsewhere.records())


def test_a_locked_database_is_a_retry_not_a_broken_key_store(tmp_path: Path) -> None:
    """A key rotation that meets a write lock held past the busy timeout is
    ``TemporarilyUnavailable`` (503 at the HTTP edge, a retry), not ``KeyStoreError``
    with advice to run the migrations (a 500)."""
    backend = Backend("sqlite", f"sqlite:///{tmp_path / 'keys.db'}")
    _create_schema(backend)
    store = SqlKeyStore(backend.engine(busy_timeout=0.1), PASSPHRASE)
    try:
        with sqlite3.connect(tmp_path / "keys.db", isolation_level=None) as db:
            db.execute("BEGIN IMMEDIATE")
            with pytest.raises(TemporarilyUnavailable):
                store.update(list)  # its first use: the key store's state row
            db.execute("ROLLBACK")
            assert store.update(list) == []
            db.execute("BEGIN IMMEDIATE")
            with pytest.raises(TemporarilyUnavailable):
                store.update(list)  # a rotation or revocation
            db.execute("ROLLBACK")
        assert store.update(list) == []
    finally:
        store.engine.dispose()

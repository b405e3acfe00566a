"""The SQL key store: signing keys shared by every ``tokensmith serve`` on one database.

Three tables. ``ts_key_store`` holds one row: the scrypt salt and cost, a passphrase check
value, the sealed refresh secret (SECURITY B1: it is sealed like the keys, so the database
alone never yields it) and a ``generation`` counter. That row is also the lock:
``update()`` takes it with ``SELECT ... FOR UPDATE`` on PostgreSQL (SQLite serialises
writers with ``BEGIN IMMEDIATE``, see ``engine.py``), so exactly one instance rotates at a
time and the others see its result.
Every change bumps ``generation``; ``version()`` reads only that, which is how the other
instances' ``KeyManager`` notices a rotation within its reload interval.

``ts_signing_keys`` holds the lifecycle records and ``ts_private_keys`` the private halves,
sealed with AES-256-GCM (``tokensmith.keys.sealing``); a record cannot exist without its key.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
from collections.abc import Callable, Iterator
from typing import Any, cast

from sqlalchemy import (
    Connection,
    Engine,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Table,
    bindparam,
    create_engine,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.pool import NullPool

from tokensmith.errors import KeyStoreError, TemporarilyUnavailable
from tokensmith.keys.algorithms import PrivateKey
from tokensmith.keys.local import LocalKeys
from tokensmith.keys.records import KeyRecord
from tokensmith.keys.sealing import (
    NONCE_BYTES,
    SALT_BYTES,
    SCRYPT_N,
    KeySealer,
    new_salt,
    require_passphrase,
)
from tokensmith.keys.store import REFRESH_SECRET_BYTES, Mutation, Progress
from tokensmith.store.sql.engine import READ_ONLY
from tokensmith.store.sql.errors import translate
from tokensmith.store.sql.models import Base

KID_LENGTH = 64  # an RFC 7638 SHA-256 thumbprint is 43 characters
_STATE_ROW = 1


class KeyStoreState(Base):
    """The single lock row: salt, passphrase check and the change counter."""

    __tablename__ = "ts_key_store"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    generation: Mapped[int]
    salt: Mapped[bytes] = mapped_column(LargeBinary(SALT_BYTES))
    # The scrypt cost the salt was used with: stores sealed at an older cost still open.
    scrypt_n: Mapped[int]
    check_nonce: Mapped[bytes] = mapped_column(LargeBinary(NONCE_BYTES))
    check_value: Mapped[bytes] = mapped_column(LargeBinary(64))
    secret_nonce: Mapped[bytes | None] = mapped_column(LargeBinary(NONCE_BYTES))
    secret: Mapped[bytes | None] = mapped_column(LargeBinary(64))


class PrivateKeyRow(Base):
    __tablename__ = "ts_private_keys"

    kid: Mapped[str] = mapped_column(String(KID_LENGTH), primary_key=True)
    nonce: Mapped[bytes] = mapped_column(LargeBinary(NONCE_BYTES))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)


class SigningKeyRow(Base):
    __tablename__ = "ts_signing_keys"

    kid: Mapped[str] = mapped_column(
        String(KID_LENGTH), ForeignKey("ts_private_keys.kid"), primary_key=True
    )
    # Order of the records as the lifecycle appended them (the JWKS lists keys in it).
    position: Mapped[int]
    alg: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[float]
    activated_at: Mapped[float | None]
    retired_at: Mapped[float | None]


key_store_state = cast(Table, KeyStoreState.__table__)
private_keys = cast(Table, PrivateKeyRow.__table__)
signing_keys = cast(Table, SigningKeyRow.__table__)

# Statements are built once (ARCHITECTURE.md "Cross-cutting choices").
_S, _P, _K = key_store_state.c, private_keys.c, signing_keys.c
_GENERATION = select(_S.generation).where(_S.id == _STATE_ROW)
_LOCK = _GENERATION.with_for_update()  # dropped on SQLite, where BEGIN IMMEDIATE locks
_STATE = select(_S.salt, _S.scrypt_n, _S.check_nonce, _S.check_value).where(_S.id == _STATE_ROW)
_SECRET = select(_S.secret_nonce, _S.secret).where(_S.id == _STATE_ROW)
# Only the first secret is kept: every instance then reads the same one.
_SET_SECRET = (
    update(key_store_state)
    .where(_S.id == _STATE_ROW, _S.secret.is_(None))
    .values(secret_nonce=bindparam("b_nonce"), secret=bindparam("b_secret"))
)
_RESEAL = update(key_store_state).where(_S.id == _STATE_ROW).values(generation=_S.generation + 1)
_ALL_KEYS = select(_P.kid, _P.nonce, _P.ciphertext)
_INSERT_STATE = key_store_state.insert()
_BUMP = update(key_store_state).where(_S.id == _STATE_ROW).values(generation=_S.generation + 1)
_RECORDS = select(signing_keys).order_by(_K.position)
_INSERT_RECORD = signing_keys.insert()
_UPDATE_RECORD = update(signing_keys).where(_K.kid == bindparam("b_kid"))
_DELETE_RECORD = delete(signing_keys).where(_K.kid == bindparam("b_kid"))
_LOAD_KEY = select(_P.nonce, _P.ciphertext).where(_P.kid == bindparam("b_kid"))
_INSERT_KEY = private_keys.insert()
_UPDATE_KEY = update(private_keys).where(_P.kid == bindparam("b_kid"))
_DELETE_KEY = delete(private_keys).where(_P.kid == bindparam("b_kid"))


class SqlKeyStore(LocalKeys):
    """A ``KeyStore`` in SQLite or PostgreSQL; run the migrations before first use.

    Constructing it touches no database (``Tokensmith.setup()`` migrates first) but needs
    the passphrase. The scrypt-derived key is computed once per instance, never under the
    lock.
    """

    def __init__(self, engine: Engine, passphrase: str | None) -> None:
        self.engine = engine
        self._passphrase = require_passphrase(passphrase)
        self._reader = engine.execution_options(**{READ_ONLY: True})
        self._sealer: KeySealer | None = None
        self._salt: bytes | None = None  # the one self._sealer was derived with
        self._sealer_lock = threading.Lock()
        self._secret: bytes | None = None
        self._secret_lock = threading.Lock()  # not the sealer's: it is taken inside
        # The connection of the update() running on this thread, for save_private_key.
        self._local = threading.local()

    # -- records --------------------------------------------------------------------------
    def version(self) -> object:
        with _schema_hint(), self._reader.connect() as conn:
            return conn.execute(_GENERATION).scalar()

    def read(self) -> tuple[list[KeyRecord], object]:
        with _schema_hint(), self._reader.connect() as conn:
            # Generation first: at READ COMMITTED a change committed between the two reads
            # pairs newer records with an older generation, which only causes one more reload.
            generation = conn.execute(_GENERATION).scalar()
            if generation is None:
                return [], None
            records, _ = _load(conn)
        return records, generation

    def update(self, mutate: Mutation) -> list[KeyRecord]:
        self._open_sealer()
        with _schema_hint(), self.engine.begin() as conn:
            conn.execute(_LOCK).scalar_one()
            # After a `keys reencrypt` elsewhere, new keys are sealed the way it resealed.
            self._follow_reseal(conn.execute(_STATE).one())
            records, next_position = _load(conn)
            self._local.conn = conn
            try:
                new = mutate(list(records))
            finally:
                self._local.conn = None
            if new != records:
                _write(conn, records, new, next_position)
                conn.execute(_BUMP)
        return new

    # -- private keys ---------------------------------------------------------------------
    def save_private_key(self, kid: str, key: PrivateKey) -> None:
        nonce, ciphertext = self._open_sealer().seal(kid, key)
        values = {"nonce": nonce, "ciphertext": ciphertext}
        with self._connection() as conn:
            if conn.execute(_UPDATE_KEY, {"b_kid": kid, **values}).rowcount == 0:
                conn.execute(_INSERT_KEY, {"kid": kid, **values})

    def load_private_key(self, kid: str) -> PrivateKey:
        sealer = self._open_sealer()
        with self._reader.connect() as conn:
            row = conn.execute(_LOAD_KEY, {"b_kid": kid}).first()
        if row is None:
            raise KeyStoreError(f"private key {kid} is missing from the key store")
        try:
            return sealer.open(kid, row.nonce, row.ciphertext)
        except KeyStoreError:
            with self._reader.connect() as conn:
                state = conn.execute(_STATE).one()
            if not self._follow_reseal(state):
                raise
            return self._open_sealer().open(kid, row.nonce, row.ciphertext)

    def delete_key(self, kid: str) -> None:
        try:
            with self._connection() as conn:
                conn.execute(_DELETE_KEY, {"b_kid": kid})
        except IntegrityError:
            raise KeyStoreError(f"key {kid} is still in the key records") from None

    # -- internals ------------------------------------------------------------------------
    @contextlib.contextmanager
    def _connection(self) -> Iterator[Connection]:
        """Inside ``update()`` (``mutate`` making a key): its transaction; else a new one."""
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            yield conn
            return
        with self.engine.begin() as own:
            yield own

    def _open_sealer(self) -> KeySealer:
        sealer = self._sealer
        if sealer is None:
            with self._sealer_lock:
                if self._sealer is None:
                    self._sealer = self._derive()
                sealer = self._sealer
        return sealer

    def _derive(self) -> KeySealer:
        with _schema_hint(), self._reader.connect() as conn:
            row = conn.execute(_STATE).first()
        if row is None:
            # First use of this database: make the salt. Another instance racing us wins
            # or loses on the primary key; the loser uses the winner's salt.
            salt = new_salt()
            sealer = KeySealer.from_passphrase(self._passphrase, salt, SCRYPT_N)
            check_nonce, check_value = sealer.check_value()
            state = {
                "id": _STATE_ROW,
                "generation": 0,
                "salt": salt,
                "scrypt_n": SCRYPT_N,
                "check_nonce": check_nonce,
                "check_value": check_value,
            }
            try:
                with _schema_hint(), self.engine.begin() as conn:
                    conn.execute(_INSERT_STATE, state)
                self._salt = salt
                return sealer
            except IntegrityError:
                with self._reader.connect() as conn:
                    row = conn.execute(_STATE).one()
        self._salt = bytes(row.salt)
        return _opened(row, self._passphrase)

    def _follow_reseal(self, state: Any) -> bool:
        """Derive the sealer again if ``keys reencrypt`` gave the store a new salt since
        ours (a changed passphrase then fails here, loudly); true if it did."""
        if bytes(state.salt) == self._salt:
            return False
        sealer = _opened(state, self._passphrase)
        with self._sealer_lock:
            self._sealer, self._salt = sealer, bytes(state.salt)
        return True

    # -- refresh secret -------------------------------------------------------------------
    def refresh_secret(self) -> bytes:
        """The grace-retry secret (:class:`tokensmith.refresh.secret.SecretSource`), sealed
        in ``ts_key_store``; the first instance to need it creates it."""
        if self._secret is None:
            with self._secret_lock:
                if self._secret is None:
                    self._secret = self._keep_secret(secrets.token_bytes)
        return self._secret

    def adopt_refresh_secret(self, secret: bytes) -> bool:
        """Keep ``secret`` (moved out of ``ts_meta`` by migration 0005) unless the store has
        one already; true if it was kept."""
        self._secret = self._keep_secret(lambda _n: secret)
        return self._secret == secret

    def _keep_secret(self, make: Callable[[int], bytes]) -> bytes:
        sealer = self._open_sealer()
        with _schema_hint(), self._reader.connect() as conn:
            row = conn.execute(_SECRET).one()
        if row.secret is None:
            nonce, sealed = sealer.seal_secret(make(REFRESH_SECRET_BYTES))
            with self.engine.begin() as conn:
                conn.execute(_SET_SECRET, {"b_nonce": nonce, "b_secret": sealed})
                row = conn.execute(_SECRET).one()
        return sealer.open_secret(row.secret_nonce, row.secret)

    # -- re-encryption --------------------------------------------------------------------
    def reencrypt(self, new_passphrase: str | None, progress: Progress) -> int:
        """Reseal every private key and the refresh secret under a new salt at the current
        scrypt cost (SECURITY B6), with ``new_passphrase`` when given, in one transaction:
        it commits whole or not at all. Running instances follow on their next key change
        or load; after a passphrase change they fail loudly until restarted with the new
        one. Returns the number of private keys resealed."""
        passphrase = require_passphrase(new_passphrase or self._passphrase)
        salt = new_salt()
        sealer = KeySealer.from_passphrase(passphrase, salt, SCRYPT_N)
        check_nonce, check_value = sealer.check_value()
        done = 0
        with _schema_hint(), self.engine.begin() as conn:
            conn.execute(_LOCK).scalar_one()
            old = _opened(conn.execute(_STATE).one(), self._passphrase)
            for kid, nonce, ciphertext in conn.execute(_ALL_KEYS).all():
                new_nonce, sealed = sealer.seal(kid, old.open(kid, nonce, ciphertext))
                conn.execute(_UPDATE_KEY, {"b_kid": kid, "nonce": new_nonce, "ciphertext": sealed})
                done += 1
                progress(f"re-encrypted key {kid}")
            secret = conn.execute(_SECRET).one()
            values = {"salt": salt, "scrypt_n": SCRYPT_N, "check_nonce": check_nonce}
            values["check_value"] = check_value
            if secret.secret is not None:
                plain = old.open_secret(secret.secret_nonce, secret.secret)
                values["secret_nonce"], values["secret"] = sealer.seal_secret(plain)
                progress("re-encrypted the refresh secret")
            conn.execute(_RESEAL.values(**values))
        with self._sealer_lock:
            self._passphrase, self._sealer, self._salt = passphrase, sealer, salt
        return done


def database_holds_keys(database_url: str) -> bool:
    """Whether the database at ``database_url`` holds the SQL key store's signing keys (an
    operator who left ``TOKENSMITH_KEY_STORE`` unset there meant ``sql``)."""
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            count = conn.execute(select(func.count()).select_from(signing_keys)).scalar_one()
    except (OperationalError, ProgrammingError):
        return False  # no such table: never migrated, or migrated before keys were kept here
    finally:
        engine.dispose()
    return bool(count)


def _opened(row: Any, passphrase: str) -> KeySealer:
    """The sealer for the state ``row``, checked against its passphrase check value."""
    sealer = KeySealer.from_passphrase(passphrase, row.salt, row.scrypt_n)
    sealer.verify_check_value(row.check_nonce, row.check_value)
    return sealer


def _load(conn: Connection) -> tuple[list[KeyRecord], int]:
    """The records in order, and the next free position."""
    records: list[KeyRecord] = []
    position = 0
    for row in conn.execute(_RECORDS):
        data: dict[str, Any] = dict(row._mapping)
        position = data.pop("position") + 1
        records.append(KeyRecord.from_json(data))
    return records, position


def _write(conn: Connection, old: list[KeyRecord], new: list[KeyRecord], position: int) -> None:
    before = {r.kid: r for r in old}
    after = {r.kid for r in new}
    gone = [{"b_kid": kid} for kid in before if kid not in after]
    changed = [r for r in new if r.kid in before and r != before[r.kid]]
    added = [r for r in new if r.kid not in before]
    if gone:
        # A record that left is no longer published: its private half goes in the same
        # transaction (the file store deletes the PEM afterwards).
        conn.execute(_DELETE_RECORD, gone)
        conn.execute(_DELETE_KEY, gone)
    if changed:
        conn.execute(_UPDATE_RECORD, [{"b_kid": r.kid, **_columns(r)} for r in changed])
    if added:
        rows = [
            {"kid": r.kid, "position": position + i, **_columns(r)} for i, r in enumerate(added)
        ]
        try:
            conn.execute(_INSERT_RECORD, rows)
        except IntegrityError as exc:
            raise KeyStoreError(f"a new key record has no private key: {exc.orig}") from exc


def _columns(record: KeyRecord) -> dict[str, Any]:
    return {
        "alg": record.alg,
        "state": record.state,
        "created_at": record.created_at,
        "activated_at": record.activated_at,
        "retired_at": record.retired_at,
    }


@contextlib.contextmanager
def _schema_hint() -> Iterator[None]:
    try:
        yield
    except (OperationalError, ProgrammingError) as exc:
        # A lock timeout, a conflict or a lost connection is the database being busy, not
        # the key store being broken: the caller may retry (503, not 500).
        retry = translate(exc.orig, disconnect=exc.connection_invalidated)
        if isinstance(retry, TemporarilyUnavailable):
            raise retry from exc
        raise KeyStoreError(
            f"the SQL key store failed ({exc.orig}); has `tokensmith db upgrade` run?"
        ) from exc

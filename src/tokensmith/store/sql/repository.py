"""The SQL refresh store: one unit of work per transaction, on one connection.

Statements are built once at import (STYLE "Measured performance habits": rebuilding Core
statements costs more client CPU than the database work). The compare-and-set that consumes
a token is a conditional ``UPDATE ... RETURNING`` on both databases (SECURITY R1).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import (
    BindParameter,
    Connection,
    Engine,
    bindparam,
    delete,
    exists,
    insert,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql.expression import ClauseElement

from tokensmith.errors import TemporarilyUnavailable
from tokensmith.store.records import (
    FamilyRecord,
    NewToken,
    RevocationSnapshot,
    StoreError,
    TokenRecord,
)
from tokensmith.store.sql import models
from tokensmith.store.sql.engine import READ_ONLY
from tokensmith.store.sql.errors import DISCONNECT_SQLSTATES, translate

f = models.families
rt = models.refresh_tokens
at = models.access_tokens
dl = models.denylist
nb = models.subject_not_before
fr = models.family_revocations
meta = models.meta

SECRET_NAME = "refresh_secret"

_FAMILY_COLS = (
    f.c.id,
    f.c.subject,
    f.c.client_id,
    f.c.scope,
    f.c.audience,
    f.c.auth_time,
    f.c.amr,
    f.c.acr,
    f.c.created_at,
    f.c.expires_at,
    f.c.revoked_at,
    f.c.revoke_reason,
)
_TOKEN_COLS = (
    rt.c.token_hash,
    rt.c.parent_hash,
    rt.c.salt,
    rt.c.issued_at,
    rt.c.expires_at,
    rt.c.used_at,
    rt.c.revoked_at,
    rt.c.grace_retries,
    rt.c.used_ip,
    rt.c.used_user_agent,
)
_NT = len(_TOKEN_COLS)

# PostgreSQL: the family row is locked for the whole unit of work, so a concurrent family
# revocation either happened before (we see it) or waits for us and then also revokes the
# child we insert (CWE-367). NO KEY UPDATE does not block the foreign-key checks of inserts.
# SQLite ignores the clause; BEGIN IMMEDIATE already serialises writers there.
_SELECT_TOKEN = (
    select(*_TOKEN_COLS, *_FAMILY_COLS)
    .join_from(rt, f, rt.c.family_id == f.c.id)
    .where(rt.c.token_hash == bindparam("h"))
    .with_for_update(key_share=True, of=f)
)
_SELECT_CHILD = (
    select(*_TOKEN_COLS, *_FAMILY_COLS)
    .join_from(rt, f, rt.c.family_id == f.c.id)
    .where(rt.c.parent_hash == bindparam("h"))
)
_SELECT_FAMILY = select(*_FAMILY_COLS).where(f.c.id == bindparam("fid"))
_INSERT_FAMILY = insert(f)
_INSERT_TOKEN = insert(rt)
_INSERT_ACCESS = insert(at)
_MARK_USED = (
    update(rt)
    .where(rt.c.token_hash == bindparam("h"), rt.c.used_at.is_(None), rt.c.revoked_at.is_(None))
    .values(used_at=bindparam("now"), used_ip=bindparam("ip"), used_user_agent=bindparam("ua"))
    .returning(rt.c.token_hash)
)
_COUNT_GRACE = (
    update(rt)
    .where(
        rt.c.token_hash == bindparam("h"),
        rt.c.revoked_at.is_(None),
        rt.c.grace_retries < bindparam("limit"),
    )
    .values(grace_retries=rt.c.grace_retries + literal_column("1"))
    .returning(rt.c.grace_retries)
)
_REVOKE_FAMILY = (
    update(f)
    .where(f.c.id == bindparam("fid"), f.c.revoked_at.is_(None))
    .values(revoked_at=bindparam("now"), revoke_reason=bindparam("reason"))
    .returning(*_FAMILY_COLS)
)
_REVOKE_FAMILY_TOKENS = (
    update(rt)
    .where(rt.c.family_id == bindparam("fid"), rt.c.revoked_at.is_(None))
    .values(revoked_at=bindparam("now"))
)
_DENY_FAMILY_ACCESS = insert(dl).from_select(
    ["jti", "expires_at"],
    select(at.c.jti, at.c.expires_at).where(
        at.c.family_id == bindparam("fid"),
        at.c.expires_at > bindparam("now"),
        ~exists().where(dl.c.jti == at.c.jti),
    ),
)
_AUDIT = insert(fr).values(
    family_id=bindparam("fid"),
    revoked_at=bindparam("now"),
    reason=bindparam("reason"),
    actor=bindparam("actor"),
)
_SUBJECT_FAMILIES = (
    select(f.c.id)
    .where(
        f.c.subject == bindparam("sub"),
        f.c.revoked_at.is_(None),
        f.c.expires_at > bindparam("now"),
    )
    .with_for_update(key_share=True)
)
_DENY = {
    "postgresql": pg.insert(dl).on_conflict_do_nothing(index_elements=[dl.c.jti]),
    "sqlite": sqlite.insert(dl).on_conflict_do_nothing(index_elements=[dl.c.jti]),
}
_pg_nb = pg.insert(nb)
_sqlite_nb = sqlite.insert(nb)
_SET_NOT_BEFORE = {
    "postgresql": _pg_nb.on_conflict_do_update(
        index_elements=[nb.c.subject], set_={"not_before": _pg_nb.excluded.not_before}
    ),
    "sqlite": _sqlite_nb.on_conflict_do_update(
        index_elements=[nb.c.subject], set_={"not_before": _sqlite_nb.excluded.not_before}
    ),
}
_INSERT_SECRET = {
    "postgresql": pg.insert(meta).on_conflict_do_nothing(index_elements=[meta.c.name]),
    "sqlite": sqlite.insert(meta).on_conflict_do_nothing(index_elements=[meta.c.name]),
}
_SELECT_SECRET = select(meta.c.value).where(meta.c.name == bindparam("name"))

_LOAD_DENIED = select(dl.c.jti).where(dl.c.expires_at > bindparam("now"))
_LOAD_FAMILIES = select(f.c.id).where(f.c.revoked_at > bindparam("since"))
_LOAD_NOT_BEFORE = select(nb.c.subject, nb.c.not_before).where(nb.c.not_before > bindparam("since"))

# Cleanup (SPEC: small batches; PostgreSQL: FOR UPDATE SKIP LOCKED so concurrent cleaners and
# live traffic never wait on each other).
_EXPIRED_FAMILIES = (
    select(f.c.id)
    .where(f.c.expires_at <= bindparam("cutoff"))
    .order_by(f.c.expires_at)
    .limit(bindparam("n"))
    .with_for_update(skip_locked=True)
)
_FIDS: BindParameter[Any] = bindparam("fids", expanding=True)
_PURGE = (
    delete(at).where(at.c.family_id.in_(_FIDS)),
    delete(rt).where(rt.c.family_id.in_(_FIDS)),
    delete(fr).where(fr.c.family_id.in_(_FIDS)),
    delete(f).where(f.c.id.in_(_FIDS)),
)
_PURGE_DENIED = delete(dl).where(
    dl.c.jti.in_(select(dl.c.jti).where(dl.c.expires_at <= bindparam("now")).limit(bindparam("n")))
)
_PURGE_NOT_BEFORE = delete(nb).where(
    nb.c.subject.in_(
        select(nb.c.subject).where(nb.c.not_before <= bindparam("cutoff")).limit(bindparam("n"))
    )
)


# The unit of work runs these on the pooled DBAPI connection: compiled once per dialect from
# the Core statements above, which stay the single source of truth. Going through
# Connection.execute costs ~70 us per statement and ~160 us for begin/commit on this machine,
# more than SQLite's own work (benchmarks/bench_refresh.py).
_DIALECTS: dict[str, Dialect] = {
    "sqlite": sqlite.dialect(paramstyle="named"),
    "postgresql": PGDialect_psycopg(),  # type: ignore[no-untyped-call]
}
_UNIT_OF_WORK: dict[str, ClauseElement | dict[str, Any]] = {
    "select_token": _SELECT_TOKEN,
    "select_child": _SELECT_CHILD,
    "select_family": _SELECT_FAMILY,
    "insert_family": _INSERT_FAMILY,
    "insert_token": _INSERT_TOKEN,
    "insert_access": _INSERT_ACCESS,
    "mark_used": _MARK_USED,
    "count_grace": _COUNT_GRACE,
    "revoke_family": _REVOKE_FAMILY,
    "revoke_family_tokens": _REVOKE_FAMILY_TOKENS,
    "deny_family_access": _DENY_FAMILY_ACCESS,
    "audit": _AUDIT,
    "subject_families": _SUBJECT_FAMILIES,
    "deny": _DENY,
    "set_not_before": _SET_NOT_BEFORE,
}


def _compile(dialect_name: str) -> dict[str, str]:
    dialect = _DIALECTS[dialect_name]
    compiled = {}
    for name, stmt in _UNIT_OF_WORK.items():
        clause = stmt[dialect_name] if isinstance(stmt, dict) else stmt
        compiled[name] = str(clause.compile(dialect=dialect))
    return compiled


_SQL = {name: _compile(name) for name in _DIALECTS}


@lru_cache(maxsize=4096)
def _parse_json_list(value: str) -> tuple[str, ...]:
    return tuple(json.loads(value))


def _json_list(value: Any) -> tuple[str, ...]:
    # psycopg decodes json columns itself; sqlite3 hands back the text, which repeats a lot
    # (audiences, amr values), so parsed forms are cached.
    return _parse_json_list(value) if isinstance(value, str) else tuple(value)


def _family(row: Sequence[Any], at_: int = 0) -> FamilyRecord:
    return FamilyRecord(
        id=row[at_],
        subject=row[at_ + 1],
        client_id=row[at_ + 2],
        scope=row[at_ + 3],
        audience=_json_list(row[at_ + 4]),
        auth_time=row[at_ + 5],
        amr=_json_list(row[at_ + 6]),
        acr=row[at_ + 7],
        created_at=row[at_ + 8],
        expires_at=row[at_ + 9],
        revoked_at=row[at_ + 10],
        revoke_reason=row[at_ + 11],
    )


def _token(row: Sequence[Any]) -> TokenRecord:
    return TokenRecord(
        token_hash=bytes(row[0]),
        parent_hash=None if row[1] is None else bytes(row[1]),
        salt=None if row[2] is None else bytes(row[2]),
        issued_at=row[3],
        expires_at=row[4],
        used_at=row[5],
        revoked_at=row[6],
        grace_retries=row[7],
        used_ip=row[8],
        used_user_agent=row[9],
        family=_family(row, _NT),
    )


class SqlTransaction:
    """One unit of work on one pooled DBAPI connection; implements
    :class:`tokensmith.store.RefreshTransaction`."""

    def __init__(self, cursor: Any, dialect_name: str) -> None:
        self._cursor = cursor
        self._sql = _SQL[dialect_name]
        self.dialect_name = dialect_name

    def execute_sql(self, sql: str) -> None:
        """Run a literal statement inside this unit of work (tools and fault-injection tests)."""
        self._cursor.execute(sql)

    def _one(self, name: str, params: dict[str, Any]) -> Any:
        self._cursor.execute(self._sql[name], params)
        return self._cursor.fetchone()

    def _run(self, name: str, params: dict[str, Any]) -> None:
        self._cursor.execute(self._sql[name], params)

    def get_token(self, token_hash: bytes) -> TokenRecord | None:
        row = self._one("select_token", {"h": token_hash})
        return None if row is None else _token(row)

    def get_child(self, parent_hash: bytes) -> TokenRecord | None:
        row = self._one("select_child", {"h": parent_hash})
        return None if row is None else _token(row)

    def get_family(self, family_id: str) -> FamilyRecord | None:
        row = self._one("select_family", {"fid": family_id})
        return None if row is None else _family(row)

    def insert_family(self, family: FamilyRecord) -> None:
        self._run(
            "insert_family",
            {
                "id": family.id,
                "subject": family.subject,
                "client_id": family.client_id,
                "scope": family.scope,
                "audience": json.dumps(list(family.audience)),
                "auth_time": family.auth_time,
                "amr": json.dumps(list(family.amr)),
                "acr": family.acr,
                "created_at": family.created_at,
                "expires_at": family.expires_at,
                "revoked_at": None,
                "revoke_reason": None,
            },
        )

    def insert_token(self, token: NewToken) -> None:
        self._run(
            "insert_token",
            {
                "token_hash": token.token_hash,
                "family_id": token.family_id,
                "parent_hash": token.parent_hash,
                "salt": token.salt,
                "issued_at": token.issued_at,
                "expires_at": token.expires_at,
                "used_at": None,
                "revoked_at": None,
                "grace_retries": 0,
                "used_ip": None,
                "used_user_agent": None,
            },
        )

    def mark_used(self, token_hash: bytes, now: float, ip: str | None, ua: str | None) -> bool:
        return self._one("mark_used", {"h": token_hash, "now": now, "ip": ip, "ua": ua}) is not None

    def count_grace_retry(self, token_hash: bytes, limit: int) -> bool:
        return self._one("count_grace", {"h": token_hash, "limit": limit}) is not None

    def record_access_token(self, jti: str, family_id: str, expires_at: float) -> None:
        self._run("insert_access", {"jti": jti, "family_id": family_id, "expires_at": expires_at})

    def revoke_family(
        self, family_id: str, now: float, reason: str, actor: str | None
    ) -> FamilyRecord | None:
        row = self._one("revoke_family", {"fid": family_id, "now": now, "reason": reason})
        if row is None:
            return None
        self._run("revoke_family_tokens", {"fid": family_id, "now": now})
        self._run("deny_family_access", {"fid": family_id, "now": now})
        self._run("audit", {"fid": family_id, "now": now, "reason": reason, "actor": actor})
        return _family(row)

    def revoke_subject(self, subject: str, now: float) -> list[str]:
        self._cursor.execute(self._sql["subject_families"], {"sub": subject, "now": now})
        ids = [row[0] for row in self._cursor.fetchall()]
        revoked = []
        for family_id in ids:
            params = {"fid": family_id, "now": now, "reason": "subject_revoked"}
            if self._one("revoke_family", params) is not None:
                self._run("revoke_family_tokens", {"fid": family_id, "now": now})
                self._run("audit", {**params, "actor": None})
                revoked.append(family_id)
        self._run("set_not_before", {"subject": subject, "not_before": now})
        return revoked

    def deny_access_token(self, jti: str, expires_at: float) -> None:
        self._run("deny", {"jti": jti, "expires_at": expires_at})


class SqlStore:
    """Implements :class:`tokensmith.store.RefreshStore` over a SQLAlchemy engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._dialect = engine.dialect.name
        self._driver_error: type[Exception] = engine.dialect.loaded_dbapi.Error
        self._secret: bytes | None = None

    @contextmanager
    def transaction(self) -> Iterator[SqlTransaction]:
        """A write unit of work: commits when the block ends, rolls back on any exception.
        SQLite starts it with BEGIN IMMEDIATE; psycopg opens it implicitly (READ COMMITTED)."""
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            try:
                if self._dialect == "sqlite":
                    cursor.execute("BEGIN IMMEDIATE")
                try:
                    yield SqlTransaction(cursor, self._dialect)
                    self._commit(raw)
                except BaseException:
                    self._rollback(raw)
                    raise
            finally:
                cursor.close()
        except self._driver_error as exc:
            raise self._translate(exc, raw) from exc
        except DBAPIError as exc:
            raise translate(exc.orig, disconnect=exc.connection_invalidated) from exc
        finally:
            raw.close()

    def _commit(self, raw: PoolProxiedConnection) -> None:
        raw.commit()

    @staticmethod
    def _rollback(raw: PoolProxiedConnection) -> None:
        try:
            raw.rollback()
        except Exception:
            # A dead connection cannot roll back; the server already discarded the work.
            raw.invalidate()

    def _translate(
        self, exc: Exception, raw: PoolProxiedConnection
    ) -> StoreError | TemporarilyUnavailable:
        disconnect = getattr(exc, "sqlstate", None) in DISCONNECT_SQLSTATES or (
            self.engine.dialect.is_disconnect(cast(Any, exc), raw.dbapi_connection, None)
        )
        if disconnect and raw.is_valid:
            raw.invalidate()
        return translate(exc, disconnect=disconnect)

    @contextmanager
    def _connection(self, *, read_only: bool = False) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                if read_only:
                    conn.execution_options(**{READ_ONLY: True})
                with conn.begin():
                    yield conn
        except DBAPIError as exc:
            raise translate(exc.orig, disconnect=exc.connection_invalidated) from exc

    def server_secret(self) -> bytes:
        if self._secret is None:
            candidate = {"name": SECRET_NAME, "value": secrets.token_bytes(32)}
            with self._connection() as conn:
                # Insert-if-absent then read: every process ends up with the first secret.
                conn.execute(_INSERT_SECRET[self._dialect], candidate)
                value = conn.execute(_SELECT_SECRET, {"name": SECRET_NAME}).scalar_one()
            self._secret = bytes(value)
        return self._secret

    def load_revocations(self, now: float, horizon: float) -> RevocationSnapshot:
        since = now - horizon
        with self._connection(read_only=True) as conn:
            denied = frozenset(conn.execute(_LOAD_DENIED, {"now": now}).scalars())
            families = frozenset(conn.execute(_LOAD_FAMILIES, {"since": since}).scalars())
            not_before = {
                row[0]: row[1] for row in conn.execute(_LOAD_NOT_BEFORE, {"since": since})
            }
        return RevocationSnapshot(denied, families, not_before)

    def purge_expired(self, now: float, batch_size: int, horizon: float) -> int:
        """One batch: families expired ``horizon`` seconds ago (so every access token they
        issued has expired too) with their rows, expired denylist rows, stale not-befores."""
        cutoff = now - horizon
        deleted = 0
        with self._connection() as conn:
            fids = list(conn.execute(_EXPIRED_FAMILIES, {"cutoff": cutoff, "n": batch_size}))
            if fids:
                ids = [row[0] for row in fids]
                for stmt in _PURGE:
                    deleted += conn.execute(stmt, {"fids": ids}).rowcount
            deleted += conn.execute(_PURGE_DENIED, {"now": now, "n": batch_size}).rowcount
            params = {"cutoff": cutoff, "n": batch_size}
            deleted += conn.execute(_PURGE_NOT_BEFORE, params).rowcount
        return deleted

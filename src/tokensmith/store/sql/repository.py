"""The SQL refresh store: one unit of work per transaction, on one pooled connection; on
SQLite the units of one process share transactions through the group commit
(:mod:`tokensmith.store.sql.group`, driven by this store's batch methods). The unit of work
itself is :mod:`tokensmith.store.sql.transaction`; rows are decoded in
:mod:`tokensmith.store.sql.rows`.

Statements come precompiled from :mod:`tokensmith.store.sql.statements`; cold paths
(cleanup, the revocation snapshot) use SQLAlchemy Core directly.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any, TypeVar, cast

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.pool import PoolProxiedConnection

from tokensmith.errors import CommitInDoubt, TemporarilyUnavailable
from tokensmith.revocation.log import ChangeSignal, LogEntry
from tokensmith.settings import MAX_LEEWAY
from tokensmith.store.records import (
    Pending,
    RevocationSnapshot,
    StoreError,
    TokenRecord,
)
from tokensmith.store.sql.audit import SqlAuditReader
from tokensmith.store.sql.clients import SqlClientRegistry
from tokensmith.store.sql.engine import READ_ONLY
from tokensmith.store.sql.errors import (
    DISCONNECT_SQLSTATES,
    busy,
    translate,
    unreachable,
)
from tokensmith.store.sql.group import GroupCommitter, Ticket
from tokensmith.store.sql.notify import PgListener, Poll
from tokensmith.store.sql.outbox import SqlLogoutOutbox
from tokensmith.store.sql.rows import token_record
from tokensmith.store.sql.statements import (
    CLEAR_SALTS,
    EXPIRED_FAMILIES,
    LOAD_DENIED,
    LOAD_FAMILIES,
    LOAD_NOT_BEFORE,
    LOG_SINCE,
    PURGE,
    PURGE_DENIED,
    PURGE_LOG,
    PURGE_NOT_BEFORE,
    PURGE_PROOFS,
    SQL,
)
from tokensmith.store.sql.transaction import SqlTransaction

T = TypeVar("T")


def _after_fork_in_child(ref: weakref.ReferenceType[SqlStore]) -> None:
    store = ref()
    if store is not None:
        store._forked()


class SqlStore:
    """Implements :class:`tokensmith.store.RefreshStore` over a SQLAlchemy engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._dialect = engine.dialect.name
        self._driver_error: type[Exception] = engine.dialect.loaded_dbapi.Error
        # PostgreSQL runs units side by side under row locks; SQLite has one writer anyway.
        self._group = GroupCommitter(self._run_batch) if self._dialect == "sqlite" else None
        self._writer: PoolProxiedConnection | None = None
        if hasattr(os, "register_at_fork"):  # Windows cannot fork
            os.register_at_fork(after_in_child=partial(_after_fork_in_child, weakref.ref(self)))

    def _forked(self) -> None:
        """In a child forked after this store was used (a pre-forking server that built its
        app first): leave the parent's connections, its held writer connection and its
        group-commit queue to the parent and start afresh (SQLAlchemy's advice for pools;
        SQLite and libpq connections must not cross a fork). It runs in the fork itself,
        while the child has one thread: none of its threads can reach the parent's."""
        self.engine.dispose(close=False)
        self._writer = None
        if self._group is not None:
            self._group = GroupCommitter(self._run_batch)

    def _unit(self, cursor: Any) -> SqlTransaction:
        return SqlTransaction(cursor, self._dialect)

    @contextmanager
    def transaction(self) -> Iterator[SqlTransaction]:
        """A write unit of work: commits when the block ends, rolls back on any exception.
        SQLite starts it with BEGIN IMMEDIATE; psycopg opens it implicitly (READ COMMITTED).
        ``atomic`` runs on it outside SQLite. On SQLite, writes belong in ``atomic``: a
        transaction of its own waits for the database lock outside the group-commit queue,
        polling in SQLite's busy handler while the queue keeps taking the lock."""
        raw = self._checkout()
        try:
            cursor = raw.cursor()
            try:
                if self._dialect == "sqlite":
                    cursor.execute("BEGIN IMMEDIATE")
                try:
                    unit = self._unit(cursor)
                    yield unit
                    unit._flush_log()
                    self._commit(raw)
                except BaseException:
                    self._rollback(raw)
                    raise
            finally:
                cursor.close()
        except (self._driver_error, DBAPIError) as exc:
            raise self._error(exc, raw) from exc
        finally:
            raw.close()

    def atomic(self, work: Callable[[SqlTransaction], T]) -> T:
        """Run ``work`` as one unit of work; its result once durable. On SQLite it joins the
        group commit (:mod:`tokensmith.store.sql.group`) and its commit runs in this thread
        should it lead the batch: it has nothing else to do meanwhile."""
        if self._group is None:
            with self.transaction() as tx:
                return work(tx)
        ticket = self._group.submit(work)
        value = ticket.result()
        ticket.durable()
        return value

    def pending(self, work: Callable[[SqlTransaction], T]) -> Pending[T]:
        """Run ``work`` as one unit of work; its result at once. On SQLite the commit may
        still be in flight, on the committer thread should this caller lead the batch: the
        caller signs its tokens meanwhile, then waits in ``durable()``. Elsewhere the commit
        is done before this returns."""
        if self._group is None:
            return Pending(self.atomic(work))
        ticket = self._group.submit(work, background=True)
        return Pending(ticket.result(), ticket.durable)

    def _run_batch(self, tickets: list[Ticket[Any]]) -> Callable[[], None] | None:
        """A group leader's transaction: every ticket's unit under its own savepoint (none
        needed for a batch of one). Returns its commit, one for all, for the leader or the
        committer thread to run; or ``None`` once it rolled back here and settled every
        ticket."""
        shared = len(tickets) > 1
        raw = None
        try:
            raw = self._writer_connection()
            cursor = raw.cursor()
            try:
                cursor.execute("BEGIN IMMEDIATE")
                ran: list[tuple[Ticket[Any], Any]] = []
                for ticket in tickets:
                    if shared:
                        cursor.execute("SAVEPOINT unit")
                    try:
                        tx = self._unit(cursor)  # its own: a failed unit's log goes with it
                        value = ticket.work(tx)
                        tx._flush_log()
                    except Exception as exc:  # an interrupt ends the whole batch instead
                        if not shared:
                            raise
                        # If SQLite already rolled the whole transaction back (I/O error,
                        # disk full), this raises too and the whole batch fails below.
                        cursor.execute("ROLLBACK TO unit")
                        cursor.execute("RELEASE unit")
                        ticket.failed(self._error(exc, raw))
                        continue
                    if shared:
                        cursor.execute("RELEASE unit")
                    ran.append((ticket, value))
                if not ran:
                    raw.rollback()
                    for ticket in tickets:
                        ticket.settle(None)  # every unit failed on its own: its own error
                    return None
                # Woken only now: a caller signing its tokens during the other units would
                # compete for the GIL with this thread, the one everybody waits for.
                for ticket, value in ran:
                    ticket.ran(value)
            finally:
                cursor.close()
        except Exception as exc:
            self._end_batch(tickets, raw, exc)
            return None
        except BaseException:
            # An interrupt (Ctrl-C) in this, the leader's thread: it goes on here, while the
            # batch's callers hear a retryable error, as their units were only rolled back.
            self._end_batch(tickets, raw, TemporarilyUnavailable("the batch was interrupted"))
            raise
        return partial(self._end_batch, tickets, raw, None)

    def _end_batch(
        self,
        tickets: list[Ticket[Any]],
        raw: PoolProxiedConnection | None,
        error: BaseException | None,
    ) -> None:
        """Commit the batch (roll it back instead on ``error``) and settle its tickets."""
        if raw is not None and error is None:
            try:
                self._commit(raw)
            except BaseException as exc:
                if not isinstance(exc, Exception) and not getattr(
                    raw.dbapi_connection, "in_transaction", True
                ):
                    # Interrupted (Ctrl-C) once the commit was done: the batch is durable and
                    # answered so, or its callers would retry tokens it consumed.
                    for ticket in tickets:
                        ticket.settle(None)
                    raise
                error = exc
        if error is not None:
            translated = self._error(error, raw)
            if raw is not None:
                self._rollback(raw)
                if translated is not error or not raw.is_valid:
                    # A database error: the connection goes back to the pool (which drops
                    # it if it was invalidated) and the next batch checks one out.
                    self._writer = None
                    raw.close()  # back to the pool, or discarded if it was invalidated
            error = translated
        for ticket in tickets:
            ticket.settle(error)

    def _writer_connection(self) -> PoolProxiedConnection:
        # Group leaders run one at a time, so they share one connection instead of a pool
        # round trip per batch.
        if self._writer is None:
            self._writer = self._checkout()
        return self._writer

    def _error(self, exc: BaseException, raw: PoolProxiedConnection | None) -> BaseException:
        """What a caller should see for ``exc``: SQLAlchemy's and the driver's errors
        translated (a disconnect invalidates ``raw``), ours as they are."""
        translated: BaseException
        if isinstance(exc, DBAPIError):
            translated = translate(exc.orig, disconnect=exc.connection_invalidated)
        elif isinstance(exc, self._driver_error) and raw is not None:
            translated = self._translate(exc, raw)
        else:
            return exc
        translated.__cause__ = exc
        return translated

    def _checkout(self) -> PoolProxiedConnection:
        """A pooled connection. On PostgreSQL, none to be had (no host of the URL is an
        accepting primary, or the pool stayed exhausted for the connect timeout) is
        retryable: the unit of work has not started."""
        try:
            return self.engine.raw_connection()
        except PoolTimeout as exc:
            raise busy() from exc
        except (self._driver_error, DBAPIError) as exc:
            orig = exc.orig if isinstance(exc, DBAPIError) else exc
            if self._dialect == "postgresql":
                raise unreachable(orig) from exc
            raise translate(orig, disconnect=False) from exc

    def _commit(self, raw: PoolProxiedConnection) -> None:
        """Commit. A connection lost once ``COMMIT`` was sent leaves the outcome unknown:
        :class:`CommitInDoubt`, for the caller to read back what its unit wrote. (SQLite
        has no connection to lose: its commit either happened or raised.)"""
        try:
            raw.commit()
        except self._driver_error as exc:
            if not self._lost(exc, raw):
                raise
            raise CommitInDoubt("the token store connection was lost during commit") from exc

    @staticmethod
    def _rollback(raw: PoolProxiedConnection) -> None:
        if not raw.is_valid:
            return  # dropped already (the commit found it dead): nothing to roll back
        try:
            raw.rollback()
        except Exception:
            # A dead connection cannot roll back; the server already discarded the work.
            raw.invalidate()

    def _translate(
        self, exc: Exception, raw: PoolProxiedConnection
    ) -> StoreError | TemporarilyUnavailable:
        return translate(exc, disconnect=self._lost(exc, raw))

    def _lost(self, exc: Exception, raw: PoolProxiedConnection) -> bool:
        """Whether ``exc`` means the connection is gone; if so, the pool drops it."""
        if not raw.is_valid:
            return True  # dropped already: the rollback after ``exc`` found it dead
        disconnect = getattr(exc, "sqlstate", None) in DISCONNECT_SQLSTATES or (
            self.engine.dialect.is_disconnect(cast(Any, exc), raw.dbapi_connection, None)
        )
        if disconnect and raw.is_valid:
            raw.invalidate()
        return disconnect

    @contextmanager
    def _connection(self, *, read_only: bool = False) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                if read_only:
                    conn.execution_options(**{READ_ONLY: True})
                with conn.begin():
                    yield conn
        except DBAPIError as exc:
            raise self._error(exc, None) from exc
        except PoolTimeout as exc:
            raise busy() from exc

    def family_tokens(self, family_id: str) -> list[TokenRecord]:
        with self._connection(read_only=True) as conn:
            sql = SQL[self._dialect]["family_tokens"]
            return [token_record(row) for row in conn.exec_driver_sql(sql, {"fid": family_id})]

    def client_registry(self) -> SqlClientRegistry:
        return SqlClientRegistry(self.engine)

    def audit_reader(self) -> SqlAuditReader:
        return SqlAuditReader(self.engine)

    def logout_outbox(self) -> SqlLogoutOutbox:
        return SqlLogoutOutbox(self.engine)

    def find_token(self, token_hash: bytes) -> TokenRecord | None:
        """The token and its family as last committed, read without a row lock or SQLite's
        write lock: introspection must not queue behind refreshes."""
        with self._connection(read_only=True) as conn:
            sql = SQL[self._dialect]["peek_token"]
            row = conn.exec_driver_sql(sql, {"h": token_hash}).first()
        return None if row is None else token_record(row)

    def load_revocations(self, now: float, horizon: float) -> RevocationSnapshot:
        since = now - horizon
        with self._connection(read_only=True) as conn:
            verifiable = {"verifiable_after": now - MAX_LEEWAY}
            denied = frozenset(conn.execute(LOAD_DENIED, verifiable).scalars())
            families = frozenset(conn.execute(LOAD_FAMILIES, {"since": since}).scalars())
            not_before = {row[0]: row[1] for row in conn.execute(LOAD_NOT_BEFORE, {"since": since})}
        return RevocationSnapshot(denied, families, not_before)

    # -- RevocationLog ------------------------------------------------------------------------
    def revocations_since(self, cursor: int, limit: int) -> list[LogEntry]:
        with self._connection(read_only=True) as conn:
            rows = conn.execute(LOG_SINCE, {"cursor": cursor, "n": limit})
            return [LogEntry(*row) for row in rows]

    def append_revocation(self, kind: str, key: str, at: float) -> None:
        self.atomic(lambda tx: tx._log_revocation(kind, key, at, None))

    def change_signal(self) -> ChangeSignal | None:
        """PostgreSQL pushes (``LISTEN``); elsewhere the feed polls (a signal that only
        waits)."""
        if self._dialect == "postgresql":
            return PgListener(self.engine)
        return Poll()

    def purge_expired(
        self, now: float, batch_size: int, horizon: float, proofs_before: float
    ) -> int:
        """One batch: families expired ``horizon`` seconds ago (so every access token they
        issued has expired too) with their rows, denylist rows of tokens that can no longer
        verify (``exp`` + ``MAX_LEEWAY`` passed, SECURITY B4), stale not-befores and log
        entries that no longer matter."""
        cutoff = now - horizon
        deleted = 0
        with self._connection() as conn:
            fids = list(conn.execute(EXPIRED_FAMILIES, {"cutoff": cutoff, "n": batch_size}))
            if fids:
                ids = [row[0] for row in fids]
                for stmt in PURGE:
                    deleted += conn.execute(stmt, {"fids": ids}).rowcount
            denied = {"verifiable_after": now - MAX_LEEWAY, "n": batch_size}
            deleted += conn.execute(PURGE_DENIED, denied).rowcount
            deleted += conn.execute(PURGE_NOT_BEFORE, {"cutoff": cutoff, "n": batch_size}).rowcount
            proofs = {"before": proofs_before, "n": batch_size}
            deleted += conn.execute(PURGE_PROOFS, proofs).rowcount
            log = {"now": now, "cutoff": cutoff, "n": batch_size}
            deleted += conn.execute(PURGE_LOG, log).rowcount
        return deleted

    def clear_salts(self, cutoff: float, batch_size: int) -> int:
        with self._connection() as conn:
            return conn.execute(CLEAR_SALTS, {"cutoff": cutoff, "n": batch_size}).rowcount

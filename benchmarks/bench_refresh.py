"""Refresh-token rotations per second: tokensmith's store/service against a bare transaction.

One table, one run. Rows: SQLite file in WAL mode with ``synchronous=FULL`` and ``NORMAL``,
and PostgreSQL when ``--pg URL`` or ``TOKENSMITH_TEST_PG_URL`` is given; 1 caller and 8
concurrent callers (threads, each rotating its own chain). Columns:

* (a) ``store``: the refresh's database work alone through tokensmith's store: one
  ``SqlStore.atomic`` unit per rotation doing the rotation's reads and writes through the
  store's transaction methods (token with family, compare-and-set, child, access record),
  exactly the shape of (c). On SQLite the store groups the commits of concurrent callers of
  one process (one transaction and one fsync per batch, ``tokensmith.store.sql.group``), so
  with 8 callers (a) can pass (c), which pays one transaction per rotation;
* (a') ``service``: ``RefreshService.rotate`` (fixed access jti/exp): (a) plus the token
  format check, hashing, the child's HMAC derivation, the rules and the ``rotated`` event;
* (b) ``full``: ``Tokensmith.refresh``, the rotation plus a signed ES256 access token and
  ID token (scope ``openid``), through the facade;
* (c) ``raw``: the same transaction shape on the bare driver (sqlite3 / psycopg): BEGIN
  (IMMEDIATE), select token+family, conditional UPDATE ... RETURNING, insert child, insert
  access record, COMMIT. It is the limit; ``a/c`` and ``b/c`` are ratios measured in the same
  run (``b/c`` says what share of the limit is left once two ES256 tokens are signed too; it
  carries (b) across machines whose disks and CPUs differ).

Each cell is warmed up, then runs ``--rounds`` (3) rounds; in each round (a), (b) and (c) run
for ``--seconds`` (1 s) or ``--max`` rotations per caller, whichever ends first, in an order
that alternates between rounds. Rates are medians; ratios are medians of per-round ratios
(ratios to the raw driver measured in the same run carry across machines).

    .venv/bin/python benchmarks/bench_refresh.py [--pg postgresql+psycopg://...]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, text

from tokensmith import Tokensmith
from tokensmith.clock import SystemClock
from tokensmith.events import EventBus
from tokensmith.refresh.service import RefreshService, Session
from tokensmith.settings import Settings
from tokensmith.store.records import NewToken
from tokensmith.store.sql import SqlStore, SqlTransaction, create_store_engine
from tokensmith.store.sql.models import metadata

ISSUER = "https://bench.example"
CALLERS = (1, 8)
WARMUP = 20
SERVICE = "(a') service"
Step = Callable[[int], None]


@dataclass
class Database:
    label: str
    url: str  # SQLAlchemy URL
    connect_args: dict[str, Any]
    synchronous: str = "FULL"
    sqlite_path: str | None = None
    pg_conninfo: str | None = None
    pg_schema: str | None = None


def _engine(db: Database) -> Engine:
    """tokensmith's engine on ``db``, with the schema in place."""
    engine = create_store_engine(
        db.url, connect_args=db.connect_args, sqlite_synchronous=db.synchronous
    )
    metadata.create_all(engine)
    return engine


# -- (a) the service -------------------------------------------------------------------------
def _service(db: Database) -> RefreshService:
    engine = _engine(db)
    settings = Settings(issuer=ISSUER, database_url=db.url, refresh_secret="bench-secret")
    return RefreshService(
        SqlStore(engine), settings=settings, clock=SystemClock(), events=EventBus()
    )


def _login(service: RefreshService, subject: str) -> Session:
    pending = service.start(
        subject=subject,
        client_id="spa",
        scope="openid",
        audience=("api",),
        auth_time=0,
        amr=(),
        acr=None,
        access_jti=f"{subject}-{secrets.token_hex(4)}",
        access_exp=2_000_000_000,
    )
    pending.durable()
    return pending.session


def service_callers(db: Database, callers: int) -> tuple[list[Step], Callable[[], None]]:
    """One rotation step per caller, each rotating its own chain through the service."""
    service = _service(db)

    def caller(n: int) -> Step:
        session = _login(service, f"user{n}")
        state = {"token": session.refresh_token or ""}
        prefix = f"{n}-{secrets.token_hex(4)}-"

        def step(i: int) -> None:
            pending = service.rotate(
                state["token"],
                client_id="spa",
                scope=None,
                access_jti=prefix + str(i),
                access_exp=2_000_000_000,
            )
            pending.durable()
            state["token"] = pending.session.refresh_token or ""

        return step

    return [caller(n) for n in range(callers)], service.store.engine.dispose  # type: ignore[attr-defined]


def store_callers(db: Database, callers: int) -> tuple[list[Step], Callable[[], None]]:
    """One rotation step per caller: the service's database work, through the store only."""
    service = _service(db)
    store = service.store
    assert isinstance(store, SqlStore)

    def caller(n: int) -> Step:
        session = _login(service, f"store{n}")
        state = {"hash": hashlib.sha256((session.refresh_token or "").encode()).digest()}
        prefix = f"s{n}-{secrets.token_hex(4)}-"
        salt = b"s" * 16

        def step(i: int) -> None:
            parent = state["hash"]
            child = hashlib.sha256(secrets.token_bytes(32)).digest()
            now = time.time()

            def work(tx: SqlTransaction) -> None:
                record = tx.get_token(parent)
                if record is None or not tx.mark_used(parent, now, None, None):
                    raise RuntimeError("store compare-and-set lost")
                family = record.family.id
                tx.insert_token(NewToken(child, family, parent, salt, now, now + 86_400))
                tx.record_access_token(prefix + str(i), family, 2_000_000_000.0)

            store.atomic(work)
            state["hash"] = child

        return step

    return [caller(n) for n in range(callers)], store.engine.dispose


# -- (b) full refresh with JWT signing (the facade) --------------------------------------------
def full_refresh_callers(db: Database, callers: int) -> tuple[list[Step], Callable[[], None]]:
    """Column (b): ``Tokensmith.refresh`` - the rotation plus a signed ES256 access token
    (and, with ``openid``, an ID token) - one chain per caller, on ``db``."""
    engine = _engine(db)
    keys_dir = tempfile.mkdtemp(prefix="bench-keys-")
    settings = Settings(
        issuer=ISSUER, database_url=db.url, keys_dir=keys_dir, refresh_secret="bench-secret"
    )
    ts = Tokensmith(settings, refresh_store=SqlStore(engine))
    ts.keys.ensure_active()

    def caller(n: int) -> Step:
        first = ts.issue(subject=f"user{n}", client_id="spa", scope="openid", audience="api")
        state = {"token": first.refresh_token or ""}

        def step(i: int) -> None:
            state["token"] = ts.refresh(state["token"], client_id="spa").refresh_token or ""

        return step

    def close() -> None:
        engine.dispose()
        shutil.rmtree(keys_dir, ignore_errors=True)

    return [caller(n) for n in range(callers)], close


# -- (c) the bare driver -------------------------------------------------------------------------
_SQL = {
    "select": "SELECT t.token_hash, t.parent_hash, t.salt, t.issued_at, t.expires_at, t.used_at,"
    " t.revoked_at, t.grace_retries, t.used_ip, t.used_user_agent, f.id, f.subject,"
    " f.client_id, f.scope, f.audience, f.auth_time, f.amr, f.acr, f.created_at,"
    " f.expires_at, f.revoked_at, f.revoke_reason FROM ts_refresh_tokens t JOIN ts_families f"
    " ON t.family_id = f.id WHERE t.token_hash = {p}",
    "update": "UPDATE ts_refresh_tokens SET used_at = {p}, used_ip = {p}, used_user_agent = {p}"
    " WHERE token_hash = {p} AND used_at IS NULL AND revoked_at IS NULL RETURNING token_hash",
    "child": "INSERT INTO ts_refresh_tokens (token_hash, family_id, parent_hash, salt, issued_at,"
    " expires_at, used_at, revoked_at, grace_retries, used_ip, used_user_agent)"
    " VALUES ({p}, {p}, {p}, {p}, {p}, {p}, NULL, NULL, 0, NULL, NULL)",
    "access": "INSERT INTO ts_access_tokens (jti, family_id, expires_at) VALUES ({p}, {p}, {p})",
}


def _raw_chain(execute: Callable[..., Any], begin: str, commit: Callable[[], None], n: int) -> Any:
    family = f"raw-{n}-{secrets.token_hex(4)}"
    now = time.time()
    token = hashlib.sha256(secrets.token_bytes(32)).digest()
    execute(begin)
    execute(
        "INSERT INTO ts_families (id, subject, client_id, scope, audience, auth_time, amr, acr,"
        " created_at, expires_at) VALUES ({p}, 'u', 'spa', 'openid', '[]', 0, '[]', NULL,"
        " {p}, {p})",
        (family, now, now + 86_400),
    )
    execute(_SQL["child"], (token, family, None, None, now, now + 86_400))
    commit()
    state = {"token": token}

    def step(i: int) -> None:
        now = time.time()
        parent = state["token"]
        child = hashlib.sha256(secrets.token_bytes(32)).digest()
        execute(begin)
        execute(_SQL["select"], (parent,), fetch=True)
        if execute(_SQL["update"], (now, None, None, parent), fetch=True) is None:
            raise RuntimeError("raw compare-and-set lost")
        execute(_SQL["child"], (child, family, parent, b"s" * 16, now, now + 86_400))
        execute(_SQL["access"], (f"{family}-{i}", family, 2_000_000_000.0))
        commit()
        state["token"] = child

    return step


def raw_callers(db: Database, callers: int) -> tuple[list[Step], Callable[[], None]]:
    """The same transaction shape on the bare driver, one connection per caller."""
    steps = []
    closers = []
    for n in range(callers):
        if db.sqlite_path is not None:
            conn = sqlite3.connect(
                db.sqlite_path, isolation_level=None, timeout=30, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={db.synchronous}")
            conn.execute("PRAGMA foreign_keys=ON")
            cur = conn.cursor()

            def execute(
                sql: str,
                params: tuple[Any, ...] = (),
                fetch: bool = False,
                cur: sqlite3.Cursor = cur,
            ) -> Any:
                cur.execute(sql.replace("{p}", "?"), params)
                return cur.fetchone() if fetch else None

            steps.append(
                _raw_chain(execute, "BEGIN IMMEDIATE", lambda c=cur: c.execute("COMMIT"), n)
            )
            closers.append(conn.close)
        else:
            import psycopg

            assert db.pg_conninfo is not None
            pconn = psycopg.connect(db.pg_conninfo, options=f"-csearch_path={db.pg_schema}")
            pcur = pconn.cursor()

            def pexecute(
                sql: str, params: tuple[Any, ...] = (), fetch: bool = False, pcur: Any = pcur
            ) -> Any:
                if sql == "BEGIN":
                    return None  # psycopg opens the transaction implicitly
                pcur.execute(sql.replace("{p}", "%s"), params, prepare=True)
                return pcur.fetchone() if fetch else None

            steps.append(_raw_chain(pexecute, "BEGIN", pconn.commit, n))
            closers.append(pconn.close)

    def close_all() -> None:
        for close in closers:
            close()

    return steps, close_all


# -- the harness ------------------------------------------------------------------------------
def _run(steps: list[Step], seconds: float, limit: int, offset: int) -> float:
    """Rotations per second over all callers; each caller runs until the time or count bound."""
    barrier = threading.Barrier(len(steps) + 1)
    counts = [0] * len(steps)
    errors: list[BaseException] = []

    def loop(k: int) -> None:
        barrier.wait()
        deadline = time.perf_counter() + seconds
        try:
            for i in range(limit):
                steps[k](offset + i)
                counts[k] = i + 1
                if time.perf_counter() >= deadline:
                    break
        except BaseException as exc:  # reported below; a benchmark must not hang
            errors.append(exc)

    threads = [threading.Thread(target=loop, args=(k,)) for k in range(len(steps))]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join(seconds * 10 + 60)
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return sum(counts) / elapsed


def _cell(db: Database, callers: int, args: argparse.Namespace) -> dict[str, float]:
    """Median rates over ``--rounds`` rounds; the columns alternate order every round so load
    from neighbours hits them alike; ``a/c`` and ``b/c`` are medians of per-round ratios."""
    impls: dict[str, tuple[list[Step], Callable[[], None]]] = {
        "a": store_callers(db, callers),
        "s": service_callers(db, callers),
        "b": full_refresh_callers(db, callers),
        "c": raw_callers(db, callers),
    }
    rates: dict[str, list[float]] = {name: [] for name in impls}
    ratios: dict[str, list[float]] = {"a/c": [], "b/c": []}
    offset = 0
    try:
        for steps, _close in impls.values():
            for i in range(WARMUP):
                for step in steps:
                    step(-1 - i)
        for r in range(args.rounds):
            order = list(impls)
            if r % 2:
                order.reverse()
            for name in order:
                rates[name].append(_run(impls[name][0], args.seconds, args.max, offset))
                offset += args.max
            for name in ("a", "b"):
                ratios[f"{name}/c"].append(rates[name][-1] / rates["c"][-1])
    finally:
        for _steps, close in impls.values():
            close()
    medians = {name: statistics.median(values) for name, values in rates.items()}
    medians.update({name: statistics.median(values) for name, values in ratios.items()})
    return medians


def _databases(tmp: Path, pg_url: str | None) -> list[Database]:
    dbs = []
    for sync in ("FULL", "NORMAL"):
        path = tmp / f"bench-{sync.lower()}.db"
        dbs.append(Database(f"SQLite WAL sync={sync}", f"sqlite:///{path}", {}, sync, str(path)))
    if pg_url:
        schema = f"bench_{secrets.token_hex(4)}"
        conninfo = pg_url.replace("postgresql+psycopg://", "postgresql://")
        dbs.append(
            Database(
                "PostgreSQL",
                pg_url,
                {"options": f"-csearch_path={schema}"},
                pg_conninfo=conninfo,
                pg_schema=schema,
            )
        )
    return dbs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pg", default=os.environ.get("TOKENSMITH_TEST_PG_URL"))
    parser.add_argument("--seconds", type=float, default=1.0, help="per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max", type=int, default=20_000, help="rotations per caller")
    args = parser.parse_args(argv)
    header = (
        f"{'database':<22} {'callers':>7} {'(a) store':>10} {SERVICE:>13} "
        f"{'(b) full':>10} {'(c) raw':>10} {'a/c':>6} {'b/c':>6}"
    )
    print("refresh rotations per second (one run; higher is better)")
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        for db in _databases(Path(tmp), args.pg):
            admin = None
            if db.pg_schema is not None:
                admin = create_engine(db.url, isolation_level="AUTOCOMMIT")
                with admin.connect() as conn:
                    conn.execute(text(f"CREATE SCHEMA {db.pg_schema}"))
            try:
                for callers in CALLERS:
                    m = _cell(db, callers, args)
                    print(
                        f"{db.label:<22} {callers:>7} {m['a']:>10,.0f} {m['s']:>13,.0f} "
                        f"{m['b']:>10,.0f} {m['c']:>10,.0f} {m['a/c']:>6.2f} {m['b/c']:>6.2f}",
                        flush=True,
                    )
            finally:
                if admin is not None:
                    with admin.connect() as conn:
                        conn.execute(text(f"DROP SCHEMA {db.pg_schema} CASCADE"))
                    admin.dispose()
    print(
        f"python {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs,"
        f" load average {os.getloadavg()[0]:.1f}; median of {args.rounds} interleaved rounds of"
        f" {args.seconds:g} s (or {args.max} rotations/caller) per cell"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

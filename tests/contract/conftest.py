"""The backend-neutral contract suite (ARCHITECTURE.md "Where to change what": a refresh-store
backend): every test
runs on the in-memory reference store, a SQLite file (WAL) and PostgreSQL, and looks at the
store only through its Protocols (:mod:`tokensmith.store.protocols`) and the services
built on them: never raw SQL or a table name. The SQL store's own tests (migrations, locks,
statement counts, faults, processes) live in ``tests/refresh/``.

PostgreSQL cases are skipped, visibly, only when ``TOKENSMITH_TEST_PG_URL`` is unset.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pytest

from tokensmith.clock import Clock
from tokensmith.errors import InvalidGrant, TemporarilyUnavailable
from tokensmith.refresh.service import RefreshService
from tokensmith.store.memory import MemoryStore
from tokensmith.store.protocols import RefreshStore, Registries
from tokensmith.store.records import FamilySummary, RevocationSnapshot, TokenRecord
from tokensmith.store.sql import SqlStore

from ..refresh.conftest import (  # noqa: F401  (bus, recorder and service are fixtures)
    Backend,
    bus,
    database,
    new_jti,
    recorder,
    schema_store,
    service,
    settled,
)

JOIN_TIMEOUT = 60


class Store(RefreshStore, Registries, Protocol):
    """What every store of tokensmith implements: refresh state, clients and audit trail."""


@dataclass
class Memory:
    """The memory store's stand-in for a database: one :class:`MemoryStore` that every
    "process" of a test opens (it cannot be shared between real processes)."""

    shared: MemoryStore = field(default_factory=MemoryStore)

    def store(self) -> MemoryStore:
        return self.shared


@pytest.fixture(
    params=["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
    ids=["on memory", "on SQLite", "on PostgreSQL"],
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend | Memory]:
    """Where the stored state lives: a fresh store, SQLite file or PostgreSQL schema."""
    if request.param == "memory":
        yield Memory()
    else:
        with database(request.param, tmp_path) as empty:
            yield empty


@pytest.fixture
def store(backend: Backend | Memory) -> Iterator[Store]:
    """An empty store with the current schema."""
    if isinstance(backend, Memory):
        yield backend.store()
    else:
        with schema_store(backend) as sql:
            yield sql


@pytest.fixture
def another_store(backend: Backend | Memory, store: Store) -> Iterator[Store]:
    """The same stored state as another process opens it (the memory store: itself)."""
    other = backend.store()
    try:
        yield other
    finally:
        if isinstance(other, SqlStore):
            other.engine.dispose()


# -- looking at the store through its protocols -------------------------------------------------
def sessions(store: Store, subject: str = "alice") -> list[FamilySummary]:
    """``subject``'s families, newest first, each with its revocation trail."""
    return store.audit_reader().list_families(subject)


def tokens(store: Store, subject: str = "alice") -> list[TokenRecord]:
    """Every stored refresh token of ``subject``'s families."""
    return [t for f in sessions(store, subject) for t in store.family_tokens(f.family_id)]


def active_tokens(store: RefreshStore, family_id: str) -> int:
    """How many of the family's refresh tokens could still be rotated (unused, unrevoked)."""
    return sum(
        1 for t in store.family_tokens(family_id) if t.used_at is None and t.revoked_at is None
    )


def everything_revoked(store: RefreshStore) -> RevocationSnapshot:
    """The whole revocation list, however old each entry (what the denylist table holds):
    a snapshot taken at the epoch, when no entry had expired yet."""
    return store.load_revocations(0.0, 0.0)


def assert_consistent(store: Store, *subjects: str) -> None:
    """At most one active token per family, and every used token has its child (no fork,
    no consumed token without a successor)."""
    for subject in subjects or ("alice",):
        for family in sessions(store, subject):
            chain = store.family_tokens(family.family_id)
            assert active_tokens(store, family.family_id) <= 1, family
            parents = {t.parent_hash for t in chain}
            assert all(t.token_hash in parents for t in chain if t.used_at is not None), family


def race(rotator: RefreshService, clock: Clock, token: str, callers: int) -> Counter[str]:
    """``callers`` threads present ``token`` at once; how many got what (``ok:<child>`` or
    the error's class name)."""
    barrier = threading.Barrier(callers, timeout=JOIN_TIMEOUT)
    outcomes: list[str] = []
    lock = threading.Lock()
    # Read here, once: a caller's only clock reading before its rotation is the service's.
    exp = int(clock.now()) + 300

    def present() -> None:
        barrier.wait()
        try:
            session = settled(
                rotator.rotate(
                    token, client_id="spa", scope=None, access_jti=new_jti(), access_exp=exp
                )
            )
            outcome = f"ok:{session.refresh_token}"
        except (InvalidGrant, TemporarilyUnavailable) as exc:
            outcome = type(exc).__name__
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=present) for _ in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_TIMEOUT)
    assert not any(t.is_alive() for t in threads)
    return Counter(outcomes)

"""Issue #16 Deliver 5 for the key schedule and cleanup: both decide under row locks inside
one transaction (the key store's state row ``FOR UPDATE``; expired families ``FOR UPDATE
SKIP LOCKED``), so a lost session rolls back whatever it had not committed and frees its
locks with it. The connection is cut (``cutter.py``) inside that transaction: the work is
rolled back or, its ``COMMIT`` delivered, done exactly once; the next round finishes it; and
two instances on the schedule at once never both rotate, also when one loses its connection
while the other waits behind its lock."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, func, make_url, select, text

from tests.failover.conftest import PG_URL, via
from tests.failover.cutter import Cut, Cutter
from tokensmith import Settings, Tokensmith
from tokensmith.clock import ManualClock
from tokensmith.errors import TemporarilyUnavailable
from tokensmith.events import EventBus
from tokensmith.keys import KeyManager
from tokensmith.keys.records import KeyRecord
from tokensmith.store.sql import SqlKeyStore, create_store_engine, upgrade
from tokensmith.store.sql.keys import private_keys, signing_keys
from tokensmith.store.sql.models import families

pytestmark = pytest.mark.postgres
ISSUER = "https://as.example.com"
PASSPHRASE = "correct horse battery staple"
START = 1_800_000_000.0
# tick()'s transactions: it reads the records, then rotates in the second (then reloads).
ROTATION = 2


@pytest.fixture
def direct(schema: str) -> str:
    """The schema's URL straight to the server, migrated."""
    url = via(make_url(PG_URL or "").port or 5432, schema)
    upgrade(url)
    return url


class Instances:
    """Key managers on one key store, each with an engine of its own (as many processes)."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.events: list[str] = []
        self._engines: list[Engine] = []

    def manager(self, url: str) -> KeyManager:
        engine = create_store_engine(url)
        self._engines.append(engine)
        bus = EventBus()
        bus.register(lambda event: self.events.append(event.name))
        return KeyManager(SqlKeyStore(engine, PASSPHRASE), Settings(issuer=ISSUER), self.clock, bus)

    def dispose(self) -> None:
        for engine in self._engines:
            engine.dispose()


@pytest.fixture
def instances() -> Iterator[Instances]:
    made = Instances(ManualClock(START))
    yield made
    made.dispose()


def _stored(url: str) -> tuple[list[KeyRecord], int]:
    """The records as committed, and how many private keys the store holds."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(signing_keys).order_by(signing_keys.c.position))
            records = [
                KeyRecord.from_json({k: v for k, v in r._mapping.items() if k != "position"})
                for r in rows
            ]
            keys = conn.execute(select(func.count()).select_from(private_keys)).scalar_one()
    finally:
        engine.dispose()
    return records, int(keys)


def _states(records: list[KeyRecord]) -> dict[str, str]:
    return {r.kid: r.state for r in records}


def _due(direct: str, instances: Instances) -> list[KeyRecord]:
    """An active and a pending key, and the clock past the rotation period."""
    first = instances.manager(direct)
    first.ensure_active()
    instances.clock.advance(first.settings.key_rotation_period + 1)
    records, keys = _stored(direct)
    assert sorted(_states(records).values()) == ["active", "pending"] and keys == 2
    return records


def _rotated_once(before: list[KeyRecord], after: list[KeyRecord], keys: int) -> None:
    """``after`` is ``before`` rotated exactly once, every record with its private key."""
    old = {r.state: r.kid for r in before}
    states = _states(after)
    assert states[old["active"]] == "retired"
    assert states[old["pending"]] == "active"
    new = [kid for kid in states if kid not in old.values()]
    assert len(new) == 1 and states[new[0]] == "pending", states
    assert keys == len(after) == 3  # nothing left of a rotation that was rolled back


@pytest.mark.parametrize(
    "cut",
    [
        Cut("statement", 2, transaction=ROTATION),
        Cut("statement", 5, transaction=ROTATION),
        Cut("commit", transaction=ROTATION),
    ],
    ids=["holding-the-lock", "new-key-half-written", "commit-not-sent"],
)
def test_a_rotation_cut_before_commit_is_rolled_back_and_the_next_round_rotates_once(
    direct: str, schema: str, cutter: Cutter, instances: Instances, cut: Cut
) -> None:
    before = _due(direct, instances)
    keys = instances.manager(via(cutter.port, schema))
    keys.signer()  # sealing key derived, records loaded: the next transactions are tick's
    cutter.arm(cut)
    with pytest.raises(TemporarilyUnavailable):
        keys.tick()
    assert cutter.fired.is_set()
    assert _stored(direct) == (before, 2)  # rolled back whole: no key, no half a key
    assert keys.tick() is True  # the next round takes the lock again and rotates
    _rotated_once(before, *_stored(direct))
    assert keys.tick() is False
    assert instances.events.count("key_rotated") == 1


def test_a_rotation_whose_commit_answer_was_lost_stands_and_is_not_done_again(
    direct: str, schema: str, cutter: Cutter, instances: Instances
) -> None:
    before = _due(direct, instances)
    keys = instances.manager(via(cutter.port, schema))
    keys.signer()
    cutter.arm(Cut("commit", deliver=True, transaction=ROTATION))
    with pytest.raises(TemporarilyUnavailable):
        keys.tick()  # in doubt: the schedule logs it and retries at the next interval
    assert cutter.fired.is_set()
    after, stored = _stored(direct)
    _rotated_once(before, after, stored)
    assert keys.tick() is False  # the next round finds it done
    assert keys.records() == tuple(after)
    assert _stored(direct) == (after, stored)


def _waiting_for_a_lock(url: str, needle: str, deadline: float) -> None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            while not conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND datname = current_database() AND query LIKE :q"
                ),
                {"q": f"%{needle}%"},
            ).scalar_one():
                assert time.monotonic() < deadline, "nobody queued behind the held lock"
                time.sleep(0.05)
    finally:
        engine.dispose()


def _in_thread(call: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(call())
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


@pytest.mark.parametrize(
    ("cut", "a_rotated"),
    [
        (Cut("statement", 5, transaction=ROTATION, hold=True), False),
        (Cut("commit", deliver=True, transaction=ROTATION, hold=True), True),
    ],
    ids=["cut-holding-the-lock", "cut-after-its-commit"],
)
def test_two_instances_on_the_schedule_rotate_once_when_one_loses_its_connection(
    direct: str, schema: str, cutter: Cutter, instances: Instances, cut: Cut, a_rotated: bool
) -> None:
    before = _due(direct, instances)
    a = instances.manager(via(cutter.port, schema))
    b = instances.manager(direct)
    a.signer()
    b.signer()
    cutter.arm(cut)
    a_thread, a_outcome = _in_thread(a.tick)
    assert cutter.reached.wait(30), "A never reached the cut"
    # A holds the state row; B's tick queues behind it.
    b_thread, b_outcome = _in_thread(b.tick)
    _waiting_for_a_lock(direct, "ts_key_store", time.monotonic() + 30)
    cutter.release()  # A's session dies: its lock with it
    a_thread.join(30)
    b_thread.join(30)
    assert isinstance(a_outcome[0], TemporarilyUnavailable)
    # B rotates only if A's rotation died with A's session; never both.
    assert b_outcome == [not a_rotated]
    _rotated_once(before, *_stored(direct))
    assert a.tick() is False and b.tick() is False
    assert _stored(direct)[0] == list(a.records()) == list(b.records())


# -- cleanup --------------------------------------------------------------------------------
EXPIRED = 8
LIVE = 2


def _tokensmith(tmp_path: Path, url: str, clock: ManualClock) -> Tokensmith:
    """An instance on the shared database (migrated, with the client, by ``expired``)."""
    settings = Settings(issuer=ISSUER, database_url=url, keys_dir=str(tmp_path / "keys"))
    ts = Tokensmith(settings, clock=clock)
    # Connected once (SQLAlchemy's first connect runs queries of its own): the next
    # transactions on the wire are cleanup's.
    assert ts.sessions.store.find_token(b"\0" * 32) is None
    return ts


@pytest.fixture
def expired(tmp_path: Path, direct: str) -> Iterator[ManualClock]:
    """``EXPIRED`` families past every token they issued and ``LIVE`` fresh ones; the clock
    stands where cleanup may purge the first."""
    clock = ManualClock(START)
    ts = _tokensmith(tmp_path, direct, clock)
    ts.setup()
    ts.register_client("spa", confidential=False)
    for i in range(EXPIRED):
        ts.issue(subject=f"old{i}", client_id="spa", audience="api")
    clock.advance(ts.settings.family_ttl + ts.settings.max_token_lifetime + 3600)
    for i in range(LIVE):
        ts.issue(subject=f"new{i}", client_id="spa", audience="api")
    ts.sessions.store.engine.dispose()  # type: ignore[attr-defined]
    yield clock


def _families(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(families)).scalar_one())
    finally:
        engine.dispose()


@pytest.fixture
def cleaner(
    tmp_path: Path, schema: str, cutter: Cutter, expired: ManualClock
) -> Iterator[Tokensmith]:
    ts = _tokensmith(tmp_path, via(cutter.port, schema), expired)
    yield ts
    ts.sessions.store.engine.dispose()  # type: ignore[attr-defined]


# cleanup()'s transactions: a batch of salts to clear (none here), then the purge.
PURGE = 2


@pytest.mark.parametrize(
    "cut",
    [
        Cut("statement", 2, transaction=PURGE),
        Cut("statement", 4, transaction=PURGE),
        Cut("commit", transaction=PURGE),
    ],
    ids=["families-locked", "tokens-half-deleted", "commit-not-sent"],
)
def test_a_cleanup_cut_before_commit_deletes_nothing_and_the_next_round_finishes(
    direct: str, cutter: Cutter, cleaner: Tokensmith, cut: Cut
) -> None:
    cutter.arm(cut)
    with pytest.raises(TemporarilyUnavailable):
        cleaner.cleanup()
    assert cutter.fired.is_set()
    assert _families(direct) == EXPIRED + LIVE
    assert cleaner.cleanup() > 0
    assert _families(direct) == LIVE
    assert cleaner.cleanup() == 0


def test_a_cleanup_whose_commit_answer_was_lost_stands_and_the_next_round_has_nothing_left(
    direct: str, cutter: Cutter, cleaner: Tokensmith
) -> None:
    cutter.arm(Cut("commit", deliver=True, transaction=PURGE))
    with pytest.raises(TemporarilyUnavailable):
        cleaner.cleanup()
    assert cutter.fired.is_set()
    assert _families(direct) == LIVE
    assert cleaner.cleanup() == 0


def test_a_second_cleaner_skips_the_batch_of_one_that_loses_its_connection(
    tmp_path: Path, direct: str, cutter: Cutter, cleaner: Tokensmith, expired: ManualClock
) -> None:
    other = _tokensmith(tmp_path, direct, expired)
    try:
        cutter.arm(Cut("statement", 3, transaction=PURGE, hold=True))
        a_thread, a_outcome = _in_thread(lambda: cleaner.cleanup(batch_size=3))
        assert cutter.reached.wait(30), "A never reached the cut"
        # A holds three expired families locked, their access tokens deleted: B purges the
        # others without waiting and without touching those.
        assert other.cleanup(batch_size=2) > 0
        assert _families(direct) == LIVE + 3
        cutter.release()
        a_thread.join(30)
        assert isinstance(a_outcome[0], TemporarilyUnavailable)
        assert _families(direct) == LIVE + 3  # A's batch rolled back, not half purged
        assert cleaner.cleanup(batch_size=3) > 0  # the next round re-locks and purges it
        assert _families(direct) == LIVE
    finally:
        other.sessions.store.engine.dispose()  # type: ignore[attr-defined]

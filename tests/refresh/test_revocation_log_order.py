"""The revocation log's ids grow in commit order on PostgreSQL too (store/sql/transaction.py):
a follower reading "after my cursor" never skips an entry that commits late with a lower id."""

from __future__ import annotations

import random
import threading
import time

from tokensmith.store.sql import SqlStore

from .conftest import only_postgresql

WRITERS = 6
ENTRIES_EACH = 15


@only_postgresql
def test_a_unit_holding_an_id_makes_later_units_wait_for_its_commit(
    store: SqlStore, another_store: SqlStore
) -> None:
    done = threading.Event()
    with store.transaction() as tx:
        tx.deny_access_token("first", 1e12)
        tx._flush_log()  # id 1 taken; the unit has not committed
        later = threading.Thread(
            target=lambda: (
                another_store.atomic(lambda t: t.deny_access_token("second", 1e12)),
                done.set(),
            )
        )
        later.start()
        time.sleep(0.3)
        assert not done.is_set()  # id 2 waits: it cannot commit before id 1
        assert another_store.revocations_since(0, 10) == []
    later.join(10)
    assert [(e.id, e.key) for e in store.revocations_since(0, 10)] == [(1, "first"), (2, "second")]


@only_postgresql
def test_a_follower_sees_every_entry_while_writers_commit_concurrently_and_slowly(
    store: SqlStore, another_store: SqlStore
) -> None:
    rng = random.Random(7)

    def write(n: int) -> None:
        for i in range(ENTRIES_EACH):
            with store.transaction() as tx:
                tx.deny_access_token(f"w{n}-{i}", 1e12)
                tx._flush_log()
                time.sleep(rng.random() / 100)  # commit late, holding its id

    seen: list[int] = []
    stop = threading.Event()

    def follow() -> None:
        cursor = 0
        while not stop.is_set() or cursor < WRITERS * ENTRIES_EACH:
            for entry in another_store.revocations_since(cursor, 50):
                seen.append(entry.id)
                cursor = entry.id

    follower = threading.Thread(target=follow)
    follower.start()
    writers = [threading.Thread(target=write, args=(n,)) for n in range(WRITERS)]
    for w in writers:
        w.start()
    for w in writers:
        w.join(60)
    stop.set()
    follower.join(30)
    assert seen == list(range(1, WRITERS * ENTRIES_EACH + 1))

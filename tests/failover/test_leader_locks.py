"""Issue #16 Deliver 5: the migration lock is a session-level advisory lock, lost with its
session on a failover. The migrations run in that very session, so losing it stops them
too: no other process can take the lock while they still run. (The key schedule and
cleanup decide under row locks inside one transaction, which a lost session rolls back.)"""

from __future__ import annotations

import os
import threading
import time
from urllib.parse import quote

import pytest
from sqlalchemy import create_engine, text

from tokensmith.store.sql import upgrade

PG_URL = os.environ.get("TOKENSMITH_TEST_PG_URL")
pytestmark = pytest.mark.postgres


@pytest.fixture
def schema_url(schema: str) -> str:
    return f"{PG_URL}?options={quote(f'-csearch_path={schema}')}"


def _advisory_holders(conn: object) -> list[int]:
    rows = conn.execute(  # type: ignore[attr-defined]
        text(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
    )
    return [row[0] for row in rows]


def test_losing_the_lock_session_stops_the_migration_it_guarded(schema_url: str) -> None:
    upgrade(schema_url, "0005")
    engine = create_engine(schema_url, isolation_level="AUTOCOMMIT")
    outcome: list[BaseException | None] = []

    def migrate() -> None:
        try:
            upgrade(schema_url)
        except BaseException as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    with engine.connect() as blocker, engine.connect() as admin:
        # Migration 0006 alters ts_families: hold it, so the upgrade waits mid-way.
        blocker.execute(text("BEGIN"))
        blocker.execute(text("LOCK TABLE ts_families IN ACCESS EXCLUSIVE MODE"))
        worker = threading.Thread(target=migrate)
        worker.start()
        deadline = time.monotonic() + 30
        while not (holders := _advisory_holders(admin)):
            assert time.monotonic() < deadline, "the upgrade never took its lock"
            time.sleep(0.05)
        # The lock's session dies, as on a failover.
        admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": holders[0]})
        worker.join(15)
        # The migration ended with its session, while ts_families is still locked: nothing
        # of it is left running that a second process taking the free lock would race.
        assert not worker.is_alive(), "the migration outlived the lock that guarded it"
        blocker.execute(text("ROLLBACK"))
    assert outcome and outcome[0] is not None
    # After the failover the next upgrade takes the lock again and finishes the job, from
    # the migration that was cut off.
    applied = upgrade(schema_url)
    assert applied[0].startswith("0006 Families keep their application claims")
    assert upgrade(schema_url) == []
    engine.dispose()

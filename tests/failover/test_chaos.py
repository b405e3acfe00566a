"""Issue #16 proof: the primary of the reference HA layout (``deploy/ha/cluster.sh``,
synchronous replication) is SIGKILLed while clients refresh through two instances. Only
503s while it is gone, back within 30 s, no acknowledged rotation lost, no used token
usable again. ``benchmarks/bench_failover.py`` runs the same with asynchronous replication
beside it."""

from __future__ import annotations

import gc
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from tests.failover import chaos, ha
from tests.failover.ha import NoPrimary, ha_cluster, unavailable_reason
from tokensmith import Settings, Tokensmith
from tokensmith.errors import InvalidGrant, TemporarilyUnavailable

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

# Small enough for CI's two cores, with the whole run (cluster start included) well inside
# four minutes; the benchmark takes more clients.
CLIENTS = 6


def test_a_killed_primary_costs_503s_for_seconds_and_loses_nothing(tmp_path: Path) -> None:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    report = _chaos_run(tmp_path)
    print(report.line())
    assert report.refreshes > 0
    assert set(report.failures) <= {"503 temporarily_unavailable"}, report.line()
    assert report.window <= 30, report.line()
    # The bound: a connect timeout per host, or the in-doubt read-back's wait.
    assert report.slowest <= Settings.database_in_doubt_timeout + 10, report.line()
    assert report.dead_chains == [], report.line()
    assert report.lost == 0 and report.resurrected == 0, report.line()


def _chaos_run(tmp_path: Path) -> chaos.ChaosReport:
    """The chaos run, once more on a fresh cluster if pg_auto_failover made no node primary
    again at all (seen once in CI in about ten runs, its logs lost with the cluster). With no
    writable primary there is nothing to judge of tokensmith; the first cluster's state and
    logs go to the real stderr, so the fault stays in the CI log even when the rerun passes."""
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    try:
        with ha_cluster("sync") as cluster:
            return chaos.run(cluster, "sync", first, clients=CLIENTS)
    except NoPrimary as exc:
        print(
            f"\n{__name__}: no primary after the kill; a fresh cluster once more.\n{exc}",
            file=sys.__stderr__,
        )
    with ha_cluster("sync") as cluster:
        return chaos.run(cluster, "sync", second, clients=CLIENTS)


# psycopg leaves a connection it refused for target_session_attrs (the standby, while
# the read-back polls) to the garbage collector; collected in the test (below), it is named.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_commit_cut_off_by_the_real_failover_is_read_back_from_the_new_primary(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The standby's WAL receiver is paused, so the rotation's ``COMMIT`` waits on the
    primary for the synchronous standby; then the primary is SIGKILLed and the receiver
    resumed. Whether the standby got the commit record is up to the race; either way the
    instance's answer must agree with what the new primary holds."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    with ha_cluster("sync") as cluster:
        ts = Tokensmith(
            Settings(
                issuer=chaos.ISSUER,
                database_url=cluster.url,
                keys_dir=str(tmp_path / "keys"),
                database_in_doubt_timeout=60.0,
            )
        )
        ts.setup()
        ts.register_client("spa", confidential=False)
        first = ts.issue(subject="alice", client_id="spa", audience="api").refresh_token
        parent = str(ts.refresh(str(first), client_id="spa").refresh_token)
        primary = int(cluster.run("primary"))
        standby = ha.PORT_BASE + 3 - (primary - ha.PORT_BASE)
        receiver = int(_sql(standby, "SELECT pid FROM pg_stat_wal_receiver"))
        answer: list[object] = []
        os.kill(receiver, signal.SIGSTOP)
        try:
            worker = threading.Thread(target=_refresh_into, args=(ts, parent, answer))
            worker.start()
            deadline = time.monotonic() + 30
            while (
                _sql(primary, "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'")
                == "0"
            ):
                assert time.monotonic() < deadline, "the commit never waited for the standby"
                time.sleep(0.05)
            cluster.kill_primary()
        finally:
            os.kill(receiver, signal.SIGCONT)
        worker.join(120)
        assert not worker.is_alive()
        assert "in-doubt rotation" in caplog.text
        cluster.wait_primary(60)
        outcome = answer[0]
        if isinstance(outcome, TemporarilyUnavailable):
            # Not committed where it counts: the parent is unused there, the retry rotates.
            print("in doubt under failover: not committed; the retry rotated")
            assert ts.refresh(parent, client_id="spa").refresh_token
        else:
            # Committed: the child answered works, and the parent is used (reuse).
            print("in doubt under failover: committed; the child was answered")
            child = str(outcome.refresh_token)  # type: ignore[attr-defined]
            assert ts.refresh(child, client_id="spa").refresh_token
            with pytest.raises(InvalidGrant):
                ts.refresh(parent, client_id="spa")
        ts.sessions.store.engine.dispose()  # type: ignore[attr-defined]
        gc.collect()


def _refresh_into(ts: Tokensmith, token: str, answer: list[object]) -> None:
    try:
        answer.append(ts.refresh(token, client_id="spa"))
    except TemporarilyUnavailable as exc:
        answer.append(exc)


def _sql(port: int, query: str) -> str:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/tokensmith"
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return str(conn.execute(text(query)).scalar_one())
    finally:
        engine.dispose()

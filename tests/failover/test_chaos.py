"""Issue #16 proof: the primary of the reference HA layout (``deploy/ha/cluster.sh``,
synchronous replication) is SIGKILLed while clients refresh through two instances. Only
503s while it is gone, back within 30 s, no acknowledged rotation lost, no used token
usable again. ``benchmarks/bench_failover.py`` runs the same with asynchronous replication
beside it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.failover import chaos
from tests.failover.ha import ha_cluster, unavailable_reason

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

# Small enough for CI's two cores, with the whole run (cluster start included) well inside
# four minutes; the benchmark takes more clients.
CLIENTS = 6


def test_a_killed_primary_costs_503s_for_seconds_and_loses_nothing(tmp_path: Path) -> None:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    with ha_cluster("sync") as cluster:
        report = chaos.run(cluster, "sync", tmp_path, clients=CLIENTS)
    print(report.line())
    assert report.refreshes > 0
    assert set(report.failures) <= {"503 temporarily_unavailable"}, report.line()
    assert report.window <= 30, report.line()
    assert report.dead_chains == [], report.line()
    assert report.lost == 0 and report.resurrected == 0, report.line()

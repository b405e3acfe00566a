"""The failover chaos run (``tests/failover/chaos.py``) with synchronous and asynchronous
replication side by side (issue #16; README "High availability").

Each row starts the reference cluster (``deploy/ha/cluster.sh``), lets N clients refresh
their chains through two ``tokensmith serve`` instances, SIGKILLs the primary's node and
goes on until refreshes succeed again. It reports the unavailability window, failed
requests by kind, acknowledged rotations lost and used tokens resurrected. With
asynchronous replication the standby may lack the last commits the primary acknowledged:
those rotations are lost, and their parents are usable again.

    python benchmarks/bench_failover.py --clients 8

Needs pg_auto_failover (``apt-get install postgresql-15-auto-failover``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.failover import chaos  # noqa: E402
from tests.failover.ha import ha_cluster, unavailable_reason  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--modes", default="sync,async")
    parser.add_argument("--logs", help="keep the instances' logs here (default: discarded)")
    args = parser.parse_args(argv)
    reason = unavailable_reason()
    if reason:
        print(f"bench_failover: {reason}", file=sys.stderr)
        return 2
    for mode in args.modes.split(","):
        with tempfile.TemporaryDirectory() as tmp, ha_cluster(mode) as cluster:
            logs = Path(args.logs or tmp) / mode
            logs.mkdir(parents=True, exist_ok=True)
            print(chaos.run(cluster, mode, logs, clients=args.clients).line(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

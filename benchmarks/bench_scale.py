"""Refresh throughput against one PostgreSQL with 1, 2 and 4 service processes.

Each row starts ``tokensmith serve --workers N`` (uvicorn worker processes sharing one
port, the SQL key store and one database schema) and drives full refreshes through
``POST /token`` with wrk: every connection rotates its own chain of refresh tokens
(``_wrk_refresh.lua``). The table gives requests/s, errors (a correct run has 0) and the
ratio to one process. wrk, PostgreSQL and the servers share this machine's cores, so the
ratio says how far the service scales *here*; on a 2-core box it cannot reach N.

    python benchmarks/bench_scale.py --pg postgresql+psycopg://postgres@127.0.0.1:55432/db

Needs Debian's ``wrk`` and a PostgreSQL URL (``--pg`` or ``TOKENSMITH_TEST_PG_URL``).

``--ha`` adds the price of the reference HA layout (``deploy/ha/cluster.sh``, README "High
availability"): one process against its primary with the synchronous standby, then against
the same primary with ``synchronous_commit = local`` (a single primary's durability, no
wait for the standby), in the same run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_http import LUA_REFRESH, wrk  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from tests.failover.ha import ha_cluster  # noqa: E402
from tests.scale.cluster import postgres_cluster  # noqa: E402
from tokensmith import Settings, Tokensmith  # noqa: E402


def issue_tokens(env: dict[str, str], n: int, directory: Path) -> Path:
    ts = Tokensmith(Settings.from_env(env))
    path = directory / f"tokens-{os.getpid()}-{n}.txt"
    lines = []
    for i in range(n):
        t = ts.issue(subject=f"user{i}", client_id="spa", scope="openid", audience="api")
        lines.append(str(t.refresh_token))
    path.write_text("\n".join(lines) + "\n")
    return path


def run_row(pg_url: str, processes: int, args: argparse.Namespace, tmp: Path) -> list[float]:
    rates: list[float] = []
    with postgres_cluster(pg_url, tmp) as cluster:
        cluster.cli("db", "upgrade")
        cluster.cli("keys", "generate")
        cluster.cli("clients", "add", "spa", "--public")
        cluster.start(1, log_dir=tmp, workers=processes)
        url = cluster.urls[0]
        # Warm-up: every worker imports, connects and loads keys before the timed runs.
        tokens = issue_tokens(cluster.env, args.connections, tmp)
        wrk(
            url,
            connections=args.connections,
            seconds=1,
            script=LUA_REFRESH,
            env={"TS_BENCH_TOKENS": str(tokens)},
        )
        for _ in range(args.runs):
            tokens = issue_tokens(cluster.env, args.connections, tmp)
            result = wrk(
                url,
                connections=args.connections,
                seconds=args.duration,
                script=LUA_REFRESH,
                env={"TS_BENCH_TOKENS": str(tokens)},
            )
            if result.errors:
                raise SystemExit(f"bench_scale: {result.errors} failed refreshes")
            rates.append(result.rate)
    return rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", default=os.environ.get("TOKENSMITH_TEST_PG_URL"))
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--connections", type=int, default=8, help="wrk -t N -c N")
    parser.add_argument("--duration", type=int, default=5, help="seconds per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 s runs, 1 run each")
    parser.add_argument("--ha", action="store_true", help="add the synchronous-standby rows")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.runs = 1, 1
    if shutil.which("wrk") is None:
        print("bench_scale: wrk is not installed; `apt-get install -y wrk`", file=sys.stderr)
        return 2
    if not args.pg:
        print("bench_scale: give --pg URL or TOKENSMITH_TEST_PG_URL", file=sys.stderr)
        return 2
    counts = [int(n) for n in args.processes.split(",")]
    print(
        f"bench_scale: nproc={os.cpu_count()}; load average {os.getloadavg()[0]:.2f}; "
        f"wrk -t {args.connections} -c {args.connections}; {args.runs} x {args.duration} s"
    )
    print(f"{'processes':>9}  {'refresh/s':>10}  {'vs 1 process':>12}  runs")
    base: float | None = None
    with tempfile.TemporaryDirectory() as tmp:
        for n in counts:
            rates = run_row(args.pg, n, args, Path(tmp))
            median = statistics.median(rates)
            base = base or median
            runs = ", ".join(f"{r:,.0f}" for r in rates)
            print(f"{n:>9}  {median:>10,.0f}  {median / base:>12.2f}  {runs}", flush=True)
        if args.ha:
            ha_rows(args, Path(tmp))
    return 0


def ha_rows(args: argparse.Namespace, tmp: Path) -> None:
    """One process on the HA cluster: with the synchronous standby, then without the wait."""
    print(f"{'HA primary':>22}  {'refresh/s':>10}  {'vs standby':>10}  runs")
    with ha_cluster("sync") as cluster:
        base: float | None = None
        for label, commit in (("+ synchronous standby", "on"), ("single (commit local)", "local")):
            admin = create_engine(cluster.url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f"ALTER DATABASE tokensmith SET synchronous_commit = {commit}"))
            admin.dispose()
            rates = run_row(cluster.url, 1, args, tmp)
            median = statistics.median(rates)
            base = base or median
            runs = ", ".join(f"{r:,.0f}" for r in rates)
            print(f"{label:>22}  {median:>10,.0f}  {median / base:>10.2f}  {runs}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())

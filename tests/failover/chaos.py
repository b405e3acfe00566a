"""The failover chaos run (issue #16): clients refresh their chains through two
``tokensmith serve`` instances on the HA cluster's multi-host URL while the primary is
SIGKILLed, then every chain is checked on the new primary.

Shared by ``tests/failover/test_chaos.py`` (synchronous replication, pass/fail) and
``benchmarks/bench_failover.py`` (synchronous and asynchronous side by side).
"""

from __future__ import annotations

import itertools
import os
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

from tests.failover.ha import HaCluster
from tests.scale.cluster import PASSPHRASE, Cluster
from tokensmith import Settings, Tokensmith
from tokensmith.refresh.opaque import token_hash

ISSUER = "http://127.0.0.1:9"


@dataclass
class Chain:
    """One client's refresh chain: every token it presented and had answered (used), and
    the last one it received (acknowledged)."""

    token: str
    used: list[str] = field(default_factory=list)
    dead: str | None = None  # why the chain ended during the run


@dataclass
class ChaosReport:
    mode: str
    clients: int
    refreshes: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    window: float = 0.0  # longest time without a successful refresh, around the kill
    slowest: float = 0.0  # the longest any one request took to be answered
    lost: int = 0  # acknowledged tokens that no longer work
    resurrected: int = 0  # used tokens the new primary holds as unused
    dead_chains: list[str] = field(default_factory=list)

    def line(self) -> str:
        kinds = ", ".join(f"{k}: {v}" for k, v in sorted(self.failures.items())) or "none"
        return (
            f"{self.mode:5} clients={self.clients} refreshes={self.refreshes} "
            f"unavailable={self.window:.1f}s slowest={self.slowest:.1f}s failures=({kinds}) "
            f"lost={self.lost} "
            f"resurrected={self.resurrected} dead_chains={len(self.dead_chains)}"
        )


def prepare(cluster: HaCluster, log_dir: Path) -> Cluster:
    env = {
        **os.environ,
        "TOKENSMITH_ISSUER": ISSUER,
        "TOKENSMITH_DATABASE_URL": cluster.url,
        "TOKENSMITH_KEY_STORE": "sql",
        "TOKENSMITH_KEY_PASSPHRASE": PASSPHRASE,
        "TOKENSMITH_KEYS_DIR": str(log_dir / "unused-keys"),
    }
    env.pop("TOKENSMITH_TEST_PG_URL", None)
    serve = Cluster(env)
    serve.cli("db", "upgrade")
    serve.cli("keys", "generate")
    serve.cli("clients", "add", "spa", "--public")
    return serve


def run(
    cluster: HaCluster,
    mode: str,
    log_dir: Path,
    *,
    clients: int = 8,
    before: float = 3.0,
    after: float = 4.0,
    limit: float = 90.0,
) -> ChaosReport:
    """Refresh for ``before`` seconds, kill the primary, go on until refreshes have
    succeeded again for ``after`` seconds (at most ``limit`` seconds in all), then check."""
    serve = prepare(cluster, log_dir)
    ts = Tokensmith(Settings.from_env(serve.env))
    chains = [
        Chain(str(ts.issue(subject=f"u{i}", client_id="spa", audience="api").refresh_token))
        for i in range(clients)
    ]
    # Both engines (the refresh store's and the SQL key store's) let go of the primary that
    # is about to be killed: an open connection to it would only be closed by the garbage
    # collector, as a ResourceWarning in whichever later test it happens to run.
    ts.sessions.store.engine.dispose()  # type: ignore[attr-defined]
    ts.keys.store.engine.dispose()  # type: ignore[attr-defined]
    serve.start(2, log_dir=log_dir)
    report = ChaosReport(mode, clients)
    successes: list[float] = []
    lock = threading.Lock()
    stop = threading.Event()
    try:

        def drive(chain: Chain, seed: int) -> None:
            pick = random.Random(seed)
            with httpx.Client(timeout=60) as http:
                while not stop.is_set():
                    url = pick.choice(serve.urls)
                    data = {"grant_type": "refresh_token", "client_id": "spa"}
                    sent = time.monotonic()
                    try:
                        r = http.post(f"{url}/token", data={**data, "refresh_token": chain.token})
                    except httpx.HTTPError as exc:
                        kind = f"transport {type(exc).__name__}"
                        with lock:
                            report.failures[kind] += 1
                        time.sleep(0.2)
                        continue
                    with lock:
                        report.slowest = max(report.slowest, time.monotonic() - sent)
                    if r.status_code == 200:
                        with lock:
                            chain.used.append(chain.token)
                            chain.token = r.json()["refresh_token"]
                            report.refreshes += 1
                            successes.append(time.monotonic())
                        continue
                    kind = f"{r.status_code} {r.json().get('error')}"
                    if r.status_code == 503 and r.headers.get("Retry-After") != "1":
                        kind += " without Retry-After"
                    with lock:
                        report.failures[kind] += 1
                    if r.status_code != 503:
                        chain.dead = kind
                        return
                    # Retry-After is 1 s; a shorter pause measures the window more finely.
                    time.sleep(0.2)

        threads = [threading.Thread(target=drive, args=(c, i)) for i, c in enumerate(chains)]
        for t in threads:
            t.start()
        start = time.monotonic()
        time.sleep(before)
        cluster.kill_primary()
        kill_at = time.monotonic()  # once it is dead: no later success is the old primary's
        while time.monotonic() - start < limit:
            time.sleep(0.25)
            with lock:
                recovered = [s for s in successes if s > kill_at]
            if recovered and time.monotonic() - recovered[0] >= after:
                break
        stop.set()
        for t in threads:
            t.join(90)
        report.window = _longest_gap(sorted(successes), kill_at)
        report.dead_chains = [c.dead for c in chains if c.dead]
        cluster.wait_primary(60)
        _check(serve, chains, report)
    finally:
        serve.stop()
    return report


def _longest_gap(successes: list[float], kill_at: float) -> float:
    """The longest stretch without a completed refresh that spans the kill."""
    before = [s for s in successes if s <= kill_at]
    after = [s for s in successes if s > kill_at]
    if not after:
        return float("inf")
    times = [before[-1] if before else kill_at, *after]
    return max(b - a for a, b in itertools.pairwise(times))


def _check(serve: Cluster, chains: list[Chain], report: ChaosReport) -> None:
    """On the new primary: each chain's last acknowledged token still works, and every
    token it used is stored as used (so presenting it is refused as reuse)."""
    engine = create_engine(serve.env["TOKENSMITH_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            for chain in chains:
                rows = dict(
                    conn.execute(
                        text(
                            "SELECT token_hash, used_at IS NOT NULL FROM ts_refresh_tokens"
                            " WHERE family_id = (SELECT family_id FROM ts_refresh_tokens"
                            " WHERE token_hash = :h)"
                        ),
                        {"h": token_hash(chain.used[0] if chain.used else chain.token)},
                    ).all()
                )
                report.resurrected += sum(
                    1 for t in chain.used if not rows.get(token_hash(t), True)
                )
                # A used token whose row vanished is a lost rotation's parent, resurrected too:
                # the chain it belongs to is gone, so the lost count covers it.
    finally:
        engine.dispose()
    url = serve.urls[0]
    with httpx.Client(timeout=60) as http:
        for chain in chains:
            data = {"grant_type": "refresh_token", "client_id": "spa"}
            r = http.post(f"{url}/token", data={**data, "refresh_token": chain.token})
            if r.status_code != 200:
                report.lost += 1
                continue
            if chain.used:  # the last token it used: refused as reuse, nothing new issued
                r = http.post(f"{url}/token", data={**data, "refresh_token": chain.used[-1]})
                if r.status_code == 200:
                    report.resurrected += 1

"""Requests per second on ONE uvicorn worker, against the limits measured in the same run.

One table, one run. Rows, all served by the same uvicorn process (``--workers 1``,
httptools with its limits on uvloop as ``tokensmith serve`` runs it, ``--no-access-log``,
loopback, a free port; the app is ``benchmarks/_http_app.py``):

1. ``constant``: a plain Starlette endpoint returning a small constant JSON — the limit of
   this server, event loop and HTTP parser;
2. ``jwks``: ``GET /.well-known/jwks.json``;
3. ``refresh http``: a full refresh through ``POST /token``; every wrk connection rotates
   its own chain (``_wrk_refresh.lua``: the next request presents the refresh token from
   the previous response; anything but a 200 is an error, and a correct run has 0);
4. ``refresh facade``: ``ts.refresh(...)`` in-process, one thread, same database and
   settings — the denominator of the refresh target.

Ratios: ``jwks / constant`` (target >= 0.80) and ``refresh http / refresh facade``
(target >= 0.50). Each cell is the median of ``--runs`` runs of ``--duration`` seconds,
rows interleaved round by round, after one warm-up of each. wrk and the server share the
machine's cores (2 here), so the HTTP rows include the load generator's own cost.
The ``CPU us/req`` column is the server process's CPU time (all threads, from ``/proc``)
per request — for the facade row, this process's — a cross-check that other load on the
machine disturbs less than req/s; each ratio is also shown computed from it.

With ``--pg URL`` (or ``TOKENSMITH_TEST_PG_URL``) the refresh rows are repeated on
PostgreSQL in a fresh schema, with a second server.

Needs Debian's ``wrk`` (``apt-get install -y wrk``).

    .venv/bin/python benchmarks/bench_http.py [--duration 5] [--quick] [--pg URL]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.client
import os
import platform
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from urllib.parse import quote

from tokensmith import Settings, Tokensmith

HERE = Path(__file__).resolve().parent
LUA_REFRESH = HERE / "_wrk_refresh.lua"
CLIENT_ID = "spa"
JWKS_TARGET = 0.80
REFRESH_TARGET = 0.50
FACADE_MAX = 1_000_000  # refreshes per facade run, on top of the time bound
READY_TIMEOUT = 20.0


@dataclass
class Result:
    rate: float  # requests (or refreshes) per second
    errors: int
    cpu_us: float = float("nan")  # CPU microseconds the server (or facade) spent per request


@dataclass
class Cell:
    rates: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    errors: int = 0

    @property
    def median(self) -> float:
        return statistics.median(self.rates) if self.rates else float("nan")

    @property
    def median_cpu_us(self) -> float:
        return statistics.median(self.cpu_us) if self.cpu_us else float("nan")


# -- the server --------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _env(port: int, database_url: str, keys_dir: Path) -> dict[str, str]:
    return {
        "TOKENSMITH_ISSUER": f"http://127.0.0.1:{port}",
        "TOKENSMITH_DATABASE_URL": database_url,
        "TOKENSMITH_KEYS_DIR": str(keys_dir),
        "TOKENSMITH_REFRESH_SECRET": "bench-http-secret",
    }


@contextlib.contextmanager
def serve(env: dict[str, str], port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``uvicorn`` with one worker in a subprocess; stopped (SIGTERM, then SIGKILL) on exit."""
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "_http_app:app",
        "--app-dir",
        str(HERE),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        # What ``tokensmith serve`` runs: httptools' parser, with its limits, on uvloop.
        "--http",
        "tokensmith.http.limits:BoundedHttpToolsProtocol",
        "--loop",
        "uvloop",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=out, stderr=out)
    try:
        _wait_ready(proc, port, log)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _wait_ready(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"uvicorn exited with {proc.returncode}:\n{log.read_text()}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/bench/constant")
            if conn.getresponse().status == 200:
                conn.close()
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"uvicorn did not answer within {READY_TIMEOUT:.0f} s:\n{log.read_text()}")


# -- wrk ---------------------------------------------------------------------------------------
_RATE = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_LUA = re.compile(r"^TS_BENCH ok=(\d+) errors=(\d+)", re.MULTILINE)


def wrk(
    url: str,
    *,
    connections: int,
    seconds: int,
    script: Path | None = None,
    env: dict[str, str] | None = None,
) -> Result:
    """One bounded wrk run (``-t N -c N``: one connection per thread)."""
    cmd = ["wrk", "-t", str(connections), "-c", str(connections), "-d", f"{seconds}s"]
    if script is not None:
        cmd += ["-s", str(script)]
    result = subprocess.run(
        [*cmd, url],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=False,
    )
    if result.stderr.strip():
        print(result.stderr.rstrip(), file=sys.stderr)
    rate = _RATE.search(result.stdout)
    if result.returncode != 0 or rate is None:
        raise SystemExit(f"wrk failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    errors = 0
    if match := _NON_2XX.search(result.stdout):
        errors += int(match.group(1))
    if match := _SOCKET.search(result.stdout):
        errors += sum(int(n) for n in match.groups())
    if match := _LUA.search(result.stdout):
        # The Lua counter includes the non-2xx answers and 200s without a refresh token.
        errors = max(errors, int(match.group(2)))
    return Result(float(rate.group(1)), errors)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads), from ``/proc``; NaN
    where there is no ``/proc``. Less sensitive to other load on the machine than req/s."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return float("nan")
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _with_server_cpu(pid: int, run: Callable[[], Result], seconds: int) -> Result:
    before = process_cpu_seconds(pid)
    result = run()
    used = process_cpu_seconds(pid) - before
    requests = result.rate * seconds
    result.cpu_us = used / requests * 1e6 if requests else float("nan")
    return result


# -- rows --------------------------------------------------------------------------------------
@dataclass
class Target:
    ts: Tokensmith
    base: str  # http://127.0.0.1:PORT
    server_pid: int
    connections: int
    tmp: Path

    def issue_tokens(self, n: int) -> Path:
        """``n`` fresh refresh tokens (new families), one a line, for the wrk threads."""
        path = self.tmp / f"tokens-{secrets.token_hex(4)}.txt"
        tokens = [self._issue(f"user{i}") for i in range(n)]
        path.write_text("".join(f"{t}\n" for t in tokens))
        return path

    def _issue(self, subject: str) -> str:
        token = self.ts.issue(
            subject=subject, client_id=CLIENT_ID, scope="openid", audience="api"
        ).refresh_token
        assert token is not None
        return token

    def prime(self) -> None:
        """One request of each kind before any timing: the server opens its database,
        compiles its statements and loads its keys here, not inside a measured run."""
        port = int(self.base.rsplit(":", 1)[1])
        form = f"grant_type=refresh_token&client_id={CLIENT_ID}&refresh_token=" + self._issue(
            "prime"
        )
        requests = [
            ("GET", "/bench/constant", None, {}),
            ("GET", "/.well-known/jwks.json", None, {}),
            ("POST", "/token", form, {"Content-Type": "application/x-www-form-urlencoded"}),
        ]
        for method, path, body, headers in requests:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                text = response.read()
            finally:
                conn.close()
            if response.status != 200:
                raise SystemExit(f"{method} {path}: HTTP {response.status}: {text[:200]!r}")

    def get(self, path: str, seconds: int) -> Result:
        def run() -> Result:
            return wrk(self.base + path, connections=self.connections, seconds=seconds)

        return _with_server_cpu(self.server_pid, run, seconds)

    def refresh_http(self, seconds: int) -> Result:
        tokens = self.issue_tokens(self.connections)

        def run() -> Result:
            return wrk(
                self.base + "/token",
                connections=self.connections,
                seconds=seconds,
                script=LUA_REFRESH,
                env={"TS_BENCH_TOKENS": str(tokens), "TS_BENCH_CLIENT": CLIENT_ID},
            )

        try:
            return _with_server_cpu(self.server_pid, run, seconds)
        finally:
            tokens.unlink()

    def refresh_facade(self, seconds: float) -> Result:
        """One thread rotating one chain through ``ts.refresh`` for ``seconds``."""
        token = self._issue("facade")
        done = 0
        cpu = time.process_time()
        start = time.perf_counter()
        deadline = start + seconds
        while done < FACADE_MAX:
            next_token = self.ts.refresh(token, client_id=CLIENT_ID).refresh_token
            assert next_token is not None
            token = next_token
            done += 1
            if time.perf_counter() >= deadline:
                break
        elapsed = time.perf_counter() - start
        return Result(done / elapsed, 0, (time.process_time() - cpu) / done * 1e6)


Row = tuple[str, Callable[[int], Result]]


def measure(rows: list[Row], *, runs: int, seconds: int, warmup: int) -> dict[str, Cell]:
    """Warm every row once, then ``runs`` rounds of every row in turn (drift hits all)."""
    if warmup:
        for _name, run in rows:
            run(warmup)
    cells = {name: Cell() for name, _ in rows}
    for _ in range(runs):
        for name, run in rows:
            result = run(seconds)
            cells[name].rates.append(result.rate)
            cells[name].cpu_us.append(result.cpu_us)
            cells[name].errors += result.errors
            if result.rate <= 0:  # nothing completed within the run: as bad as a failure
                cells[name].errors += 1
    return cells


# -- databases ---------------------------------------------------------------------------------
@contextlib.contextmanager
def postgres_schema(url: str) -> Iterator[str]:
    """A fresh schema on ``url``; yields the URL that puts it first on the search path."""
    from sqlalchemy import create_engine, text

    schema = f"bench_http_{secrets.token_hex(4)}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in url else "?"
    try:
        yield f"{url}{sep}options={quote(f'-csearch_path={schema}', safe='')}"
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


def prepare(env: dict[str, str]) -> Tokensmith:
    ts = Tokensmith(Settings.from_env(env))
    ts.setup()
    ts.register_client(CLIENT_ID, confidential=False)
    return ts


# -- the table ---------------------------------------------------------------------------------
def _fmt_row(label: str, cell: Cell, note: str) -> str:
    runs = ", ".join(f"{r:,.0f}" for r in cell.rates)
    cpu = cell.median_cpu_us
    return f"{label:<16} {cell.median:>8,.0f}  {cell.errors:>6}  {cpu:>10,.0f}  {runs:<24} {note}"


def _ratio(label: str, num: Cell, den: Cell, target: float) -> tuple[str, bool]:
    value = num.median / den.median
    met = value >= target
    by_cpu = den.median_cpu_us / num.median_cpu_us  # the same ratio from CPU per request
    line = (
        f"{label:<30} {value:>6.2f}  >= {target:.2f}  {'met' if met else 'MISSED':<6}  "
        f"(from CPU us/req: {by_cpu:.2f})"
    )
    return line, met


NOTES = {
    "constant": "plain Starlette route, same process (the limit)",
    "jwks": "GET /.well-known/jwks.json",
    "refresh http": "POST /token, one refresh chain per connection",
    "refresh facade": "ts.refresh() in-process, 1 thread (CPU: this process)",
}


def bench_database(kind: str, pg_url: str | None, args: argparse.Namespace) -> dict[str, Cell]:
    """Set up a database and keys, start the server, and measure this database's rows."""
    with (
        tempfile.TemporaryDirectory(prefix="bench-http-") as tmp_name,
        contextlib.ExitStack() as stack,
    ):
        tmp = Path(tmp_name)
        if pg_url is None:
            db_url = f"sqlite:///{tmp / 'ts.db'}"
        else:
            db_url = stack.enter_context(postgres_schema(pg_url))
        port = _free_port()
        env = _env(port, db_url, tmp / "keys")
        ts = prepare(env)
        server = stack.enter_context(serve(env, port, tmp / "uvicorn.log"))
        target = Target(ts, f"http://127.0.0.1:{port}", server.pid, args.connections, tmp)
        target.prime()
        rows: list[Row] = []
        if kind == "sqlite":  # the GET rows do not touch the database: measured once
            rows += [
                ("constant", functools.partial(target.get, "/bench/constant")),
                ("jwks", functools.partial(target.get, "/.well-known/jwks.json")),
            ]
        rows += [("refresh http", target.refresh_http), ("refresh facade", target.refresh_facade)]
        return measure(rows, runs=args.runs, seconds=args.duration, warmup=args.warmup)


def report(kind: str, cells: dict[str, Cell]) -> list[str]:
    """Print one database's rows and ratios; returns the labels of the missed targets."""
    print()
    print(f"[{kind}]")
    print(f"{'row':<16} {'req/s':>8}  {'errors':>6}  {'CPU us/req':>10}  {'runs (req/s)':<24} note")
    for name, cell in cells.items():
        print(_fmt_row(name, cell, NOTES[name]))
    ratios = []
    if "constant" in cells:
        ratios.append(("jwks / constant", cells["jwks"], cells["constant"], JWKS_TARGET))
    ratios.append(
        (
            "refresh http / refresh facade",
            cells["refresh http"],
            cells["refresh facade"],
            REFRESH_TARGET,
        )
    )
    print()
    missed = []
    for label, num, den, goal in ratios:
        line, met = _ratio(label, num, den, goal)
        print(line)
        if not met:
            missed.append(label)
    return missed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per run (whole)")
    parser.add_argument("--runs", type=int, default=3, help="runs per cell; the median counts")
    parser.add_argument("--warmup", type=int, default=1, help="warm-up seconds per row (0: none)")
    parser.add_argument("--connections", type=int, default=8, help="wrk -t N -c N")
    parser.add_argument(
        "--quick", action="store_true", help="a smoke: 1 run of 1 s per row, no warm-up"
    )
    parser.add_argument("--pg", default=os.environ.get("TOKENSMITH_BENCH_PG_URL"))
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.runs, args.warmup = 1, 1, 0
    if min(args.duration, args.runs, args.connections) < 1 or args.warmup < 0:
        parser.error("--duration, --runs and --connections must be >= 1, --warmup >= 0")
    if shutil.which("wrk") is None:
        print(
            "bench_http: wrk is not installed; install it with `apt-get install -y wrk`",
            file=sys.stderr,
        )
        return 2

    cores = os.cpu_count() or 0
    print(
        f"bench_http: one uvicorn {version('uvicorn')} worker (--workers 1, httptools "
        f"{version('httptools')}, uvloop {version('uvloop')}), starlette "
        f"{version('starlette')}, Python {platform.python_version()}"
    )
    print(
        f"machine: nproc={cores}; wrk (-t {args.connections} -c {args.connections}) and the "
        f"server share these {cores} cores; load average at start "
        f"{os.getloadavg()[0]:.2f}"
    )
    print(
        f"each cell: median of {args.runs} x {args.duration} s runs, rows interleaved, "
        f"after a {args.warmup} s warm-up; CPU us/req = server process CPU (all threads) per "
        "request, a cross-check less sensitive to other load"
    )
    databases: list[tuple[str, str | None]] = [("sqlite", None)]
    if args.pg:
        databases.append(("postgresql", args.pg))

    missed: list[str] = []
    errors = 0
    for kind, pg_url in databases:
        cells = bench_database(kind, pg_url, args)
        missed += [f"{label} ({kind})" for label in report(kind, cells)]
        errors += sum(cell.errors for cell in cells.values())
    print()
    print(f"targets missed: {', '.join(missed) if missed else 'none'}")
    if errors:
        print(f"bench_http: {errors} failed requests; a correct run has 0", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The reference HA PostgreSQL (``deploy/ha/cluster.sh``) for tests and benchmarks: a
pg_auto_failover monitor, a primary and a standby on loopback ports of their own."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "ha" / "cluster.sh"
# Not 55432 (the dev/CI server); one cluster at a time per port base. Below Linux's
# ephemeral range (32768-60999), so no outgoing connection holds a node's port as its own
# and no reconnect to a killed node's port can connect to itself (TCP simultaneous open).
PORT_BASE = int(os.environ.get("TOKENSMITH_TEST_HA_PORT_BASE", "26000"))
LOG_LINES = 40  # of each service's log, in a failure's message


def unavailable_reason() -> str | None:
    """Why the cluster cannot run here, or ``None``. ``.ci/run`` installs pg_auto_failover."""
    if shutil.which("pg_autoctl") is None:
        return "pg_autoctl is missing: apt-get install postgresql-15-auto-failover"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root needs runuser to start PostgreSQL as postgres"
    return None


class NoPrimary(RuntimeError):
    """The manager made no node a writable primary in time: a fault of the HA layout, about
    which nothing can be judged of what runs on it."""


@dataclass
class HaCluster:
    directory: Path
    url: str

    def run(self, *args: str, timeout: float = 150) -> str:
        proc = subprocess.run(
            [str(SCRIPT), args[0], str(self.directory), *args[1:]],
            env={**os.environ, "HA_PORT_BASE": str(PORT_BASE)},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"cluster.sh {args[0]} failed: {proc.stderr.strip()[-2000:]}{self.diagnosis()}"
            )
        return proc.stdout.strip()

    def diagnosis(self) -> str:
        """The monitor's view and each service's last log lines: ``stop`` deletes the
        directory, so a failure has to carry them to be understood afterwards."""
        parts = []
        status = subprocess.run(
            [str(SCRIPT), "status", str(self.directory)],
            env={**os.environ, "HA_PORT_BASE": str(PORT_BASE)},
            capture_output=True,
            text=True,
            timeout=30,
        )
        parts.append(f"status:\n{status.stdout.strip() or status.stderr.strip()}")
        for name in ("monitor", "node1", "node2"):
            log = self.directory / f"{name}.log"
            if log.exists():
                tail = log.read_text(errors="replace").splitlines()[-LOG_LINES:]
                parts.append(f"{name}.log:\n" + "\n".join(tail))
        return "\n\n" + "\n\n".join(parts)

    def wait_primary(self, seconds: int) -> None:
        try:
            self.run("wait-primary", str(seconds))
        except RuntimeError as exc:
            raise NoPrimary(str(exc)) from None

    def kill_primary(self) -> str:
        return self.run("kill-primary")

    def status(self) -> str:
        return self.run("status")


@contextmanager
def ha_cluster(mode: str = "sync") -> Iterator[HaCluster]:
    """A running cluster (``mode``: ``sync`` or ``async`` replication), deleted afterwards."""
    # Under /tmp: the postgres user must reach it (pytest's tmp_path may be private).
    directory = Path(tempfile.mkdtemp(prefix="tokensmith-ha-"))
    directory.chmod(0o755)
    cluster = HaCluster(directory, "")
    try:
        cluster.url = cluster.run("start", mode, timeout=240).splitlines()[-1]
        yield cluster
    finally:
        cluster.run("stop", timeout=60)

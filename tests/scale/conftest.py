"""Fixtures of the live-cluster tests, over the ``cluster`` fixture each module builds (a
:class:`tests.scale.cluster.Cluster` with the ``rs`` client's secret in ``RS_SECRET``)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.scale.cluster import ISSUER, Cluster, free_port, wait_serving
from tokensmith import Settings, Tokensmith


@pytest.fixture(scope="module")
def resource_server(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """tests/scale/resource_server.py in its own process, following instance 0's feed;
    its base URL once it serves."""
    port = free_port()
    log = (tmp_path_factory.mktemp("rs") / "rs.log").open("wb")
    script = str(Path(__file__).with_name("resource_server.py"))
    proc = subprocess.Popen(
        [sys.executable, script, str(port), cluster.urls[0], ISSUER],
        env=cluster.env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    wait_serving(f"{url}/healthz", proc)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()


@pytest.fixture
def instance(cluster: Cluster) -> Iterator[Tokensmith]:
    """The test's own instance on the cluster's database, its connections closed
    afterwards."""
    ts = Tokensmith(Settings.from_env(cluster.env))
    try:
        yield ts
    finally:
        for engine in {ts.sessions.store.engine, ts.keys.store.engine}:  # type: ignore[attr-defined]
            engine.dispose()

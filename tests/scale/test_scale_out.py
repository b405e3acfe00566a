"""Scale-out on PostgreSQL (issue 5): three ``tokensmith serve`` processes on loopback share
one database and one SQL key store, and behave as one issuer."""

from __future__ import annotations

import base64
import json
import os
import shlex
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.scale.cluster import Cluster, postgres_cluster, tokensmith_exe

PG_URL = os.environ.get("TOKENSMITH_TEST_PG_URL")
pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One cluster for the module: starting three instances is the slow part."""
    tmp_path = tmp_path_factory.mktemp("cluster")
    if not PG_URL:
        pytest.skip("TOKENSMITH_TEST_PG_URL is not set: the scale-out test needs PostgreSQL")
    with postgres_cluster(PG_URL, tmp_path) as c:
        # Three processes migrating at once take turns (advisory lock), none fails.
        procs = [
            subprocess.Popen(
                [tokensmith_exe(), "db", "upgrade"],
                env=c.env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for _ in range(3)
        ]
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
        c.cli("keys", "generate")
        c.cli("clients", "add", "spa", "--public", "--scope", "openid", "--aud", "api")
        c.env["RS_SECRET"] = json.loads(c.cli("clients", "add", "rs", "--confidential", "--json"))[
            "client_secret"
        ]
        c.start(3, log_dir=tmp_path)
        yield c


def _kid(jwt: str) -> str:
    header = jwt.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"])


def _refresh(url: str, token: str) -> httpx.Response:
    data = {"grant_type": "refresh_token", "client_id": "spa", "refresh_token": token}
    return httpx.post(f"{url}/token", data=data, timeout=30)


def _login(c: Cluster) -> dict[str, str]:
    return dict(
        json.loads(c.cli(*shlex.split("token issue --sub alice --client spa --aud api --json")))
    )


def test_concurrent_refreshes_through_different_instances_have_one_winner(cluster: Cluster) -> None:
    c = cluster
    token = _login(c)["refresh_token"]
    barrier = threading.Barrier(9, timeout=30)
    results: list[httpx.Response] = []
    lock = threading.Lock()

    def present(url: str) -> None:
        barrier.wait()
        r = _refresh(url, token)
        with lock:
            results.append(r)

    threads = [threading.Thread(target=present, args=(url,)) for url in c.urls * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    statuses = Counter(r.status_code for r in results)
    assert statuses[200] == 1, [r.text for r in results]
    assert {r.json()["error"] for r in results if r.status_code != 200} <= {"invalid_grant"}
    engine = create_engine(c.env["TOKENSMITH_DATABASE_URL"])
    with engine.connect() as conn:
        live = conn.execute(
            text(
                "SELECT count(*) FROM ts_refresh_tokens"
                " WHERE used_at IS NULL AND revoked_at IS NULL"
            )
        ).scalar_one()
        forks = conn.execute(
            text(
                "SELECT count(*) FROM (SELECT parent_hash FROM ts_refresh_tokens WHERE parent_hash"
                " IS NOT NULL GROUP BY parent_hash HAVING count(*) > 1) f"
            )
        ).scalar_one()
    engine.dispose()
    assert forks == 0 and live <= 1


def test_a_key_rotated_through_one_process_is_served_and_used_by_all(cluster: Cluster) -> None:
    c = cluster
    before = {k["kid"] for k in httpx.get(f"{c.urls[0]}/.well-known/jwks.json").json()["keys"]}
    rotated = c.cli("keys", "rotate")
    new_kid = rotated.split()[1]
    deadline = time.monotonic() + 20
    for url in c.urls:
        while True:
            kids = {k["kid"] for k in httpx.get(f"{url}/.well-known/jwks.json").json()["keys"]}
            if new_kid in kids and len(kids - before) == 1:
                break
            assert time.monotonic() < deadline, f"{url} never published the new key"
            time.sleep(0.2)
    # Every instance signs with the new key once it has reloaded (within about a second).
    token = _login(c)["refresh_token"]
    for url in c.urls:
        while True:
            r = _refresh(url, token)
            assert r.status_code == 200, r.text
            token = r.json()["refresh_token"]
            if _kid(r.json()["access_token"]) == new_kid:
                break
            assert time.monotonic() < deadline, f"{url} kept signing with the old key"
            time.sleep(0.2)


def test_tokens_signed_by_any_instance_verify_at_every_instance(cluster: Cluster) -> None:
    c = cluster
    token = _login(c)["refresh_token"]
    access: list[str] = []
    for url in c.urls:
        r = _refresh(url, token)
        assert r.status_code == 200, r.text
        token = r.json()["refresh_token"]
        access.append(r.json()["access_token"])
    auth = ("rs", c.env["RS_SECRET"])
    for jwt in access:
        for url in c.urls:
            body = httpx.post(f"{url}/introspect", data={"token": jwt}, auth=auth).json()
            assert body["active"] is True and body["sub"] == "alice", (url, body)

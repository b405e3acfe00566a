"""Client deletion reaches every instance and remote verifier at once (README "Revocation
reach"): three ``tokensmith serve`` processes on PostgreSQL, a resource server in its own
process (tests/scale/resource_server.py: ``RemoteJwks`` + ``RemoteRevocations`` following
instance 0's feed), the CLI (``tokensmith clients delete`` / ``add``) as a fourth instance
and this test's ``Tokensmith`` as a fifth.

Deleting a client is logged as a client revocation (``client_disabled``): each instance
forgets the client from its cache when its feed applies the entry, so
``client_credentials`` and ``refresh_token`` for it are ``invalid_client`` there within
the reach bound (before, until the client cache's 5 s ttl ran out), and the resource
server refuses every token of the client. Registering the id again logs
``client_enabled``: the new client's tokens work everywhere; the old one's stay refused.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.scale.cluster import Cluster, migrated_cluster
from tokensmith import Tokensmith
from tokensmith.revocation.log import CLIENT_DISABLED, CLIENT_ENABLED

BOUND = 1.0  # the revocation reach (README "Revocation reach")
CLIENT = "svc"
pytestmark = [pytest.mark.postgres]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with migrated_cluster(tmp_path_factory, "clientdel") as (c, tmp_path):
        secret = json.loads(c.cli("clients", "add", "rs", "--confidential", "--json"))
        c.env["RS_SECRET"] = secret["client_secret"]
        c.start(3, log_dir=tmp_path)
        yield c


def _add_client(c: Cluster) -> str:
    out = c.cli("clients", "add", CLIENT, "--confidential", "--aud", "api", "--json")
    return str(json.loads(out)["client_secret"])


def _client_credentials(url: str, secret: str) -> httpx.Response:
    data = {"grant_type": "client_credentials", "audience": "api"}
    return httpx.post(f"{url}/token", data=data, auth=(CLIENT, secret), timeout=10)


def _refresh(url: str, secret: str, refresh_token: str) -> httpx.Response:
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return httpx.post(f"{url}/token", data=data, auth=(CLIENT, secret), timeout=10)


def _error(response: httpx.Response) -> str | None:
    return None if response.status_code == 200 else str(response.json()["error"])


def _accepted(rs: str, token: str) -> bool:
    r = httpx.get(f"{rs}/check", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert r.status_code in (200, 401), r.text
    return r.status_code == 200


def _eventually(check: Callable[[], bool], within: float) -> float | None:
    """Seconds until ``check()`` first held, or ``None`` if it did not within ``within``."""
    began = time.monotonic()
    while time.monotonic() - began < within:
        if check():
            return time.monotonic() - began
        time.sleep(0.02)
    return None


def _logged(ts: Tokensmith, kind: str) -> list[float]:
    """When ``kind`` was logged for the client (what ``GET /revocations`` serves)."""
    entries, _, _ = ts.revocations_since(0, 100_000)
    return [e.at for e in entries if e.kind == kind and e.key == CLIENT]


def test_delete_reaches_every_instance_and_remote_verifier_then_the_id_lives_again(
    cluster: Cluster, resource_server: str, instance: Tokensmith
) -> None:
    ts, rs = instance, resource_server
    secret = _add_client(cluster)
    # Every instance caches the client (a token each), and holds a refresh token of it.
    own = [_client_credentials(url, secret).json()["access_token"] for url in cluster.urls]
    user = ts.issue(subject="alice", client_id=CLIENT, audience="api")
    assert user.refresh_token is not None
    refreshed = _refresh(cluster.urls[2], secret, user.refresh_token).json()
    old_tokens = [*own, user.access_token, refreshed["access_token"]]
    assert _eventually(lambda: all(_accepted(rs, t) for t in old_tokens), 30) is not None

    # Deleted through the CLI; instances 1 and 2 are asked meanwhile, as fast as they answer.
    deleting = threading.Thread(target=cluster.cli, args=("clients", "delete", CLIENT))
    started = time.time()
    deleting.start()
    refused_at: dict[str, float] = {}
    deadline = time.monotonic() + 15
    while len(refused_at) < 2 and time.monotonic() < deadline:
        for url in cluster.urls[1:]:
            if url not in refused_at and _error(_client_credentials(url, secret)):
                refused_at[url] = time.time()
    deleting.join(30)
    # From the deletion's commit (its log entry's time; the command's start without one).
    logged = _logged(ts, CLIENT_DISABLED)
    deleted_at = logged[0] if logged else started
    reach = {url: round(at - deleted_at, 3) for url, at in refused_at.items()}
    print(json.dumps({"client_credentials_refused_after_s": reach}))
    assert len(reach) == 2 and max(reach.values()) < BOUND, reach
    assert len(logged) == 1
    for url in cluster.urls:
        assert _error(_client_credentials(url, secret)) == "invalid_client"
        assert _error(_refresh(url, secret, refreshed["refresh_token"])) == "invalid_client"
    # The remote verifier refuses every token the client had (its feed has the entry).
    took = _eventually(lambda: not any(_accepted(rs, t) for t in old_tokens), 10)
    assert took is not None and took < BOUND, took

    # The same id again: a new secret, tokens from every instance accepted everywhere.
    secret = _add_client(cluster)
    fresh = []
    for url in cluster.urls:
        took = _eventually(lambda u=url: _error(_client_credentials(u, secret)) is None, BOUND)
        assert took is not None, f"{url} refused the client registered again"
        fresh.append(_client_credentials(url, secret).json()["access_token"])
    again = ts.issue(subject="alice", client_id=CLIENT, audience="api")
    assert again.refresh_token is not None
    rotated = _refresh(cluster.urls[1], secret, again.refresh_token)
    assert rotated.status_code == 200, rotated.text
    fresh += [again.access_token, rotated.json()["access_token"]]
    took = _eventually(lambda: all(_accepted(rs, t) for t in fresh), 10)
    assert took is not None and took < BOUND, took
    assert ts.verify_access_token(fresh[0], audience="api", check_revoked=True)
    # The deleted client's tokens and refresh tokens stay refused.
    assert not any(_accepted(rs, t) for t in old_tokens)
    assert _error(_refresh(cluster.urls[0], secret, refreshed["refresh_token"])) == "invalid_grant"
    assert len(_logged(ts, CLIENT_ENABLED)) == 2  # at both registrations

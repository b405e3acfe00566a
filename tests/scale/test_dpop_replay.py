"""DPoP across instances (RFC 9449 §8, §11.1; SECURITY D1): three ``tokensmith serve``
processes on one PostgreSQL schema, with server nonces on. A nonce one instance issued is
good at another; a proof accepted by one instance is refused by the other two, for
``client_credentials`` and for ``refresh_token``."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.dpop_helpers import DPoPKey
from tests.scale.cluster import ISSUER, Cluster, migrated_cluster

TOKEN_URL = f"{ISSUER}/token"  # the htu every instance expects: the issuer's, not its port
pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with migrated_cluster(tmp_path_factory, "dpop") as (c, tmp_path):
        c.cli("clients", "add", "spa", "--public", "--scope", "openid")
        added = c.cli(
            "clients", "add", "backend", "--confidential", "--grant", "client_credentials"
        )
        c.env["BACKEND_SECRET"] = added.split("client_secret: ")[1].split()[0]
        c.start(3, log_dir=tmp_path, args=("--dpop-nonces",))
        yield c


def _post(url: str, data: dict[str, str], proof: str, **auth: str) -> httpx.Response:
    basic = (auth["client"], auth["secret"]) if auth else None
    return httpx.post(f"{url}/token", data=data, headers={"DPoP": proof}, auth=basic, timeout=10)


def _nonce(cluster: Cluster, key: DPoPKey) -> str:
    """Instance 0's nonce, asked for as a client does: a first proof without one."""
    r = _post(
        cluster.urls[0],
        {"grant_type": "refresh_token", "client_id": "spa", "refresh_token": "tsr_x"},
        key.proof(TOKEN_URL, iat=time.time()),
    )
    assert r.json()["error"] == "use_dpop_nonce", r.text
    return r.headers["DPoP-Nonce"]


def test_a_client_credentials_proof_used_at_one_instance_is_refused_at_the_others(
    cluster: Cluster,
) -> None:
    key = DPoPKey()
    proof = key.proof(TOKEN_URL, iat=time.time(), nonce=_nonce(cluster, key))
    auth = {"client": "backend", "secret": cluster.env["BACKEND_SECRET"]}
    form = {"grant_type": "client_credentials"}
    first, *others = cluster.urls
    r = _post(first, form, proof, **auth)
    assert r.status_code == 200, r.text
    assert r.json()["token_type"] == "DPoP"
    for url in others:
        r = _post(url, form, proof, **auth)
        assert (r.status_code, r.json()["error"]) == (400, "invalid_dpop_proof"), url


def _login(cluster: Cluster) -> str:
    out = cluster.cli("token", "issue", "--sub", "alice", "--client", "spa", "--json")
    token: str = json.loads(out)["refresh_token"]
    return token


def test_a_refresh_proof_used_at_one_instance_is_refused_at_the_others(cluster: Cluster) -> None:
    key = DPoPKey()
    nonce = _nonce(cluster, key)
    # The nonce instance 0 issued is good at instance 1 (stateless, shared key).
    first, second, third = cluster.urls
    proof = key.proof(TOKEN_URL, iat=time.time(), nonce=nonce)
    form = {"grant_type": "refresh_token", "client_id": "spa"}
    r = _post(second, {**form, "refresh_token": _login(cluster)}, proof)
    assert r.status_code == 200, r.text
    assert r.headers["DPoP-Nonce"]
    # Another session's token with the same proof: refused by the proof, wherever it goes.
    for url in (first, third):
        r = _post(url, {**form, "refresh_token": _login(cluster)}, proof)
        assert (r.status_code, r.json()["error"]) == (400, "invalid_dpop_proof"), url

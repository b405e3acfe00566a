"""DPoP interop (RFC 9449; issue #14 "Proof expected"): panva's ``openid-client`` v6 in
Node against a live ``tokensmith serve`` on loopback and a tokensmith-guarded API (the
example API, ``examples/fastapi_api``), with and without server nonces.

The Node side is ``tests/interop_node/dpop_interop.mjs``; its dependencies are pinned by
``package-lock.json`` and installed with ``npm ci`` into a cache directory keyed by the
lock's hash (once per lock; ``TOKENSMITH_NODE_CACHE`` overrides the directory). Without
``node``/``npm`` the test is skipped locally and fails in CI (``CI`` set), where
``.ci/run`` installs them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from jwcrypto import jwk

from examples.fastapi_api.app import AUDIENCE, create_api, remote_keys
from tests.conftest import cli_env, live_serve, uvicorn_in_thread
from tests.scale.cluster import Cluster, free_port

NODE_DIR = Path(__file__).resolve().parent / "interop_node"
SCRIPT = "dpop_interop.mjs"
NPM_TIMEOUT = 300  # seconds: a cold `npm ci` on a slow registry mirror
NODE_TIMEOUT = 60
MIN_NODE = 20


def _unavailable(reason: str) -> None:
    """Skip locally; in CI, where ``.ci/run`` installs Node, fail instead."""
    if os.environ.get("CI"):
        pytest.fail(f"Node.js interop test: {reason}; .ci/run must provide it")
    pytest.skip(f"Node.js interop test skipped: {reason}")


def _node_tools() -> tuple[str, str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        _unavailable("node and npm are not installed (apt-get install nodejs npm)")
    assert node is not None and npm is not None
    version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30)
    major = int(version.stdout.strip().lstrip("v").split(".")[0])
    if major < MIN_NODE:
        # openid-client 6 needs Node 20's global WebCrypto and fetch.
        _unavailable(f"node {version.stdout.strip()} is older than {MIN_NODE}")
    return node, npm


def _cache_dir() -> Path:
    base = os.environ.get("TOKENSMITH_NODE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "tokensmith-interop-node"
    )
    lock = (NODE_DIR / "package-lock.json").read_bytes()
    return Path(base) / hashlib.sha256(lock).hexdigest()[:16]


@pytest.fixture(scope="module")
def node_script() -> list[str]:
    """``[node, script]`` with openid-client installed beside the script (``npm ci`` once
    per lock file; the stamp is written only after a complete install)."""
    node, npm = _node_tools()
    target = _cache_dir()
    stamp = target / ".installed"
    if not stamp.exists():
        target.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(NODE_DIR / name, target / name)
        subprocess.run(
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=target,
            check=True,
            timeout=NPM_TIMEOUT,
        )
        stamp.touch()
    # ESM resolves packages from the script's own directory, so the script goes there.
    shutil.copyfile(NODE_DIR / SCRIPT, target / SCRIPT)
    return [node, str(target / SCRIPT)]


@dataclass
class Deployment:
    issuer: str
    api: str
    secret: str  # the confidential client's
    cli: Callable[..., str]  # tokensmith's CLI on the served database
    nonces: bool


@pytest.fixture(params=[False, True], ids=["no-nonce", "nonce"])
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    """A live ``tokensmith serve`` (server nonces on or off) with a confidential client and
    a public DPoP-bound one, and the example API served live, checking the same nonces."""
    nonces: bool = request.param
    serve_args = ("--dpop-nonces",) if nonces else ()
    with live_serve(tmp_path, *serve_args) as issuer:
        cli = Cluster({**os.environ, **cli_env(tmp_path, issuer=issuer)}).cli
        added = cli(
            "clients", "add", "backend", "--confidential", "--json",
            *("--scope", "read", "--aud", AUDIENCE),
        )  # fmt: skip
        cli(
            "clients", "add", "spa-node", "--public", "--dpop-bound-access-tokens",
            *("--scope", "read", "--aud", AUDIENCE),
        )  # fmt: skip
        port = free_port()
        api = create_api(
            issuer=issuer,
            keys=remote_keys(issuer),
            allowed_origins=[],
            leeway=0,
            dpop_nonces=nonces,
        )
        with uvicorn_in_thread(api, port):
            yield Deployment(
                issuer=issuer,
                api=f"http://127.0.0.1:{port}",
                secret=json.loads(added)["client_secret"],
                cli=cli,
                nonces=nonces,
            )


def _run_node(command: list[str], payload: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run(
        command,
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


def test_openid_client_gets_refreshes_and_uses_dpop_bound_tokens(
    node_script: list[str], deployment: Deployment
) -> None:
    # The public client's key: made by jwcrypto, its thumbprint (RFC 7638) by jwcrypto too;
    # the CLI binds a new session to it, as an application's login would.
    key = jwk.JWK.generate(kty="EC", crv="P-256")
    jkt = key.thumbprint()
    issued = deployment.cli(
        "token", "issue", "--sub", "alice", "--client", "spa-node", "--scope", "read",
        "--aud", AUDIENCE, "--dpop-jkt", jkt, "--json",
    )  # fmt: skip
    refresh_token = json.loads(issued)["refresh_token"]

    report = _run_node(
        node_script,
        {
            "issuer": deployment.issuer,
            "api": deployment.api,
            "confidential": {
                "client_id": "backend",
                "client_secret": deployment.secret,
                "scope": "read",
            },
            "public": {
                "client_id": "spa-node",
                "refresh_token": refresh_token,
                "private_jwk": key.export_private(as_dict=True),
            },
        },
    )
    assert "ES256" in report["dpop_signing_alg_values_supported"]

    cc = report["client_credentials"]
    assert cc["token_type"].lower() == "dpop"
    assert cc["cnf_jkt"] == cc["key_jkt"]
    assert cc["api"]["status"] == 200
    assert cc["api"]["body"]["client_id"] == "backend"

    r = report["refresh"]
    assert r["key_jkt"] == jkt  # Node and jwcrypto agree on the thumbprint
    assert r["wrong_key"] in ("invalid_grant", "invalid_dpop_proof")
    assert r["no_proof"] in ("invalid_grant", "invalid_dpop_proof")
    assert [t.lower() for t in r["token_types"]] == ["dpop", "dpop"]
    assert r["cnf_jkt"] == [jkt, jkt]
    assert r["rotated"] and r["sid"][0] == r["sid"][1]  # two rotations of one session
    assert r["api"]["status"] == 200 and r["api"]["body"]["sub"] == "alice"
    assert r["api_other_key"]["status"] == 401
    assert r["api_other_key"]["error"] == "invalid_dpop_proof"

    _check_nonces(report["exchanges"], deployment)


def _check_nonces(exchanges: list[dict[str, Any]], deployment: Deployment) -> None:
    """With nonces, both servers ask for one (each DPoP handle keeps its own, so each asks
    once per handle); every ask comes with ``DPoP-Nonce`` and is retried at once with it,
    and no proof without a nonce succeeds. A proof by another key than the token's is
    refused as that before anything else, nonce or not (SECURITY D1c: the key is compared
    before the signature). Without nonces nobody asks and no proof has one."""
    asked = [i for i, e in enumerate(exchanges) if "use_dpop_nonce" in (e["error"] or "")]
    if not deployment.nonces:
        assert asked == [] and all(e["nonce"] is None for e in exchanges)
        return
    for origin, status in ((deployment.issuer, 400), (deployment.api, 401)):
        assert any(exchanges[i]["url"].startswith(origin) for i in asked), origin
        for e in exchanges:
            if e["url"].startswith(origin) and e["dpop"] and e["nonce"] is None:
                if "not by the token's key" in (e["error"] or ""):
                    assert e["status"] == 401 and not e["dpop_nonce_header"], e
                    continue
                assert e["status"] == status and e["dpop_nonce_header"], e
    for i in asked:
        ask, retry = exchanges[i], exchanges[i + 1]
        assert ask["nonce"] is None and ask["dpop_nonce_header"]
        assert retry["url"] == ask["url"] and retry["nonce"] is not None

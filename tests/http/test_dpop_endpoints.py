"""DPoP around the token endpoint (RFC 9449 §5, §8): discovery, the SPA's CORS, login
through ``Tokensmith.issue``, and the CLI (``clients add --dpop-bound-access-tokens``,
``token issue --dpop-jkt``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.http.conftest import ISSUER, ORIGIN, Env
from tokensmith.cli import cli
from tokensmith.errors import InvalidDPoPProof, InvalidRequest
from tokensmith.http.cookies import COOKIE_NAME, CSRF_HEADER

from ..conftest import cli_env
from ..dpop_helpers import DPoPKey, claims_of

pytestmark = pytest.mark.anyio

TOKEN_URL = f"{ISSUER}/token"
BROWSER = {"Origin": ORIGIN, CSRF_HEADER: "1"}


async def test_discovery_advertises_the_dpop_algorithms(env: Env) -> None:
    body = (await env.http.get("/.well-known/openid-configuration")).json()
    assert body["dpop_signing_alg_values_supported"] == [
        "ES256",
        "ES384",
        "EdDSA",
        "PS256",
        "RS256",
    ]
    assert body["token_endpoint"] == TOKEN_URL


async def test_the_preflight_allows_the_dpop_header_and_exposes_the_nonce(env: Env) -> None:
    r = await env.http.options(
        "/token",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "dpop",
        },
    )
    assert "dpop" in r.headers["access-control-allow-headers"].split(", ")
    assert r.headers["access-control-expose-headers"] == "DPoP-Nonce, Retry-After"


async def test_a_cookie_mode_refresh_with_a_proof_and_its_dpop_errors_are_readable(
    env: Env,
) -> None:
    key = DPoPKey()
    env.http.cookies.set(
        COOKIE_NAME, env.login("browser")["refresh_token"], domain="as.example.com", path="/"
    )
    form = {"grant_type": "refresh_token", "client_id": "browser"}
    bad = {**BROWSER, "DPoP": "not.a.proof"}
    r = await env.http.post("/token", data=form, headers=bad)
    assert (r.status_code, r.json()["error"]) == (400, "invalid_dpop_proof")
    assert r.headers["access-control-allow-origin"] == ORIGIN  # the page can read why
    good = {**BROWSER, "DPoP": key.proof(TOKEN_URL, iat=env.clock.now())}
    r = await env.http.post("/token", data=form, headers=good)
    assert r.status_code == 200, r.text
    assert r.json()["token_type"] == "DPoP"
    assert r.headers["access-control-expose-headers"] == "DPoP-Nonce, Retry-After"


async def test_failed_token_requests_leave_no_proof_remembered_and_a_used_one_stays_spent(
    env: Env,
) -> None:
    """Anybody can sign proofs: the token endpoint records a proof only with the writes of
    a request that succeeded (the store's ledger), so failed requests fill no memory of
    this process (finding 8 of the last attack), while a proof that was spent is refused
    when it comes back."""
    key = DPoPKey()
    garbage = {"grant_type": "refresh_token", "client_id": "spa", "refresh_token": "x" * 43}
    for _ in range(20):
        headers = {"DPoP": key.proof(TOKEN_URL, iat=env.clock.now())}
        r = await env.http.post("/token", data=garbage, headers=headers)
        assert r.json()["error"] == "invalid_grant"
    assert len(env.ts.dpop.verifier.replays) == 0
    login = env.login("spa")
    proof = key.proof(TOKEN_URL, iat=env.clock.now())
    form = {"grant_type": "refresh_token", "client_id": "spa"}
    r = await env.http.post(
        "/token", data={**form, "refresh_token": login["refresh_token"]}, headers={"DPoP": proof}
    )
    assert r.status_code == 200, r.text
    again = {**form, "refresh_token": r.json()["refresh_token"]}
    r = await env.http.post("/token", data=again, headers={"DPoP": proof})
    assert (r.status_code, r.json()["error"]) == (400, "invalid_dpop_proof")
    assert "replayed" in r.json()["error_description"]


async def test_login_with_the_login_requests_proof(env: Env) -> None:
    key = DPoPKey()
    login_url = "https://app.example.com/login"
    t = env.ts.issue(
        subject="alice",
        client_id="spa",
        dpop_proof=key.proof(login_url, iat=env.clock.now()),
        htm="POST",
        htu=login_url,
    )
    assert t.token_type == "DPoP"
    assert claims_of(t.access_token)["cnf"] == {"jkt": key.jkt}
    form = {"grant_type": "refresh_token", "client_id": "spa", "refresh_token": t.refresh_token}
    r = await env.http.post("/token", data=form)  # the family is bound: no proof, no token
    assert r.json()["error"] == "invalid_grant"
    with pytest.raises(InvalidDPoPProof):
        env.ts.issue(
            subject="alice",
            client_id="spa",
            dpop_proof=key.proof("https://app.example.com/elsewhere", iat=env.clock.now()),
            htu=login_url,
        )
    with pytest.raises(InvalidRequest):
        env.ts.issue(subject="alice", client_id="spa", dpop_jkt="not a thumbprint")


def test_the_cli_registers_dpop_bound_clients_and_issues_bound_tokens(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    runner = CliRunner()
    assert runner.invoke(cli, ["db", "upgrade"], env=env).exit_code == 0
    assert runner.invoke(cli, ["keys", "generate"], env=env).exit_code == 0
    args = ["clients", "add", "spa", "--public", "--dpop-bound-access-tokens", "--scope", "openid"]
    args.append("--json")
    out = runner.invoke(cli, args, env=env)
    assert out.exit_code == 0 and json.loads(out.output)["dpop_bound_access_tokens"] is True
    listing = runner.invoke(cli, ["clients", "list"], env=env).output
    header, row = listing.splitlines()[:2]
    assert row.split()[header.split().index("DPOP")] == "True"
    key = DPoPKey()
    issue = ["token", "issue", "--sub", "alice", "--client", "spa", "--json"]
    out = runner.invoke(cli, [*issue, "--dpop-jkt", key.jkt], env=env)
    assert out.exit_code == 0, out.output
    body = json.loads(out.output)
    assert body["token_type"] == "DPoP"
    assert claims_of(body["access_token"])["cnf"] == {"jkt": key.jkt}
    out = runner.invoke(cli, issue, env=env)  # this client must prove a key
    assert out.exit_code != 0 and "Traceback" not in out.output
    assert "invalid_dpop_proof" in out.output
    update = ["clients", "update", "spa", "--no-dpop-bound-access-tokens", "--json"]
    out = runner.invoke(cli, update, env=env)
    assert json.loads(out.output)["dpop_bound_access_tokens"] is False
    assert runner.invoke(cli, issue, env=env).exit_code == 0

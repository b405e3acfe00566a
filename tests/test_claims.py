"""Custom claims (README "Custom claims"; issue #13 item 4): application claims on access
and ID tokens, kept on the family through refreshes and restarts, recomputed by the refresh
claims hook, refused when they would override a protocol claim; over the facade, the token
endpoint and the CLI, on a real SQLite file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from tokensmith import ClaimsRequest, InvalidRequest, ManualClock, Tokensmith
from tokensmith.cli import cli
from tokensmith.http import create_app
from tokensmith.tokens.claims import MAX_CLAIMS_BYTES, PROTECTED_CLAIMS
from tokensmith.tokens.jws import parse_json_object

from .conftest import ISSUER, cli_env, make_tokensmith

ROLES = {"roles": ["admin", "editor"], "tenant": {"id": 7, "name": "Ærø"}}


@pytest.fixture
def ts(tmp_path: Path, clock: ManualClock) -> Tokensmith:
    return make_tokensmith(tmp_path, clock)


def _login(ts: Tokensmith, **kwargs: Any) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """The refresh token, access-token claims and ID-token claims of a new session."""
    t = ts.issue(subject="alice", client_id="spa", scope="openid", audience="api", **kwargs)
    assert t.refresh_token is not None and t.id_token is not None
    access = ts.verify_access_token(t.access_token, audience="api")
    return t.refresh_token, access, ts.verify_id_token(t.id_token, client_id="spa")


def _refresh(ts: Tokensmith, token: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    t = ts.refresh(token, client_id="spa")
    assert t.refresh_token is not None and t.id_token is not None
    access = ts.verify_access_token(t.access_token, audience="api")
    return t.refresh_token, access, ts.verify_id_token(t.id_token, client_id="spa")


def test_claims_go_into_the_access_token_and_id_token_claims_into_the_id_token(
    ts: Tokensmith,
) -> None:
    _, access, id_token = _login(ts, claims=ROLES, id_token_claims={"locale": "fr-CA"})
    assert access["roles"] == ["admin", "editor"] and access["tenant"] == ROLES["tenant"]
    assert access["sub"] == "alice" and "locale" not in access
    assert id_token["locale"] == "fr-CA" and "roles" not in id_token


def test_a_session_without_claims_mints_exactly_the_protocol_claims(ts: Tokensmith) -> None:
    _, access, id_token = _login(ts)
    assert set(access) == {"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "client_id"} | {
        "scope",
        "sid",
    }
    assert "locale" not in id_token


@pytest.mark.parametrize("name", sorted(PROTECTED_CLAIMS))
@pytest.mark.parametrize("argument", ["claims", "id_token_claims"])
def test_a_protocol_claim_cannot_be_overridden(ts: Tokensmith, argument: str, name: str) -> None:
    with pytest.raises(InvalidRequest, match=f"'{name}' is a protocol claim"):
        ts.issue(subject="alice", client_id="spa", **{argument: {name: "mallory"}})  # type: ignore[arg-type]
    assert ts.families("alice") == []  # refused before anything was written


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"when": object()}, "JSON-serialisable"),
        ({"ratio": float("nan")}, "JSON-serialisable"),
        ({1: "x"}, "non-empty strings"),
        ({"blob": "x" * MAX_CLAIMS_BYTES}, f"exceed {MAX_CLAIMS_BYTES} bytes"),
        (["roles"], "must be a mapping"),
    ],
)
def test_claims_must_be_a_small_json_object(ts: Tokensmith, claims: Any, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        ts.issue(subject="alice", client_id="spa", claims=claims)


def test_claims_are_carried_through_refreshes_and_a_restart(
    tmp_path: Path, clock: ManualClock, ts: Tokensmith
) -> None:
    token, _, _ = _login(ts, claims=ROLES, id_token_claims={"locale": "fr-CA"})
    for _ in range(3):
        clock.advance(60)
        token, access, id_token = _refresh(ts, token)
        assert access["roles"] == ROLES["roles"] and id_token["locale"] == "fr-CA"
    # A new instance on the same database (a restart, another worker).
    restarted = make_tokensmith(tmp_path, clock)
    _, access, id_token = _refresh(restarted, token)
    assert access["tenant"] == ROLES["tenant"] and id_token["locale"] == "fr-CA"


def test_the_claims_hook_drops_a_removed_role_at_the_next_refresh_and_stores_it(
    tmp_path: Path, clock: ManualClock, ts: Tokensmith
) -> None:
    directory = {"alice": ["admin", "editor"]}
    requests: list[ClaimsRequest] = []

    @ts.on_refresh_claims
    def current_roles(request: ClaimsRequest) -> dict[str, Any]:
        requests.append(request)
        return {**request.claims, "roles": directory[request.subject]}

    token, access, _ = _login(ts, claims=ROLES)
    assert access["roles"] == ["admin", "editor"]
    directory["alice"] = ["editor"]  # the admin role is revoked after the login
    token, access, _ = _refresh(ts, token)
    assert access["roles"] == ["editor"] and access["tenant"] == ROLES["tenant"]
    assert (requests[0].subject, requests[0].client_id, requests[0].scope) == (
        "alice",
        "spa",
        "openid",
    )
    assert requests[0].claims["roles"] == ["admin", "editor"]
    # Stored on the family: an instance without the hook carries the recomputed claims on.
    _, access, _ = _refresh(make_tokensmith(tmp_path, clock), token)
    assert access["roles"] == ["editor"]


def test_a_claims_hook_returning_none_keeps_the_claims(ts: Tokensmith) -> None:
    ts.on_refresh_claims(lambda request: None)
    token, _, _ = _login(ts, claims=ROLES)
    assert _refresh(ts, token)[1]["roles"] == ROLES["roles"]


def test_a_claims_hook_cannot_set_a_protocol_claim(ts: Tokensmith) -> None:
    token, _, _ = _login(ts, claims=ROLES)
    ts.on_refresh_claims(lambda request: {"sub": "mallory"})
    with pytest.raises(InvalidRequest, match="'sub' is a protocol claim"):
        ts.refresh(token, client_id="spa")
    ts.on_refresh_claims(lambda request: None)
    assert _refresh(ts, token)[1]["sub"] == "alice"  # the refused refresh changed nothing


@pytest.mark.anyio
async def test_the_token_endpoint_carries_the_claims(ts: Tokensmith) -> None:
    ts.register_client("spa", confidential=False)
    token, _, _ = _login(ts, claims=ROLES)
    transport = httpx.ASGITransport(app=create_app(ts))
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
        form = {"grant_type": "refresh_token", "refresh_token": token, "client_id": "spa"}
        answer = await http.post("/token", data=form)
    assert answer.status_code == 200, answer.text
    access = ts.verify_access_token(answer.json()["access_token"], audience="api")
    assert access["roles"] == ROLES["roles"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _cli(tmp_path: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env=cli_env(tmp_path))
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def test_cli_token_issue_takes_claims(tmp_path: Path, ts: Tokensmith) -> None:
    code, out = _cli(
        tmp_path,
        *("token", "issue", "--sub", "alice", "--client", "spa", "--unregistered"),
        *("--aud", "api", "--json"),
        *("--claims-json", '{"roles": ["admin"], "tenant": 7}'),
        *("--claim", "tenant=8", "--claim", "team=blue", "--claim", 'flags={"beta": true}'),
    )
    assert code == 0, out
    # The CLI ran on the system clock, ``ts`` on a manual one: read the signed claims.
    access = parse_json_object(json.loads(out)["access_token"].split(".")[1])
    assert access["roles"] == ["admin"] and access["tenant"] == 8
    assert access["team"] == "blue" and access["flags"] == {"beta": True}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--claim", "iss=https://evil.example"), "'iss' is a protocol claim"),
        (("--claim", "novalue"), "is not NAME=VALUE"),
        (("--claims-json", "[1]"), "must be a JSON object"),
        (("--claims-json", "{"), "not valid JSON"),
    ],
)
def test_cli_token_issue_refuses_bad_claims_in_one_line(
    tmp_path: Path, ts: Tokensmith, args: tuple[str, ...], message: str
) -> None:
    code, out = _cli(
        tmp_path, "token", "issue", "--sub", "alice", "--client", "spa", "--unregistered", *args
    )
    assert code != 0 and message in out
    assert "Traceback" not in out

"""``GET /sessions``, ``DELETE /sessions/{sid}``, ``POST /sessions/revoke-others`` (README
"Sessions") through the ASGI app, on memory, SQLite and PostgreSQL: a user sees and ends
only their own sessions, and another user's ``sid`` is indistinguishable from none."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from tokensmith import ManualClock, Settings, Tokensmith
from tokensmith import sessions as sessions_module
from tokensmith.http import create_app

from ..dpop_helpers import DPoPKey
from .conftest import ISSUER, ORIGIN, T0

pytestmark = pytest.mark.anyio


@pytest.fixture
async def ts(database_url: str, tmp_path: Path) -> AsyncIterator[Tokensmith]:
    ts = Tokensmith(
        Settings(issuer=ISSUER, database_url=database_url, keys_dir=str(tmp_path / "keys")),
        clock=ManualClock(T0),
    )
    ts.setup()
    ts.register_client("spa", confidential=False)
    ts.register_client("browser", confidential=False, allowed_origins=(ORIGIN,), cookie_mode=True)
    yield ts
    engine = getattr(ts.sessions.store, "engine", None)
    if engine is not None:
        engine.dispose()


@pytest.fixture
async def http(ts: Tokensmith) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(ts), client=("192.0.2.1", 5000))
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as client:
        yield client


def login(ts: Tokensmith, subject: str = "alice", client_id: str = "spa") -> tuple[str, str]:
    """A new session: its access token (audience: this issuer) and sid."""
    issued = ts.issue(subject=subject, client_id=client_id, scope="openid")
    assert issued.session_id is not None
    return issued.access_token, issued.session_id


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def listed(http: httpx.AsyncClient, token: str) -> list[dict[str, Any]]:
    response = await http.get("/sessions", headers=bearer(token))
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    sessions: list[dict[str, Any]] = response.json()["sessions"]
    return sessions


async def test_a_user_lists_their_sessions_with_the_current_one_and_the_last_use(
    ts: Tokensmith, http: httpx.AsyncClient
) -> None:
    _, older = login(ts)
    ts.clock.advance(10)  # type: ignore[attr-defined]
    issued = ts.issue(subject="alice", client_id="spa", scope="openid")
    login(ts, "bob")
    assert issued.refresh_token is not None
    refreshed = await http.post(
        "/token",
        data={
            "grant_type": "refresh_token",
            "client_id": "spa",
            "refresh_token": issued.refresh_token,
        },
        headers={"User-Agent": "Firefox/140"},
    )
    assert refreshed.status_code == 200, refreshed.text
    token = refreshed.json()["access_token"]
    ts.clock.advance(10)  # type: ignore[attr-defined]
    sessions = await listed(http, token)
    assert [(s["sid"], s["current"]) for s in sessions] == [
        (issued.session_id, True),
        (older, False),
    ]
    assert (sessions[0]["ip"], sessions[0]["user_agent"], sessions[0]["client_id"]) == (
        "192.0.2.1",
        "Firefox/140",
        "spa",
    )
    assert sessions[1]["ip"] is None and sessions[1]["last_used_at"] == sessions[1]["created_at"]


async def test_another_users_session_is_a_404_exactly_like_an_unknown_one(
    ts: Tokensmith, http: httpx.AsyncClient
) -> None:
    token, _ = login(ts)
    bob_token, bob_sid = login(ts, "bob")
    answers = [
        await http.delete(f"/sessions/{sid}", headers=bearer(token))
        for sid in (bob_sid, "x" * len(bob_sid))
    ]
    assert [a.status_code for a in answers] == [404, 404]
    assert answers[0].content == answers[1].content
    assert answers[0].json() == {"error": "not_found", "error_description": "no such session"}
    assert dict(answers[0].headers) == dict(answers[1].headers)
    assert [s["sid"] for s in await listed(http, bob_token)] == [bob_sid]
    assert bob_sid not in {s["sid"] for s in await listed(http, token)}


async def test_revoke_others_ends_every_session_but_the_current_one(
    ts: Tokensmith, http: httpx.AsyncClient
) -> None:
    token, current = login(ts)
    other = ts.issue(subject="alice", client_id="spa", scope="openid")
    _, bob_sid = login(ts, "bob")
    ended = await http.post("/sessions/revoke-others", headers=bearer(token))
    assert ended.status_code == 200 and ended.json() == {"ended": 1}
    assert [s["sid"] for s in await listed(http, token)] == [current]
    assert other.refresh_token is not None
    assert ts.introspect(other.refresh_token) == {"active": False}
    assert [s.session_id for s in ts.user_sessions("bob")] == [bob_sid]


async def test_ending_the_current_session_revokes_the_token_that_asked(
    ts: Tokensmith, http: httpx.AsyncClient
) -> None:
    token, current = login(ts)
    response = await http.delete(f"/sessions/{current}", headers=bearer(token))
    assert response.status_code == 204
    refused = await http.get("/sessions", headers=bearer(token))
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-a-jwt"}, {"Authorization": "Basic YTpi"}],
    ids=["no token", "garbage", "another scheme"],
)
async def test_without_a_valid_access_token_there_are_no_sessions(
    http: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    for method, path in (
        ("GET", "/sessions"),
        ("DELETE", "/sessions/x"),
        ("POST", "/sessions/revoke-others"),
    ):
        response = await http.request(method, path, headers=headers)
        assert response.status_code == 401, (method, path)
        assert response.headers["www-authenticate"].startswith("Bearer ")


async def test_a_token_for_another_audience_is_refused(
    ts: Tokensmith, http: httpx.AsyncClient
) -> None:
    issued = ts.issue(subject="alice", client_id="spa", audience="https://api.example.com")
    response = await http.get("/sessions", headers=bearer(issued.access_token))
    assert response.status_code == 401


async def test_cookie_mode_origins_get_cors_and_others_do_not(
    ts: Tokensmith, http: httpx.AsyncClient
) -> None:
    token, _ = login(ts, client_id="browser")
    preflight = await http.options("/sessions/revoke-others", headers={"Origin": ORIGIN})
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert "authorization" in preflight.headers["access-control-allow-headers"]
    assert "DELETE" in preflight.headers["access-control-allow-methods"]
    allowed = await http.get("/sessions", headers={**bearer(token), "Origin": ORIGIN})
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    refused = await http.get("/sessions", headers={"Origin": ORIGIN})  # errors too
    assert refused.headers["access-control-allow-origin"] == ORIGIN
    other = await http.get("/sessions", headers={**bearer(token), "Origin": "https://evil.test"})
    assert "access-control-allow-origin" not in other.headers


async def test_other_users_and_unknown_sids_do_the_same_database_work(
    ts: Tokensmith, http: httpx.AsyncClient, database_url: str
) -> None:
    """No branch on whether a foreign ``sid`` exists: the same statements run for both."""
    if database_url.startswith("memory"):
        pytest.skip("the memory store runs no statements")
    token, _ = login(ts)
    _, bob_sid = login(ts, "bob")
    await listed(http, token)  # the revocation cache is loaded now, not during one of the runs
    engine = ts.sessions.store.engine  # type: ignore[attr-defined]
    runs: list[list[str]] = []
    for sid in (bob_sid, "y" * len(bob_sid)):
        seen: list[str] = []

        def record(_c: Any, _cur: Any, statement: str, *_a: Any, seen: list[str] = seen) -> None:
            seen.append(statement)

        event.listen(engine, "before_cursor_execute", record)
        try:
            assert (await http.delete(f"/sessions/{sid}", headers=bearer(token))).status_code == 404
        finally:
            event.remove(engine, "before_cursor_execute", record)
        runs.append(seen)
    assert runs[0] == runs[1] and runs[0]


async def test_a_proof_used_here_is_refused_at_another_instance(
    ts: Tokensmith, http: httpx.AsyncClient, database_url: str, tmp_path: Path
) -> None:
    """Found by attacking live servers: a proof for ``POST /sessions/revoke-others`` was
    refused again at the instance that took it but accepted at another one. These endpoints
    end sessions, so their proofs go to the store's ledger, as at /token (SECURITY D1)."""
    if database_url == "memory://":
        pytest.skip("a memory store has no other instance")
    key = DPoPKey()
    issued = ts.issue(subject="alice", client_id="spa", scope="openid", dpop_jkt=key.jkt)
    token = issued.access_token
    proof = key.proof(f"{ISSUER}/sessions", htm="GET", iat=T0, access_token=token)
    headers = {"Authorization": f"DPoP {token}", "DPoP": proof}
    assert (await http.get("/sessions", headers=headers)).status_code == 200
    other = Tokensmith(
        Settings(issuer=ISSUER, database_url=database_url, keys_dir=str(tmp_path / "keys")),
        clock=ManualClock(T0),
    )
    transport = httpx.ASGITransport(app=create_app(other), client=("192.0.2.2", 5000))
    try:
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as second:
            replayed = await second.get("/sessions", headers=headers)
        assert replayed.status_code == 401, replayed.text
        assert 'error="invalid_dpop_proof"' in replayed.headers["www-authenticate"]
    finally:
        engine = getattr(other.sessions.store, "engine", None)
        if engine is not None:
            engine.dispose()


async def test_revoke_others_ends_sessions_beyond_one_listing(
    ts: Tokensmith, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by attacking a live server: with more sessions than one listing holds, the
    oldest survived "sign out other sessions"."""
    monkeypatch.setattr(sessions_module, "MAX_SESSIONS", 3)
    for _ in range(6):
        login(ts)
    token, current = login(ts)
    response = await http.post("/sessions/revoke-others", headers=bearer(token))
    assert response.status_code == 200 and response.json() == {"ended": 6}
    assert [s["sid"] for s in await listed(http, token)] == [current]

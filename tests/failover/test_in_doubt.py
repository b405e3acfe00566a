"""Issue #16 Deliver 3 and 4 on a real PostgreSQL: the connection is cut (``cutter.py``) at
each point of a rotation's unit of work. Before ``COMMIT`` reached the server nothing
happened: 503, and the retry rotates. After it, the instance reads back whether its
child was stored and answers it; never ``invalid_grant``, never a 500."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.failover.conftest import via
from tests.failover.cutter import Cut, Cutter
from tokensmith import Settings, Tokensmith
from tokensmith.clock import ManualClock
from tokensmith.errors import InvalidGrant, TemporarilyUnavailable
from tokensmith.http import create_app

PG_URL = os.environ.get("TOKENSMITH_TEST_PG_URL")
pytestmark = pytest.mark.postgres
ISSUER = "https://as.example.com"


def _tokensmith(tmp_path: Path, database_url: str, **settings: object) -> Tokensmith:
    ts = Tokensmith(
        Settings(
            issuer=ISSUER,
            database_url=database_url,
            keys_dir=str(tmp_path / "keys"),
            **settings,  # type: ignore[arg-type]
        ),
        clock=ManualClock(1_800_000_000.0),
    )
    ts.setup()
    ts.register_client("spa", confidential=False)
    return ts


@pytest.fixture
def ts(tmp_path: Path, schema: str, cutter: Cutter) -> Iterator[Tokensmith]:
    ts = _tokensmith(tmp_path, via(cutter.port, schema))
    yield ts
    ts.sessions.store.engine.dispose()  # type: ignore[attr-defined]


def _chain(ts: Tokensmith) -> str:
    """A refresh token one rotation old: the client registration is cached by then, so the
    next transaction on the wire is the rotation's."""
    first = ts.issue(subject="alice", client_id="spa", audience="api").refresh_token
    return str(ts.refresh(str(first), client_id="spa").refresh_token)


@pytest.mark.parametrize(
    "cut",
    [Cut("begin"), Cut("statement", 1), Cut("statement", 3), Cut("commit")],
    ids=["before-statements", "before-select", "after-update", "commit-not-sent"],
)
def test_a_connection_cut_before_commit_reached_the_server_is_503_and_the_retry_rotates(
    ts: Tokensmith, cutter: Cutter, cut: Cut
) -> None:
    token = _chain(ts)
    cutter.arm(cut)
    with pytest.raises(TemporarilyUnavailable):
        ts.refresh(token, client_id="spa")
    assert cutter.fired.is_set()
    retried = ts.refresh(token, client_id="spa")  # the parent was never consumed
    assert ts.refresh(str(retried.refresh_token), client_id="spa").refresh_token


def test_a_commit_whose_answer_was_lost_is_read_back_and_answers_the_child(
    ts: Tokensmith, cutter: Cutter
) -> None:
    token = _chain(ts)
    cutter.arm(Cut("commit", deliver=True))
    child = ts.refresh(token, client_id="spa")
    assert cutter.fired.is_set()
    # The child was stored, so it works; the parent was used, so presenting it is reuse.
    grandchild = ts.refresh(str(child.refresh_token), client_id="spa")
    assert grandchild.refresh_token
    with pytest.raises(InvalidGrant, match=r"already used"):
        ts.refresh(token, client_id="spa")


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_over_http_an_unreachable_database_is_503_with_retry_after(
    tmp_path: Path, schema: str, cutter: Cutter
) -> None:
    ts = _tokensmith(tmp_path, via(cutter.port, schema), database_connect_timeout=2.0)
    token = _chain(ts)
    cutter.close()  # nothing listens there any more: every connection is refused
    transport = httpx.ASGITransport(app=create_app(ts))
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as client:
        data = {"grant_type": "refresh_token", "client_id": "spa", "refresh_token": token}
        r = await client.post("/token", data=data)
        assert r.status_code == 503, r.text
        assert r.json() == {"error": "temporarily_unavailable"}
        assert r.headers["Retry-After"] == "1"
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["reasons"] == ["database"]


def test_nothing_listening_is_refused_fast(tmp_path: Path, schema: str) -> None:
    """The bound: a URL whose hosts all refuse answers 503 at once, not after a hang."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ts = Tokensmith(
        Settings(issuer=ISSUER, database_url=via(port, schema), keys_dir=str(tmp_path / "k")),
        clock=ManualClock(1_800_000_000.0),
    )
    with pytest.raises(TemporarilyUnavailable, match="unreachable"):
        ts.sessions.store.find_token(b"\0" * 32)

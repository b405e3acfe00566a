"""Concurrent tabs never kill a session (SECURITY B3; docs/contract.md "Refresh store semantics").

Two or eight browser tabs that refresh with the same token at once, over real HTTP to a
live uvicorn on loopback and on both backends, with no grace window: exactly one wins, the
others get ``invalid_grant`` and nothing is revoked. A presentation made after the winner's
response (the rotation is durable) is still reuse and revokes the family.

The second test holds the winner between its stamp and its commit, so every loser is sent
in exactly that window: the window a wall-clock race hits only now and then.

The last test is tabs with nothing to order them: whole requests released together, some
of which arrive after the winner's answer. With a grace window they all share one child.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from tokensmith import SystemClock, Tokensmith
from tokensmith.events import Event
from tokensmith.http import create_app
from tokensmith.http.serving import SPREAD, NoDelayHttpToolsProtocol
from tokensmith.settings import Settings
from tokensmith.store.sql import SqlStore
from tokensmith.store.sql.models import metadata

from ..conftest import uvicorn_in_thread
from ..refresh.conftest import PG_URL, Backend, backend  # noqa: F401  (the fixture)
from ..scale.cluster import ISSUER, Cluster, postgres_cluster

TRIALS = 50
# Every request and every wait below is bounded, so a hung server fails the test quickly.
TIMEOUT = 10.0


class HoldingStore(SqlStore):
    """A real store whose winning rotations wait, inside their transaction and after the
    compare-and-set stamped the token, until ``release`` is set: every request sent
    meanwhile was sent before the winner's rotation was durable."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.holding = threading.Event()
        self.release = threading.Event()
        self.hold_next = False

    def pending(self, work: Callable[[Any], Any]) -> Any:
        if not self.hold_next:
            return super().pending(work)

        def held(tx: Any) -> Any:
            value = work(tx)
            if self.hold_next and getattr(value, "refresh_token", None) is not None:
                self.hold_next = False
                self.holding.set()
                assert self.release.wait(TIMEOUT), "the test never released the winner"
            return value

        return super().pending(held)


class Live:
    def __init__(self, ts: Tokensmith, base: str, store: HoldingStore) -> None:
        self.ts = ts
        self.base = base
        self.store = store
        self.events: list[Event] = []
        ts.on_event(self.events.append)

    def login(self) -> str:
        token = self.ts.issue(subject="alice", client_id="spa", scope="openid", audience="api")
        assert token.refresh_token is not None
        return token.refresh_token

    def named(self, name: str) -> list[Event]:
        return [e for e in self.events if e.name == name]


@pytest.fixture
def live(backend: Backend, tmp_path: Path) -> Iterator[Live]:  # noqa: F811
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    store = HoldingStore(backend.engine())
    metadata.create_all(store.engine)
    settings = Settings(issuer=base, keys_dir=str(tmp_path / "keys"))
    ts = Tokensmith(settings, clock=SystemClock(), refresh_store=store)
    ts.keys.ensure_active()
    ts.register_client("spa", confidential=False)
    try:
        with uvicorn_in_thread(create_app(ts), port, http=NoDelayHttpToolsProtocol):
            yield Live(ts, base, store)
    finally:
        store.engine.dispose()


def _tabs(live: Live, count: int) -> list[httpx.Client]:
    """``count`` clients, each with a warm keep-alive connection, as open tabs have."""
    tabs = [httpx.Client(base_url=live.base, timeout=TIMEOUT) for _ in range(count)]
    for tab in tabs:
        tab.get("/.well-known/jwks.json").raise_for_status()
    return tabs


def _refresh(tab: httpx.Client, token: str) -> httpx.Response:
    form = {"grant_type": "refresh_token", "refresh_token": token, "client_id": "spa"}
    return tab.post("/token", data=form)


# A grace window with a retry budget for every tab: what a deployment whose tabs refresh on
# their own sets (README "Concurrent tabs").
GRACE = {"TOKENSMITH_REFRESH_REUSE_GRACE": "5", "TOKENSMITH_REFRESH_GRACE_RETRIES": "8"}


@pytest.fixture
def served(
    backend: Backend,  # noqa: F811
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[tuple[Tokensmith, Cluster]]:
    """One live ``tokensmith serve`` process, and a facade in this process on the same
    database and keys that logs users in (the server's state is only read back over HTTP
    and from the database). Indirect parameters are extra settings for both."""
    keys = str(tmp_path / "keys")
    extra: dict[str, str] = getattr(request, "param", {})
    if backend.name == "sqlite":
        env = {**os.environ, "TOKENSMITH_DATABASE_URL": backend.url, "TOKENSMITH_KEYS_DIR": keys}
        scope = contextlib.nullcontext(Cluster(env))
    else:
        assert PG_URL is not None
        scope = postgres_cluster(PG_URL, tmp_path)
    with scope as cluster:
        cluster.env.update(extra)
        settings = Settings.from_env(cluster.env, issuer=ISSUER)
        ts = Tokensmith(settings)
        ts.setup()
        ts.register_client("spa", confidential=False)
        cluster.start(1, log_dir=tmp_path)
        try:
            yield ts, cluster
        finally:
            cluster.stop()
            for part in (ts.sessions.store, ts.keys.store):
                engine = getattr(part, "engine", None)  # the SQL key store has one too
                if engine is not None:
                    engine.dispose()


class Tab:
    """One browser tab's keep-alive connection to the live server."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.port = port

    def request(self, token: str) -> bytes:
        body = urlencode(
            {"grant_type": "refresh_token", "refresh_token": token, "client_id": "spa"}
        )
        head = (
            f"POST /token HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        return (head + body).encode()

    def answer(self) -> tuple[int, dict[str, Any]]:
        response = http.client.HTTPResponse(self.sock)
        response.begin()
        return response.status, json.loads(response.read())

    def refresh(self, token: str) -> tuple[int, dict[str, Any]]:
        self.sock.sendall(self.request(token))
        return self.answer()


def _together(tabs: list[Tab], act: Callable[[int], tuple[int, Any]]) -> list[tuple[int, Any]]:
    """``act(i)`` for every tab ``i``, each in a thread of its own, released by a barrier."""
    barrier = threading.Barrier(len(tabs))
    answers: list[tuple[int, Any] | None] = [None] * len(tabs)

    def run(i: int) -> None:
        barrier.wait(TIMEOUT)
        answers[i] = act(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(tabs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert all(a is not None for a in answers), "a tab got no answer"
    return [a for a in answers if a is not None]


def _at_once(tabs: list[Tab], token: str) -> list[tuple[int, Any]]:
    """Every tab refreshes with ``token`` at once. Each sends its request but its last byte
    first, so every request is in flight before any can be answered; then the last bytes go
    out together, released by a barrier."""
    requests = [tab.request(token) for tab in tabs]
    for tab, request in zip(tabs, requests, strict=True):
        tab.sock.sendall(request[:-1])
    time.sleep(0.01)  # the server has read every partial request

    def finish(i: int) -> tuple[int, Any]:
        tabs[i].sock.sendall(requests[i][-1:])
        return tabs[i].answer()

    return _together(tabs, finish)


@pytest.mark.parametrize("count", [2, 8], ids=lambda n: f"{n} tabs")
def test_simultaneous_tabs_never_revoke_the_session(
    served: tuple[Tokensmith, Cluster], count: int
) -> None:
    ts, cluster = served
    tabs = [Tab(cluster.ports[0]) for _ in range(count)]
    try:
        for trial in range(TRIALS):
            login = ts.issue(subject="alice", client_id="spa", scope="openid", audience="api")
            answers = _at_once(tabs, login.refresh_token or "")
            codes = sorted(status for status, _ in answers)
            assert codes == [200] + [400] * (count - 1), (trial, answers)
            assert {body["error"] for status, body in answers if status == 400} == {
                "invalid_grant"
            }, trial
            winner = next(body for status, body in answers if status == 200)
            # Nothing was revoked: the winner's token is live and refreshes.
            assert ts.introspect(winner["refresh_token"])["active"] is True, trial
            assert tabs[0].refresh(winner["refresh_token"])[0] == 200, trial
        # A tab that sends the spent token after the winner's answer is a replay (grace 0).
        status, body = tabs[1].refresh(login.refresh_token or "")
        assert (status, body["error"]) == (400, "invalid_grant")
        assert ts.introspect(winner["refresh_token"])["active"] is False
    finally:
        for tab in tabs:
            tab.sock.close()


def test_a_tab_sent_while_the_winner_commits_is_a_loser_not_reuse(live: Live) -> None:
    token = live.login()
    winner_tab, *loser_tabs = tabs = _tabs(live, 3)
    try:
        live.store.hold_next = True
        answers: list[httpx.Response] = []
        winner = threading.Thread(target=lambda: answers.append(_refresh(winner_tab, token)))
        winner.start()
        assert live.store.holding.wait(TIMEOUT), "the winner never reached its commit"
        # The winner has stamped the token used and holds its transaction open: these are
        # sent before its rotation is durable.
        late: list[httpx.Response] = []
        losers = [
            threading.Thread(target=lambda tab=tab: late.append(_refresh(tab, token)))
            for tab in loser_tabs
        ]
        for t in losers:
            t.start()
        time.sleep(0.3)  # the losers are in flight (on PostgreSQL: waiting on the row lock)
        live.store.release.set()
        winner.join(TIMEOUT)
        for t in losers:
            t.join(TIMEOUT)
        assert [r.status_code for r in answers] == [200], [r.text for r in answers]
        assert sorted(r.status_code for r in late) == [400, 400], [r.text for r in late]
        assert {r.json()["error"] for r in late} == {"invalid_grant"}
        assert live.named("family_revoked") == []
        assert _refresh(winner_tab, answers[0].json()["refresh_token"]).status_code == 200
        # Sent after the winner's answer: reuse, and the family is revoked (grace 0).
        replay = _refresh(loser_tabs[0], token)
        assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
        assert len(live.named("reuse_detected")) == 1
        assert len(live.named("family_revoked")) == 1
    finally:
        for tab in tabs:
            tab.close()


def _naive(tabs: list[Tab], token: str) -> list[tuple[int, Any]]:
    """Every tab sends its whole request when a barrier opens, as a page's timer would: the
    requests leave together, but one may reach the server after the winner was answered."""
    return _together(tabs, lambda i: tabs[i].refresh(token))


@pytest.mark.parametrize("served", [GRACE], indirect=True, ids=["grace 5 s"])
@pytest.mark.parametrize("count", [2, 8], ids=lambda n: f"{n} tabs")
def test_uncoordinated_tabs_with_a_grace_window_share_one_token(
    served: tuple[Tokensmith, Cluster], count: int
) -> None:
    """Tabs that refresh on their own timers, with nothing to order them: a request that
    reaches the server after the winner's answer cannot be told from a replay by the server,
    so the grace window is what keeps them (README "Concurrent tabs"). Every tab gets the
    same child, the family keeps one active token, and nothing is revoked."""
    ts, cluster = served
    tabs = [Tab(cluster.ports[0]) for _ in range(count)]
    try:
        for trial in range(TRIALS):
            login = ts.issue(subject="alice", client_id="spa", scope="openid", audience="api")
            answers = _naive(tabs, login.refresh_token or "")
            assert [status for status, _ in answers] == [200] * count, (trial, answers)
            children = {body["refresh_token"] for _, body in answers}
            assert len(children) == 1, trial
            child = children.pop()
            assert ts.introspect(child)["active"] is True, trial
            assert tabs[0].refresh(child)[0] == 200, trial
        families = ts.families("alice", limit=TRIALS + 1)
        assert len(families) == TRIALS
        assert [f.family_id for f in families if f.revoked_at is not None] == []
    finally:
        for tab in tabs:
            tab.sock.close()


def test_a_body_sent_after_the_winners_answer_is_reuse_though_its_head_came_first(
    live: Live,
) -> None:
    """Found by attacking a live server: the stamp was the request's first byte, and the
    refresh token is in the body, which may follow the head by the head and body deadlines.
    A holder of a used token who sent a head early could present it long after the winner
    was answered as "concurrent", forever unseen. A request now arrives no earlier than
    ``SPREAD`` before its last byte."""
    token = live.login()
    body = urlencode({"grant_type": "refresh_token", "refresh_token": token, "client_id": "spa"})
    port = int(live.base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as early:
        early.sendall(
            b"POST /token HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
        )
        time.sleep(0.3)  # the head is parsed
        (tab,) = _tabs(live, 1)
        try:
            winner = _refresh(tab, token)
            assert winner.status_code == 200, winner.text
            time.sleep(SPREAD + 0.5)
            early.sendall(body.encode())  # well after the winner's answer
            answer = http.client.HTTPResponse(early)
            answer.begin()
            assert answer.status == 400
            assert json.loads(answer.read())["error"] == "invalid_grant"
            assert len(live.named("reuse_detected")) == 1
            child = _refresh(tab, winner.json()["refresh_token"])
            assert child.status_code == 400, "the family was not revoked"
        finally:
            tab.close()

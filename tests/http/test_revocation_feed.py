"""``GET /revocations`` and ``/revocations/stream`` (http/revocations.py) and the resource
server's ``RemoteRevocations`` following them over real HTTP (a uvicorn in a thread)."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import make_tokensmith, uvicorn_in_thread
from tests.scale.cluster import free_port
from tests.waiting import eventually
from tokensmith import SystemClock, TemporarilyUnavailable, Tokensmith
from tokensmith.errors import InvalidToken
from tokensmith.http import BearerGuard, RemoteJwks, RemoteRevocations, create_app

from .conftest import Env

AUD = "api"


@pytest.mark.anyio
async def test_the_feed_is_for_confidential_clients_only(env: Env) -> None:
    assert (await env.http.get("/revocations")).status_code == 401
    # A public client authenticates with its id alone, and is still refused.
    id_only = {"Authorization": "Basic " + base64.b64encode(b"spa:").decode()}
    public = await env.http.get("/revocations", headers=id_only)
    assert public.status_code == 401 and "confidential" in public.json()["error_description"]
    wrong = await env.http.get("/revocations", headers=env.basic("rs", "wrong"))
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    env.ts.update_client("rs", enabled=False)
    assert (await env.http.get("/revocations", headers=env.basic("rs"))).status_code == 401


@pytest.mark.anyio
async def test_revocations_are_read_after_a_cursor_with_an_etag(env: Env) -> None:
    rs = env.basic("rs")
    first = (await env.http.get("/revocations", headers=rs)).json()
    tokens = env.login()
    env.ts.revoke_refresh_token(tokens["refresh_token"])
    env.ts.revoke_subject("bob")
    page = await env.http.get("/revocations", params={"since": first["cursor"]}, headers=rs)
    body = page.json()
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    assert [(e["kind"], e["key"]) for e in body["entries"]] == [
        ("family", tokens_sid(env, tokens)),
        ("subject", "bob"),
    ]
    assert all(e["exp"] > e["at"] for e in body["entries"]) and body["more"] is False
    again = await env.http.get(
        "/revocations",
        params={"since": first["cursor"]},
        headers={**rs, "If-None-Match": page.headers["etag"]},
    )
    assert again.status_code == 304
    later = await env.http.get("/revocations", params={"since": body["cursor"]}, headers=rs)
    assert later.json()["entries"] == []
    bad = await env.http.get("/revocations", params={"since": "-1"}, headers=rs)
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_request"


def tokens_sid(env: Env, tokens: dict[str, str]) -> str:
    claims = env.ts.verify_access_token(tokens["access_token"], audience=AUD, check_revoked=False)
    return str(claims["sid"])


@pytest.mark.anyio
async def test_a_denied_jti_is_served_until_it_cannot_verify(env: Env) -> None:
    """SECURITY B4: the entry lives until exp + MAX_LEEWAY, then leaves the feed."""
    env.ts.revoke_access_token("j1", env.clock.now() + 60)
    rs = env.basic("rs")
    jtis = [e for e in (await env.http.get("/revocations", headers=rs)).json()["entries"]]
    assert [e["key"] for e in jtis if e["kind"] == "jti"] == ["j1"]
    env.clock.advance(60 + 300)
    gone = (await env.http.get("/revocations", headers=rs)).json()["entries"]
    assert [e for e in gone if e["kind"] == "jti"] == []


# -- over a live server ---------------------------------------------------------------------
class Live:
    def __init__(self, ts: Tokensmith, url: str, secret: str) -> None:
        self.ts = ts
        self.url = url
        self.secret = secret

    def follower(self, **options: object) -> tuple[RemoteRevocations, BearerGuard]:
        jwks = RemoteJwks(
            f"{self.url}/.well-known/jwks.json", allow_insecure_loopback=True, cooldown=0
        )
        feed = RemoteRevocations(
            self.url,
            client_id="rs",
            client_secret=self.secret,
            jwks=jwks,
            allow_insecure_loopback=True,
            **options,  # type: ignore[arg-type]
        )
        guard = BearerGuard(audience=AUD, keys=jwks, issuer=self.url, revocations=feed)
        return feed, guard


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # Real time: the follower's view and the tokens' exp are measured by the wall clock.
    ts = make_tokensmith(tmp_path, SystemClock(), issuer=url)  # type: ignore[arg-type]
    ts.register_client("spa", confidential=False, audiences=(AUD,))
    _, secret = ts.register_client("rs", confidential=True)
    assert secret is not None
    with uvicorn_in_thread(create_app(ts), port):
        yield Live(ts, url, secret)


def accepted(guard: BearerGuard, token: str) -> bool:
    try:
        guard.verify(token)
    except (InvalidToken, TemporarilyUnavailable):  # 401, or 503 until its view is current
        return False
    return True


def timed_refusal(guard: BearerGuard, token: str) -> float:
    """Seconds until ``guard`` refuses ``token`` (fails the test past 1 s)."""
    start = time.monotonic()
    assert eventually(lambda: not accepted(guard, token), within=1.0), "still accepted after 1 s"
    return time.monotonic() - start


def test_a_following_resource_server_refuses_every_kind_within_a_second(live: Live) -> None:
    feed, guard = live.follower()
    feed.start()
    try:
        ts = live.ts
        issue = lambda sub="alice": ts.issue(subject=sub, client_id="spa", audience=AUD)  # noqa: E731
        family, subject, jti = issue(), issue("bob"), issue("carol")
        assert eventually(lambda: accepted(guard, family.access_token), within=2.0)
        assert all(accepted(guard, t.access_token) for t in (subject, jti))
        ts.revoke_family(family.session_id or "")
        timed_refusal(guard, family.access_token)
        ts.revoke_subject("bob")
        timed_refusal(guard, subject.access_token)
        claims = ts.verify_access_token(jti.access_token, audience=AUD)
        ts.revoke_access_token(claims["jti"], claims["exp"])
        timed_refusal(guard, jti.access_token)
        client = issue("dave")
        ts.update_client("spa", enabled=False)
        timed_refusal(guard, client.access_token)
        ts.update_client("spa", enabled=True)
        assert eventually(lambda: accepted(guard, client.access_token), within=1.0)
    finally:
        feed.close()


def test_an_emergency_key_revocation_stops_remote_verification_within_a_second(
    live: Live,
) -> None:
    feed, guard = live.follower()
    feed.start()
    try:
        token = live.ts.issue(subject="alice", client_id="spa", audience=AUD).access_token
        assert eventually(lambda: accepted(guard, token), within=2.0)
        kid = live.ts.keys.signer().kid
        live.ts.revoke_key(kid)
        timed_refusal(guard, token)
        # A token from the key that signs now verifies (the JWKS was fetched again).
        fresh = live.ts.issue(subject="alice", client_id="spa", audience=AUD).access_token
        assert eventually(lambda: accepted(guard, fresh), within=1.0)
    finally:
        feed.close()


def test_a_view_older_than_its_bound_fails_closed_unless_told_to_fail_open(
    live: Live, tmp_path: Path
) -> None:
    token = live.ts.issue(subject="alice", client_id="spa", audience=AUD).access_token
    closed, guard = live.follower(max_staleness=0.5, poll_interval=0.5, stream=False)
    with pytest.raises(TemporarilyUnavailable):  # nothing heard yet
        guard.verify(token)
    closed.sync()
    assert accepted(guard, token)
    time.sleep(0.6)
    with pytest.raises(TemporarilyUnavailable):
        guard.verify(token)
    opened, open_guard = live.follower(max_staleness=0.5, poll_interval=0.5, fail_open=True)
    assert accepted(open_guard, token)  # never heard from the issuer, and told to accept
    closed.close()
    opened.close()


def test_the_stream_resumes_after_the_last_event_id(live: Live) -> None:
    live.ts.revoke_subject("a")
    live.ts.revoke_subject("b")
    auth = httpx.BasicAuth("rs", live.secret)
    first = httpx.get(f"{live.url}/revocations", auth=auth).json()["entries"]
    after = first[0]["id"]
    with httpx.stream(
        "GET", f"{live.url}/revocations/stream", auth=auth, headers={"Last-Event-ID": str(after)}
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = []
        for line in response.iter_lines():
            lines.append(line)
            if line.startswith("event: heartbeat"):
                break
    assert f"id: {first[1]['id']}" in lines and f"id: {after}" not in lines


@pytest.mark.anyio
@pytest.mark.parametrize("cursor", ["²", "١٢", "1e3", "0x10"])
async def test_a_cursor_is_ascii_digits_or_a_400(env: Env, cursor: str) -> None:
    """Found by attacking a live server: "²" passed ``str.isdigit`` and ``int`` then raised,
    a 500; "١٢" was read as 12."""
    bad = await env.http.get("/revocations", params={"since": cursor}, headers=env.basic("rs"))
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_request"


def test_the_stream_ends_once_its_client_is_disabled(live: Live) -> None:
    """Found by attacking a live server: a stream opened before its client was disabled
    kept delivering revocations (user ids among them)."""
    auth = httpx.BasicAuth("rs", live.secret)
    seen: list[str] = []
    with httpx.stream("GET", f"{live.url}/revocations/stream", auth=auth, timeout=15) as response:
        lines = response.iter_lines()
        assert next(line for line in lines if line.startswith("event: heartbeat"))
        live.ts.update_client("rs", enabled=False)
        live.ts.revoke_subject("carol")
        started = time.monotonic()
        seen = list(lines)  # the server ends the stream at its next heartbeat
    assert time.monotonic() - started < 12
    assert not any("carol" in line for line in seen), seen

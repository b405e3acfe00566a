"""OpenID Connect Back-Channel Logout 1.0 end to end: registration, the logout token as
another implementation (joserfc) validates it by §2.6, at-least-once delivery to a receiver
that was down (live processes), and two instances sharing one PostgreSQL outbox without
ever delivering one message twice at once."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from joserfc import jwt as joserfc_jwt
from joserfc.jwk import KeySet
from starlette.testclient import TestClient

from tokensmith import ManualClock, Settings, Tokensmith
from tokensmith.cli import cli
from tokensmith.clock import SystemClock
from tokensmith.errors import InvalidRequest, RefreshTokenReused
from tokensmith.facade import TokenResponse
from tokensmith.http import create_app
from tokensmith.http.cookies import COOKIE_NAME, CSRF_HEADER
from tokensmith.logout import BACKCHANNEL_LOGOUT_EVENT
from tokensmith.logout.delivery import DeliveryReport

from .conftest import ISSUER, cli_env, live_serve, make_tokensmith
from .logout_receiver import received, serve
from .refresh.conftest import pg_schema_url
from .scale.cluster import free_port

ORIGIN = "https://app.example.com"
# Bounds of every wait here: a receiver or a worker that never gets there fails the test.
WAIT = 30.0


def wait_for(condition: Any, what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@contextmanager
def receiver_thread(record: Path, delay: float = 0.0) -> Iterator[str]:
    port = free_port()
    server = serve(port, record, delay)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}/backchannel"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def receiver_process(port: int, record: Path) -> Iterator[None]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.logout_receiver", str(port), str(record), "0"],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        yield
    finally:
        proc.terminate()
        proc.wait(10)
        assert proc.stdout is not None
        proc.stdout.close()


def validated(
    ts: Tokensmith, token: str, client_id: str, issuers: list[str] | None = None
) -> dict[str, Any]:
    """Back-Channel Logout 1.0 §2.6, as joserfc checks it: signature by the issuer's
    published keys, ``iss``, ``aud``, ``iat``/``exp`` now, a ``jti``, the ``events`` member
    naming the logout event with a JSON object, ``sid`` or ``sub``, no ``nonce``, and the
    explicit type ``logout+jwt``."""
    decoded = joserfc_jwt.decode(
        token, KeySet.import_key_set(ts.jwks()), algorithms=[ts.settings.signing_alg]
    )
    assert decoded.header["typ"] == "logout+jwt"
    registry = joserfc_jwt.JWTClaimsRegistry(
        now=int(ts.clock.now()),
        iss={"essential": True, "values": issuers or [ts.settings.issuer]},
        aud={"essential": True, "value": client_id},
        iat={"essential": True},
        exp={"essential": True},
        jti={"essential": True},
        sid={"essential": True},
        sub={"essential": True},
    )
    registry.validate(decoded.claims)
    assert decoded.claims["events"] == {BACKCHANNEL_LOGOUT_EVENT: {}}
    assert "nonce" not in decoded.claims
    return decoded.claims


# -- registration -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "uri",
    [
        "http://rp.example.com/logout",
        "https://rp.example.com/logout#fragment",
        "https://user:pw@rp.example.com/logout",
        "rp.example.com/logout",
        "https:///logout",
        "https://169.254.169.254/latest/meta-data/",
        "https://[fe80::1]/logout",
        "https://0.0.0.0/logout",
    ],
    ids=[
        "plain http off loopback",
        "fragment",
        "credentials",
        "relative",
        "no host",
        "link-local (cloud metadata)",
        "IPv6 link-local",
        "unspecified",
    ],
)
def test_a_backchannel_logout_uri_must_be_https_except_on_loopback(
    tmp_path: Path, uri: str
) -> None:
    ts = Tokensmith(Settings(issuer=ISSUER, database_url="memory://", keys_dir=str(tmp_path)))
    with pytest.raises(InvalidRequest, match="backchannel_logout_uri"):
        ts.register_client("rp", confidential=False, backchannel_logout_uri=uri)
    ts.register_client("rp", confidential=False, backchannel_logout_uri="http://127.0.0.1:9/l")
    with pytest.raises(InvalidRequest, match="backchannel_logout_uri"):
        ts.update_client("rp", backchannel_logout_uri=uri)


def test_the_cli_registers_shows_and_removes_a_backchannel_logout_uri(
    tmp_path: Path, clock: Any
) -> None:
    make_tokensmith(tmp_path, clock)
    run = CliRunner().invoke
    env = cli_env(tmp_path)
    added = run(
        cli,
        [
            "clients",
            "add",
            "rp",
            "--public",
            "--json",
            "--backchannel-logout-uri",
            "https://rp.example.com/bc",
            "--backchannel-logout-session-required",
        ],
        env=env,
    )
    assert added.exit_code == 0, added.output
    described = json.loads(added.output)
    assert described["backchannel_logout_uri"] == "https://rp.example.com/bc"
    assert described["backchannel_logout_session_required"] is True
    listing = run(cli, ["clients", "list"], env=env)
    assert "https://rp.example.com/bc" in listing.output
    bad = run(
        cli,
        ["clients", "update", "rp", "--backchannel-logout-uri", "http://rp.example.com"],
        env=env,
    )
    assert bad.exit_code != 0 and "Traceback" not in bad.output
    assert len(bad.output.strip().splitlines()) == 1, bad.output
    cleared = run(
        cli,
        [
            "clients",
            "update",
            "rp",
            "--json",
            "--backchannel-logout-uri",
            "",
            "--no-backchannel-logout-session-required",
        ],
        env=env,
    )
    assert cleared.exit_code == 0, cleared.output
    assert json.loads(cleared.output)["backchannel_logout_uri"] is None
    assert json.loads(cleared.output)["backchannel_logout_session_required"] is False


# -- every way a session ends ----------------------------------------------------------------
def _end_by_reuse(ts: Tokensmith, http: TestClient, issued: TokenResponse) -> None:
    assert issued.refresh_token is not None
    ts.refresh(issued.refresh_token, client_id="rp")
    ts.clock.advance(5)  # type: ignore[attr-defined]  # a late replay: reuse
    with pytest.raises(RefreshTokenReused):
        ts.refresh(issued.refresh_token, client_id="rp")


def _end_by_cookie_logout(ts: Tokensmith, http: TestClient, issued: TokenResponse) -> None:
    assert issued.refresh_token is not None
    cookie = f"{COOKIE_NAME}={issued.refresh_token}"
    answer = http.post(
        "/logout",
        data={"client_id": "rp"},
        headers={"Origin": ORIGIN, CSRF_HEADER: "1", "Cookie": cookie},
    )
    assert answer.status_code == 204


def _end_by_user(ts: Tokensmith, http: TestClient, issued: TokenResponse) -> None:
    answer = http.delete(
        f"/sessions/{issued.session_id}", headers={"Authorization": f"Bearer {issued.access_token}"}
    )
    assert answer.status_code == 204


def _end_as_another_session(ts: Tokensmith, http: TestClient, issued: TokenResponse) -> None:
    other = ts.issue(subject="alice", client_id="spa")  # not a back-channel client
    answer = http.post(
        "/sessions/revoke-others", headers={"Authorization": f"Bearer {other.access_token}"}
    )
    assert answer.status_code == 200 and answer.json() == {"ended": 1}


Ending = Callable[[Tokensmith, TestClient, TokenResponse], object]
ENDINGS: dict[str, Ending] = {
    "family revocation": lambda ts, http, issued: ts.revoke_family(issued.session_id or ""),
    "subject revocation": lambda ts, http, issued: ts.revoke_subject("alice"),
    "RFC 7009 revocation": lambda ts, http, issued: ts.revoke_refresh_token(
        issued.refresh_token or ""
    ),
    "reuse detection": _end_by_reuse,
    "cookie-mode /logout": _end_by_cookie_logout,
    "DELETE /sessions/{sid}": _end_by_user,
    "POST /sessions/revoke-others": _end_as_another_session,
}


@pytest.mark.parametrize("end", ENDINGS.values(), ids=ENDINGS.keys())
def test_every_way_a_session_ends_queues_its_back_channel_logout(
    tmp_path: Path,
    clock: ManualClock,
    end: Callable[[Tokensmith, TestClient, TokenResponse], object],
) -> None:
    ts = Tokensmith(
        Settings(issuer=ISSUER, database_url="memory://", keys_dir=str(tmp_path)), clock=clock
    )
    ts.setup()
    ts.register_client(
        "rp",
        confidential=False,
        cookie_mode=True,
        allowed_origins=(ORIGIN,),
        backchannel_logout_uri="https://rp.example.com/backchannel",
    )
    ts.register_client("spa", confidential=False)
    issued = ts.issue(subject="alice", client_id="rp")
    with TestClient(create_app(ts), base_url="https://testserver") as http:
        end(ts, http, issued)
    outbox = ts.logout_outbox
    assert outbox is not None
    [message] = outbox.claim_logouts(clock.now(), 60, 10, "test")
    assert (message.client_id, message.subject, message.session_id) == (
        "rp",
        "alice",
        issued.session_id,
    )


# -- the logout token -------------------------------------------------------------------------
def test_a_revoked_session_sends_a_logout_token_that_joserfc_validates(tmp_path: Path) -> None:
    record = tmp_path / "received.jsonl"
    ts = make_tokensmith(tmp_path, SystemClock())  # type: ignore[arg-type]
    with receiver_thread(record) as uri:
        ts.register_client("rp", confidential=False, backchannel_logout_uri=uri)
        session = ts.issue(subject="alice", client_id="rp", scope="openid", nonce="n-0S6")
        assert ts.deliver_logouts().delivered == 0  # nothing revoked, nothing sent
        assert ts.revoke_family(session.session_id or "")
        report = ts.deliver_logouts()
    assert (report.delivered, report.retried, report.dropped) == (1, 0, 0)
    [delivery] = received(record)
    assert delivery["type"] == "application/x-www-form-urlencoded"
    claims = validated(ts, str(delivery["token"]), "rp")
    assert (claims["sub"], claims["sid"]) == ("alice", session.session_id)
    assert ts.logout_outbox is not None and ts.logout_outbox.pending_logouts() == 0


def test_the_token_is_never_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    record = tmp_path / "received.jsonl"
    ts = make_tokensmith(tmp_path, SystemClock())  # type: ignore[arg-type]
    caplog.set_level("DEBUG")
    with receiver_thread(record) as uri:
        ts.register_client("rp", confidential=False, backchannel_logout_uri=uri)
        ts.revoke_family(ts.issue(subject="alice", client_id="rp").session_id or "")
        ts.deliver_logouts()
    [delivery] = received(record)
    token = str(delivery["token"])
    assert "delivered" in caplog.text
    for part in token.split("."):
        assert part not in caplog.text


def test_an_unreachable_receiver_is_retried_with_backoff_then_dropped(tmp_path: Path) -> None:
    ts = make_tokensmith(
        tmp_path,
        SystemClock(),  # type: ignore[arg-type]
        backchannel_timeout=0.5,
        backchannel_poll_interval=0.05,
        backchannel_max_backoff=0.2,
        backchannel_max_attempts=3,
    )
    dead = f"http://127.0.0.1:{free_port()}/backchannel"
    ts.register_client("rp", confidential=False, backchannel_logout_uri=dead)
    ts.revoke_family(ts.issue(subject="alice", client_id="rp").session_id or "")
    assert ts.deliver_logouts().retried == 1
    assert ts.deliver_logouts().retried == 0  # not due yet: the backoff holds it back
    outcomes = []
    deadline = time.monotonic() + WAIT
    while ts.logout_outbox and ts.logout_outbox.pending_logouts() and time.monotonic() < deadline:
        report = ts.deliver_logouts()
        outcomes += ["retried"] * report.retried + ["dropped"] * report.dropped
        time.sleep(0.05)
    assert outcomes == ["retried", "dropped"]


def test_a_redirect_is_not_followed(tmp_path: Path) -> None:
    """The token goes only to the registered URI: a 307 to another receiver is a failed
    attempt, and that receiver never sees it."""
    record = tmp_path / "received.jsonl"
    ts = make_tokensmith(tmp_path, SystemClock())  # type: ignore[arg-type]
    with receiver_thread(record) as elsewhere:

        class Redirect(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", "0")))
                self.send_response(307)
                self.send_header("Location", elsewhere)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        redirector = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
        threading.Thread(target=redirector.serve_forever, daemon=True).start()
        try:
            uri = f"http://127.0.0.1:{redirector.server_address[1]}/backchannel"
            ts.register_client("rp", confidential=False, backchannel_logout_uri=uri)
            ts.revoke_family(ts.issue(subject="alice", client_id="rp").session_id or "")
            report = ts.deliver_logouts()
        finally:
            redirector.shutdown()
            redirector.server_close()
    assert (report.delivered, report.retried) == (0, 1)
    assert received(record) == []


# -- every POST is bounded: in time, and in what it reads ------------------------------------
@contextmanager
def raw_receiver(handle: Callable[[BaseHTTPRequestHandler], None]) -> Iterator[str]:
    """A receiver whose answer ``handle`` writes by hand, once it has read the request."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", "0")))
            handle(self)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/backchannel"
    finally:
        server.shutdown()
        server.server_close()


def test_a_trickling_receiver_is_cut_off_at_the_deadline_and_others_still_get_theirs(
    tmp_path: Path,
) -> None:
    """A receiver that sends its status line and then a header line every 0.3 s never
    trips the per-read timeout (0.5 s here). The POST's deadline (3 x 0.5 s) shuts its
    connection down and counts a failed attempt, and the next client, which answers at
    once, still gets its logout. Without the deadline the delivery waits on the trickle
    for as long as it lasts, and the fast receiver gets nothing."""
    record = tmp_path / "received.jsonl"
    ts = make_tokensmith(tmp_path, SystemClock(), backchannel_timeout=0.5)  # type: ignore[arg-type]
    stop = threading.Event()
    cut_off: list[float] = []

    def trickle(handler: BaseHTTPRequestHandler) -> None:
        try:
            handler.wfile.write(b"HTTP/1.1 200 OK\r\n")
            while not stop.wait(0.3):
                handler.wfile.write(b"X-Still-Thinking: yes\r\n")
        except OSError:  # the issuer closed the connection
            cut_off.append(time.monotonic())

    reports: list[DeliveryReport] = []
    with raw_receiver(trickle) as slow_uri, receiver_thread(record) as fast_uri:
        try:
            ts.register_client("slow", confidential=False, backchannel_logout_uri=slow_uri)
            ts.register_client("fast", confidential=False, backchannel_logout_uri=fast_uri)
            for client_id in ("slow", "fast"):  # the slow one is due first
                ts.revoke_family(ts.issue(subject="alice", client_id=client_id).session_id or "")
            started = time.monotonic()
            worker = threading.Thread(target=lambda: reports.append(ts.deliver_logouts()))
            worker.start()
            wait_for(lambda: received(record), "the fast receiver's logout", timeout=10)
            wait_for(lambda: cut_off, "the slow receiver's connection to close", timeout=10)
        finally:
            stop.set()  # ends a trickle that was never cut off
            worker.join(WAIT)
    assert cut_off[0] - started < 10
    assert reports == [DeliveryReport(delivered=1, retried=1, dropped=0)]
    assert ts.logout_outbox is not None and ts.logout_outbox.pending_logouts() == 1  # a retry


BODY = 128 * 1024 * 1024


def test_the_answer_body_is_never_read(tmp_path: Path) -> None:
    """A receiver answering 200 with a 128 MiB body: ``tokensmith logout deliver`` delivers
    the logout (only the status matters, §2.8) and closes the connection with the body
    unread, so the receiver gets no more than the sockets' buffers hold into it. Reading it all, as
    ``httpx.Client.post()`` does, takes the whole body into the issuer's memory."""
    sent: list[int] = []
    finished = threading.Event()

    def big(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(BODY))
        handler.end_headers()
        chunk = b"x" * 65536
        written = 0
        try:
            while written < BODY:
                handler.wfile.write(chunk)
                written += len(chunk)
        except OSError:  # the issuer closed the connection
            pass
        sent.append(written)
        finished.set()

    ts = make_tokensmith(tmp_path, SystemClock())  # type: ignore[arg-type]
    with raw_receiver(big) as uri:
        ts.register_client("rp", confidential=False, backchannel_logout_uri=uri)
        ts.revoke_family(ts.issue(subject="alice", client_id="rp").session_id or "")
        delivered = CliRunner().invoke(cli, ["logout", "deliver", "--json"], env=cli_env(tmp_path))
        assert finished.wait(WAIT)
    assert delivered.exit_code == 0, delivered.output
    assert json.loads(delivered.output) == {
        "delivered": 1,
        "retried": 0,
        "dropped": 0,
        "pending": 0,
    }
    assert sent[0] < BODY // 8, f"the receiver wrote {sent[0]} bytes"


# -- at-least-once across a receiver outage and a restart -------------------------------------
def test_a_receiver_that_was_down_gets_every_logout_token_after_it_comes_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Live processes: ``tokensmith serve`` delivers; the receiver is stopped, sessions are
    revoked meanwhile, serve itself is restarted, and once the receiver is back every
    logout token arrives."""
    monkeypatch.setenv("TOKENSMITH_BACKCHANNEL_POLL_INTERVAL", "0.1")
    monkeypatch.setenv("TOKENSMITH_BACKCHANNEL_MAX_BACKOFF", "0.5")
    monkeypatch.setenv("TOKENSMITH_BACKCHANNEL_TIMEOUT", "1")
    record = tmp_path / "received.jsonl"
    port = free_port()
    ts = make_tokensmith(tmp_path, SystemClock(), issuer=ISSUER)  # type: ignore[arg-type]
    ts.register_client(
        "rp", confidential=False, backchannel_logout_uri=f"http://127.0.0.1:{port}/backchannel"
    )

    def revoke(count: int, subject: str) -> set[str]:
        sids = {ts.issue(subject=subject, client_id="rp").session_id or "" for _ in range(count)}
        assert ts.revoke_subject(subject) == count
        return sids

    def sids() -> list[str]:
        return [str(json.loads(_payload(str(d["token"])))["sid"]) for d in received(record)]

    with live_serve(tmp_path) as first_url:
        with receiver_process(port, record):
            before = revoke(5, "alice")
            wait_for(lambda: set(sids()) == before, "the first logouts")
        during = revoke(15, "bob")  # the receiver is down
        time.sleep(1.5)  # serve tries, and fails, several times meanwhile
        assert set(sids()) == before
    with live_serve(tmp_path) as second_url, receiver_process(port, record):  # a restart
        wait_for(lambda: set(sids()) == before | during, "every logout after the outage")
    assert ts.logout_outbox is not None and ts.logout_outbox.pending_logouts() == 0
    for delivery in received(record):
        validated(ts, str(delivery["token"]), "rp", [first_url, second_url])


def _payload(token: str) -> bytes:
    import base64

    segment = token.split(".")[1]
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


# -- two instances, one PostgreSQL outbox ----------------------------------------------------
@pytest.fixture
def pg_url() -> Iterator[str]:
    with pg_schema_url("bcl") as url:
        yield url


COUNT = 200


@pytest.mark.postgres
def test_two_instances_never_deliver_one_logout_twice_at_once(tmp_path: Path, pg_url: str) -> None:
    """Two facades on one PostgreSQL database (two instances: their own engines and
    claimants) deliver 200 logouts side by side, two at a claim, to a receiver that takes
    10 ms each and records any delivery of a ``jti`` that another one is still in. With the
    claim's ``FOR UPDATE SKIP LOCKED`` and re-check removed, overlaps appear every run."""
    record = tmp_path / "received.jsonl"

    def instance() -> Tokensmith:
        settings = Settings(
            issuer=ISSUER,
            database_url=pg_url,
            keys_dir=str(tmp_path / "keys"),
            key_store="file",
        )
        return Tokensmith(settings)

    first, second = instance(), instance()
    first.setup()
    with receiver_thread(record, delay=0.01) as uri:
        first.register_client("rp", confidential=False, backchannel_logout_uri=uri)
        expected = {
            first.issue(subject=f"user{i}", client_id="rp").session_id for i in range(COUNT)
        }
        for i in range(COUNT):
            first.revoke_subject(f"user{i}")
        barrier = threading.Barrier(2)
        handled: list[int] = []

        def work(ts: Tokensmith) -> None:
            barrier.wait()
            deadline = time.monotonic() + WAIT
            total = 0
            while time.monotonic() < deadline:
                report = ts.deliver_logouts(limit=2)
                total += report.delivered
                if report.delivered == 0 and not ts.logout_outbox.pending_logouts():  # type: ignore[union-attr]
                    break
            handled.append(total)

        workers = [threading.Thread(target=work, args=(ts,)) for ts in (first, second)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(WAIT + 10)
    for ts in (first, second):
        ts.sessions.store.engine.dispose()  # type: ignore[attr-defined]
    deliveries = received(record)
    assert not [d for d in deliveries if d["overlap"]]
    sids = [json.loads(_payload(str(d["token"])))["sid"] for d in deliveries]
    assert sorted(sids) == sorted(expected)  # each exactly once: no failure, no duplicate
    assert sum(handled) == COUNT and min(handled) > 0  # both instances took part

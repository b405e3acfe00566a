"""Running the service: the schedule, metrics, structured logs and ``tokensmith serve``."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from tokensmith import ManualClock, Tokensmith
from tokensmith.cli import cli
from tokensmith.cli.serve import issuer_is_safe
from tokensmith.http import create_app
from tokensmith.logjson import JsonFormatter
from tokensmith.maintenance import Maintenance

from .conftest import cli_env, live_serve, make_tokensmith

ISSUER = "https://as.example.com"


@pytest.fixture
def ts(tmp_path: Path) -> Tokensmith:
    return make_tokensmith(
        tmp_path,
        ManualClock(1_800_000_000),
        issuer=ISSUER,
        key_rotation_period=3600,
        jwks_max_age=60,
    )


def test_the_schedule_rotates_when_due_and_cleans_up(ts: Tokensmith) -> None:
    maintenance = Maintenance(ts)
    first = ts.keys.signer().kid
    maintenance.run_once()
    assert ts.keys.signer().kid == first
    ts.clock.advance(3600)  # type: ignore[attr-defined]
    maintenance.run_once()
    assert ts.keys.signer().kid != first


def test_a_failing_round_is_logged_not_raised(
    ts: Tokensmith, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> bool:
        raise OSError("disk full")

    monkeypatch.setattr(ts.keys, "tick", broken)
    Maintenance(ts).run_once()
    assert "scheduled key rotation failed" in caplog.text


def test_the_schedule_thread_starts_and_stops_with_the_app(ts: Tokensmith) -> None:
    maintenance = Maintenance(ts, key_interval=0.01)
    from starlette.testclient import TestClient

    with TestClient(create_app(ts, maintenance=maintenance)) as client:
        assert client.get("/.well-known/jwks.json").status_code == 200
        threads = maintenance._threads  # the schedule and the back-channel logout delivery
        assert len(threads) == 2 and all(t.is_alive() for t in threads)
    assert maintenance._threads == [] and not any(t.is_alive() for t in threads)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


SCRAPE_TOKEN = "scrape-" + "s" * 32


@pytest.mark.anyio
async def test_metrics_count_events_errors_and_latency(tmp_path: Path) -> None:
    ts = make_tokensmith(tmp_path, ManualClock(1_800_000_000), metrics_token=SCRAPE_TOKEN)
    ts.register_client("spa", confidential=False)
    app = create_app(ts, enable_metrics=True)
    login = ts.issue(subject="alice", client_id="spa", scope="openid")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as client:
        data = {"grant_type": "refresh_token", "client_id": "spa"}
        ok = await client.post("/token", data={**data, "refresh_token": login.refresh_token})
        bad = await client.post("/token", data={**data, "refresh_token": "tsr_nope"})
        assert (ok.status_code, bad.status_code) == (200, 400)
        scrape = {"Authorization": f"Bearer {SCRAPE_TOKEN}"}
        text = (await client.get("/metrics", headers=scrape)).text
    assert 'tokensmith_events_total{event="issued"} 1.0' in text
    assert 'tokensmith_events_total{event="rotated"} 1.0' in text
    assert 'tokensmith_errors_total{error="invalid_grant"} 1.0' in text
    assert 'tokensmith_request_seconds_count{route="/token",status="2xx"} 1.0' in text
    assert 'tokensmith_request_seconds_count{route="/token",status="4xx"} 1.0' in text
    assert "tsr_" not in text


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("token", "headers", "status"),
    [
        (None, {"Authorization": f"Bearer {SCRAPE_TOKEN}"}, 404),
        (SCRAPE_TOKEN, {}, 401),
        (SCRAPE_TOKEN, {"Authorization": f"Bearer {SCRAPE_TOKEN}x"}, 401),
        (SCRAPE_TOKEN, {"Authorization": f"Basic {SCRAPE_TOKEN}"}, 401),
        (SCRAPE_TOKEN, {"Authorization": f"bearer {SCRAPE_TOKEN}"}, 200),
    ],
    ids=["no token: no public route", "no header", "wrong token", "other scheme", "right"],
)
async def test_public_metrics_need_the_scrape_token(
    tmp_path: Path, token: str | None, headers: dict[str, str], status: int
) -> None:
    """docs/contract.md "Serving limits and operations": /metrics is not public by default."""
    ts = make_tokensmith(tmp_path, ManualClock(1_800_000_000), metrics_token=token)
    transport = httpx.ASGITransport(app=create_app(ts, enable_metrics=True))
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as client:
        r = await client.get("/metrics", headers=headers)
    assert r.status_code == status
    if status == 401:
        assert r.json() == {"error": "invalid_token"}
        assert r.headers["www-authenticate"].startswith("Bearer ")


@pytest.mark.anyio
async def test_a_client_gone_mid_body_is_one_log_line_without_traceback(
    ts: Tokensmith, caplog: pytest.LogCaptureFixture
) -> None:
    """Starlette raises ClientDisconnect while the form is read; it used to reach the
    catch-all handler (a traceback) and uvicorn (another one)."""
    app = create_app(ts)
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/token",
        "raw_path": b"/token",
        "query_string": b"",
        "headers": [(b"content-type", b"application/x-www-form-urlencoded")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000),
        "scheme": "http",
        "http_version": "1.1",
        "root_path": "",
    }
    arrived = iter(
        [
            {"type": "http.request", "body": b"grant_type=", "more_body": True},
            {"type": "http.disconnect"},
        ]
    )

    async def receive() -> dict[str, object]:
        return next(arrived)

    async def send(message: dict[str, object]) -> None:
        return None

    caplog.set_level(logging.DEBUG, logger="tokensmith")
    await app(scope, receive, send)
    records = [r for r in caplog.records if r.name.startswith("tokensmith")]
    assert [r.getMessage() for r in records] == [
        "POST /token: client disconnected before sending its body"
    ]
    assert records[0].exc_info is None


def test_json_logs_carry_event_fields_and_no_secret(ts: Tokensmith) -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    events_logger = logging.getLogger("tokensmith.events")
    events_logger.addHandler(handler)
    level = events_logger.level
    events_logger.setLevel(logging.INFO)
    try:
        t = ts.issue(subject="alice", client_id="spa", scope="openid")
    finally:
        events_logger.removeHandler(handler)
        events_logger.setLevel(level)
    lines = [json.loads(JsonFormatter().format(r)) for r in records]
    issued = next(line for line in lines if line.get("event") == "issued")
    assert issued["level"] == "info" and issued["logger"] == "tokensmith.events"
    assert t.session_id in json.dumps(issued)
    assert all(str(t.refresh_token) not in json.dumps(line) for line in lines)


@pytest.mark.parametrize(
    ("issuer", "safe"),
    [
        ("https://auth.example.com", True),
        ("http://127.0.0.1:8000", True),
        ("http://localhost:8000", True),
        ("http://[::1]:8000", True),
        ("http://auth.example.com", False),
        ("http://127.0.0.1.evil.com", False),
    ],
)
def test_only_https_or_loopback_issuers_are_served(issuer: str, safe: bool) -> None:
    assert issuer_is_safe(issuer) is safe


def test_serve_refuses_a_plain_http_public_issuer(tmp_path: Path) -> None:
    env = {"TOKENSMITH_ISSUER": "http://auth.example.com", "TOKENSMITH_KEYS_DIR": str(tmp_path)}
    result = CliRunner().invoke(cli, ["serve"], env=env)
    assert result.exit_code == 2 and "--insecure" in result.output


def test_serve_refuses_a_metrics_port_with_several_workers(tmp_path: Path) -> None:
    """Each worker has its own counters: one loopback port would show one at random."""
    env = cli_env(tmp_path, issuer="http://127.0.0.1:8000")
    result = CliRunner().invoke(cli, ["serve", "--workers", "2", "--metrics-port", "9"], env=env)
    assert result.exit_code == 2 and "TOKENSMITH_METRICS_TOKEN" in result.output


def test_serve_sets_up_a_fresh_directory_and_answers(tmp_path: Path) -> None:
    """What `make run` does, on a free port: database, first key, discovery."""
    with live_serve(tmp_path, "--log-json") as url:
        r = httpx.get(f"{url}/.well-known/openid-configuration")
        assert r.json()["issuer"] == url
        jwks = httpx.get(f"{url}/.well-known/jwks.json").json()
        assert len(jwks["keys"]) == 2
        assert (tmp_path / "ts.db").exists()

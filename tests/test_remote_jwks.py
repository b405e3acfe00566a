"""SECURITY H5: ``RemoteJwks``, the resource server's cache of the issuer's JWK Set.

Mirrors panva/jose ``test/jwks/remote.test.ts`` ("refreshes the JWKS once off cooldown",
"refreshes the JWKS once stale", "throws on invalid JWKSet") against a real Starlette JWKS
endpoint reached through httpx; time moves on a ``ManualClock``.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import make_keys
from tests.jwks_server import JWKS_URL, JwksServer, dripping, http_answer
from tokensmith.clock import ManualClock
from tokensmith.errors import ConfigError
from tokensmith.http.remote_jwks import RemoteJwks
from tokensmith.keys import KeyManager


@pytest.fixture
def server(keys: KeyManager) -> JwksServer:
    return JwksServer(keys.jwks())


def remote(server: JwksServer, clock: ManualClock, **options: object) -> RemoteJwks:
    return RemoteJwks(JWKS_URL, clock=clock, client=server.client(), **options)  # type: ignore[arg-type]


def active_kid(keys: KeyManager) -> str:
    return keys.signer().kid


def test_known_kids_are_served_from_one_fetch(
    server: JwksServer, clock: ManualClock, keys: KeyManager
) -> None:
    jwks = remote(server, clock)
    for _ in range(50):
        assert jwks.verification_key(active_kid(keys)) is not None
    assert server.fetches == 1


def test_refreshes_the_jwks_once_off_cooldown(
    server: JwksServer, clock: ManualClock, keys: KeyManager
) -> None:
    jwks = remote(server, clock)
    assert jwks.verification_key(active_kid(keys)) is not None
    assert jwks.verification_key("unknown") is None
    assert server.fetches == 1  # the first fetch was 0 s ago: still cooling down
    clock.advance(29.9)
    assert jwks.verification_key("unknown") is None
    assert server.fetches == 1
    clock.advance(0.1)
    assert jwks.verification_key("unknown") is None
    assert server.fetches == 2
    assert jwks.verification_key("unknown") is None
    assert server.fetches == 2


def test_a_thousand_random_kids_cause_at_most_one_fetch(
    server: JwksServer, clock: ManualClock
) -> None:
    jwks = remote(server, clock)
    for _ in range(1000):
        assert jwks.verification_key(secrets.token_urlsafe(12)) is None
    assert server.fetches == 1


def test_concurrent_misses_make_one_fetch(server: JwksServer, clock: ManualClock) -> None:
    jwks = remote(server, clock)
    start = threading.Barrier(16)
    results: list[object] = []

    def miss() -> None:
        start.wait()
        results.append(jwks.verification_key(secrets.token_urlsafe(8)))

    threads = [threading.Thread(target=miss) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [None] * 16
    assert server.fetches == 1


def test_refreshes_the_jwks_once_stale_by_its_max_age(
    server: JwksServer, clock: ManualClock, keys: KeyManager
) -> None:
    server.cache_control = "public, max-age=120"
    jwks = remote(server, clock)
    kid = active_kid(keys)
    assert jwks.verification_key(kid) is not None
    clock.advance(119)
    assert jwks.verification_key(kid) is not None
    assert server.fetches == 1
    clock.advance(1)
    assert jwks.verification_key(kid) is not None
    assert server.fetches == 2


@pytest.mark.parametrize(
    ("cache_control", "age", "fresh_for"),
    [
        pytest.param(None, None, 600, id="no Cache-Control means the 10 minute default"),
        pytest.param("max-age=1", None, 30, id="a tiny max-age is raised to the 30 s floor"),
        pytest.param("max-age=9999999", None, 86_400, id="a huge max-age is capped at 24 h"),
        pytest.param("no-store", None, 30, id="no-store still caches for the floor"),
        pytest.param("public, max-age=300", "100", 200, id="Age is subtracted from max-age"),
        pytest.param("max-age=abc", None, 600, id="an unparseable max-age is the default"),
    ],
)
def test_freshness_follows_cache_control_within_bounds(
    server: JwksServer,
    clock: ManualClock,
    keys: KeyManager,
    cache_control: str | None,
    age: str | None,
    fresh_for: int,
) -> None:
    server.cache_control = cache_control
    if age is not None:
        server.extra_headers["Age"] = age
    jwks = remote(server, clock)
    kid = active_kid(keys)
    jwks.verification_key(kid)
    clock.advance(fresh_for - 0.5)
    jwks.verification_key(kid)
    assert server.fetches == 1
    clock.advance(0.5)
    jwks.verification_key(kid)
    assert server.fetches == 2


INVALID_RESPONSES = [
    pytest.param(200, b"not json", id="a body that is not JSON"),
    pytest.param(200, b'{"keys": "nope"}', id="keys that is not an array"),
    pytest.param(200, b"[]", id="a JSON array instead of a set"),
    pytest.param(200, b'{"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]}', id="only HMAC"),
    pytest.param(200, b"\xff\xfe{}", id="a body that is not UTF-8"),
    pytest.param(200, b"[" * 100_000, id="deeply nested JSON"),
    pytest.param(500, None, id="a server error"),
    pytest.param(404, None, id="not found"),
]


@pytest.mark.parametrize(("status", "body"), INVALID_RESPONSES)
def test_throws_on_invalid_jwkset_but_keeps_the_last_good_set(
    server: JwksServer, clock: ManualClock, keys: KeyManager, status: int, body: bytes | None
) -> None:
    jwks = remote(server, clock)
    kid = active_kid(keys)
    assert jwks.verification_key(kid) is not None
    server.status, server.raw_body = status, body
    clock.advance(601)  # stale: the next lookup refetches and gets the bad answer
    assert jwks.verification_key(kid) is not None
    assert jwks.verification_key("unknown") is None
    assert server.fetches == 2
    assert jwks.refresh() is True  # a good set is still in hand


@pytest.mark.parametrize(("status", "body"), INVALID_RESPONSES)
def test_an_invalid_first_answer_leaves_no_key_and_is_retried_after_cooldown(
    server: JwksServer, clock: ManualClock, keys: KeyManager, status: int, body: bytes | None
) -> None:
    server.status, server.raw_body = status, body
    jwks = remote(server, clock)
    kid = active_kid(keys)
    assert jwks.verification_key(kid) is None
    assert jwks.verification_key(kid) is None
    assert server.fetches == 1
    server.status, server.raw_body = 200, None
    clock.advance(30)
    assert jwks.verification_key(kid) is not None
    assert server.fetches == 2


def test_a_response_over_the_size_cap_is_refused(
    server: JwksServer, clock: ManualClock, keys: KeyManager
) -> None:
    server.jwks = {**keys.jwks(), "padding": "x" * 4096}
    jwks = remote(server, clock, max_bytes=4096)
    assert jwks.verification_key(active_kid(keys)) is None
    assert server.fetches == 1


def test_a_content_encoded_response_is_refused_unread(
    server: JwksServer, clock: ManualClock, keys: KeyManager
) -> None:
    server.extra_headers["Content-Encoding"] = "gzip"
    jwks = remote(server, clock)
    assert jwks.verification_key(active_kid(keys)) is None


def test_one_bad_key_does_not_drop_the_set(
    server: JwksServer, clock: ManualClock, keys: KeyManager
) -> None:
    server.jwks = {"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}, *keys.jwks()["keys"]]}
    jwks = remote(server, clock)
    assert jwks.verification_key(active_kid(keys)) is not None
    assert jwks.verification_key("h") is None


def test_an_etag_revalidation_keeps_the_keys_and_renews_freshness(
    server: JwksServer, clock: ManualClock, keys: KeyManager
) -> None:
    server.etag = '"v1"'
    server.cache_control = "max-age=60"
    jwks = remote(server, clock)
    kid = active_kid(keys)
    assert jwks.verification_key(kid) is not None
    clock.advance(60)
    assert jwks.verification_key(kid) is not None  # 304 Not Modified
    clock.advance(59)
    assert jwks.verification_key(kid) is not None
    assert server.fetches == 2


def test_redirects_are_never_followed(
    server: JwksServer, clock: ManualClock, keys: KeyManager
) -> None:
    jwks = RemoteJwks("https://as.example.com/moved", clock=clock, client=server.client())
    assert jwks.verification_key(active_kid(keys)) is None
    assert server.hits["/moved"] == 1
    assert server.fetches == 0  # the 302's target was never requested


@pytest.mark.parametrize(
    "url",
    [
        "http://as.example.com/jwks.json",
        "http://127.0.0.1/jwks.json",  # loopback still needs the explicit flag
        "file:///etc/passwd",
        "data:application/json,{}",
        "ftp://as.example.com/jwks.json",
        "https:///no-host",
        "not a url",
    ],
)
def test_only_https_urls_are_accepted(url: str) -> None:
    with pytest.raises(ConfigError):
        RemoteJwks(url)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000/jwks", "http://localhost/jwks", "http://[::1]:9/jwks"]
)
def test_plain_http_is_allowed_for_loopback_behind_the_flag(url: str) -> None:
    RemoteJwks(url, allow_insecure_loopback=True).close()


def test_plain_http_to_another_host_is_refused_even_with_the_flag() -> None:
    with pytest.raises(ConfigError):
        RemoteJwks("http://10.0.0.1/jwks", allow_insecure_loopback=True)


def test_a_live_issuer_going_down_keeps_the_last_good_set(
    server: JwksServer, clock: ManualClock, keys: KeyManager
) -> None:
    with server.live() as url:
        jwks = RemoteJwks(url, clock=clock, allow_insecure_loopback=True, timeout=2)
        assert jwks.verification_key(active_kid(keys)) is not None
    # The server is gone: connection refused on the next fetch.
    clock.advance(601)
    assert jwks.verification_key(active_kid(keys)) is not None
    assert jwks.verification_key("unknown") is None
    assert server.fetches == 1
    jwks.close()


def test_key_rotation_at_the_issuer_is_picked_up_by_one_refetch(
    tmp_path: Path, clock: ManualClock
) -> None:
    keys = make_keys(tmp_path / "rot", clock)
    old = keys.signer().kid
    # An issuer that publishes only the signing key (OIDF signing-key-rotation-just-before-
    # signing): the new key appears in the set only when it starts signing.
    server = JwksServer({"keys": [k for k in keys.jwks()["keys"] if k["kid"] == old]})
    jwks = remote(server, clock)
    assert jwks.verification_key(old) is not None
    new = keys.rotate().kid
    server.jwks = keys.jwks()
    clock.advance(30)
    assert jwks.verification_key(new) is not None
    assert server.fetches == 2


@pytest.mark.parametrize(
    "options",
    [
        {"timeout": 0},
        {"timeout": 61},
        {"max_bytes": 0},
        {"cooldown": -1},
        {"min_max_age": 700},
    ],
)
def test_nonsense_options_are_config_errors(options: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        RemoteJwks(JWKS_URL, **options)  # type: ignore[arg-type]


def test_an_unexpected_client_error_still_keeps_the_last_good_set(
    server: JwksServer, clock: ManualClock, keys: KeyManager
) -> None:
    jwks = remote(server, clock)
    kid = active_kid(keys)
    assert jwks.verification_key(kid) is not None
    server.explode = True  # httpx's ASGI transport re-raises the app's RuntimeError
    clock.advance(601)
    assert jwks.verification_key(kid) is not None
    assert jwks.verification_key("unknown") is None
    assert server.fetches == 2


def test_cached_key_never_fetches(server: JwksServer, clock: ManualClock, keys: KeyManager) -> None:
    jwks = remote(server, clock)
    assert jwks.cached_key(active_kid(keys)) is None
    assert jwks.fetch_due(active_kid(keys))
    assert server.fetches == 0
    assert jwks.refresh() is True
    assert jwks.cached_key(active_kid(keys)) is not None
    assert not jwks.fetch_due(active_kid(keys))


@pytest.mark.parametrize(
    "split",
    [len(b"HTTP/1.1 200 OK\r\n"), -40],
    ids=["headers dripping", "body dripping"],
)
def test_timeout_is_one_deadline_for_the_whole_fetch(
    clock: ManualClock, keys: KeyManager, split: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue #11 item 7: a server sending a byte every 0.5 s held a ``timeout=5`` fetch for
    10.5 s (httpx's timeouts bound each read). Now ``timeout=2`` fails within ~2.5 s and
    the last good set stays in hand (stale-if-error)."""
    good = http_answer(json.dumps(keys.jwks()).encode())
    slow = (good[:split], good[split:][:30], good[split:][30:])  # 15 s of drip, then the rest
    with dripping([(good, b"", b""), slow], interval=0.5) as url:
        jwks = RemoteJwks(url, clock=clock, allow_insecure_loopback=True, timeout=2)
        kid = active_kid(keys)
        assert jwks.verification_key(kid) is not None
        clock.advance(601)
        started = time.monotonic()
        assert jwks.refresh() is True  # failed, but the last good set is kept
        assert time.monotonic() - started <= 2.5
        assert "no complete answer within 2" in caplog.text
        assert jwks.verification_key(kid) is not None
        jwks.close()

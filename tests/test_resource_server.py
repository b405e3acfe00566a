"""SECURITY H5/H6, V3: ``BearerAuthMiddleware`` in front of a Starlette API, through real HTTP
(``httpx.ASGITransport``), against a local ``Tokensmith`` over SQLite or a remote JWKS
served by a real Starlette app. RFC 6750 §3 decides every status and challenge.
"""

from __future__ import annotations

import base64
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.jose_helpers import DROP, ISSUER, NOW, forge_access, make_keys
from tests.jwks_server import JWKS_URL, JwksServer
from tokensmith import ManualClock, Settings, Tokensmith
from tokensmith.errors import ConfigError
from tokensmith.http.remote_jwks import RemoteJwks
from tokensmith.http.resource import BearerAuthMiddleware, BearerGuard
from tokensmith.keys import KeyManager
from tokensmith.tokens import AccessTokenClaims, mint_access_token

API = "https://api.example.com"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def me(request: Request) -> JSONResponse:
    return JSONResponse(request.state.token_claims)


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


def api(guard: BearerGuard, exempt: tuple[str, ...] = ("/health", "/public/*")) -> Starlette:
    return Starlette(
        routes=[
            Route("/me", me),
            Route("/health", health),
            Route("/public/{rest:path}", health),
        ],
        middleware=[Middleware(BearerAuthMiddleware, guard=guard, exempt_paths=exempt)],
    )


async def call(app: Starlette, path: str = "/me", *, token: str | None = None, **h: Any) -> Any:
    headers: Any = dict(h)
    if token is not None:
        headers = {"Authorization": f"Bearer {token}", **h}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=API) as c:
        return await c.get(path, headers=headers)


def challenge(response: httpx.Response) -> str:
    value: str = response.headers["www-authenticate"]
    return value


# -- a local issuer (Tokensmith over SQLite) ----------------------------------------------
def _local(directory: Path) -> Tokensmith:
    settings = Settings(
        issuer=ISSUER,
        database_url=f"sqlite:///{directory}/t.db",
        keys_dir=str(directory / "keys"),
    )
    return Tokensmith(settings, clock=ManualClock(NOW))


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``ts.setup()`` once (migrations, first keys); each test gets a copy of the result."""
    directory = tmp_path_factory.mktemp("issuer")
    _local(directory).setup()
    return directory


@pytest.fixture
def ts(migrated: Path, tmp_path: Path) -> Tokensmith:
    shutil.copytree(migrated, tmp_path / "issuer")
    return _local(tmp_path / "issuer")


@pytest.fixture
def local_app(ts: Tokensmith) -> Starlette:
    return api(BearerGuard(tokensmith=ts, audience="api"))


@pytest.mark.anyio
async def test_a_valid_token_reaches_the_route_with_its_claims(
    ts: Tokensmith, local_app: Starlette
) -> None:
    t = ts.issue(subject="alice", client_id="spa", scope="openid read", audience="api")
    r = await call(local_app, token=t.access_token)
    assert r.status_code == 200
    assert r.json()["sub"] == "alice" and r.json()["client_id"] == "spa"


@pytest.mark.anyio
async def test_a_missing_token_is_401_with_a_bare_challenge(local_app: Starlette) -> None:
    r = await call(local_app)
    assert r.status_code == 401
    assert challenge(r) == 'Bearer realm="api"'  # RFC 6750 §3.1: no error code


@pytest.mark.anyio
async def test_another_scheme_counts_as_no_bearer_token(local_app: Starlette) -> None:
    r = await call(local_app, Authorization="Basic YWxpY2U6c2VjcmV0")
    assert r.status_code == 401
    assert "error=" not in challenge(r)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "header",
    [
        pytest.param("Bearer", id="no credentials"),
        pytest.param("Bearer ", id="blank credentials"),
        pytest.param("Bearer a.b.c extra", id="two tokens"),
        pytest.param('Bearer a"b', id="a quote in the token"),
        pytest.param("Bearer =abc", id="padding first"),
    ],
)
async def test_a_malformed_bearer_header_is_400_invalid_request(
    local_app: Starlette, header: str
) -> None:
    r = await call(local_app, Authorization=header)
    assert r.status_code == 400
    assert 'error="invalid_request"' in challenge(r)


@pytest.mark.anyio
async def test_two_authorization_headers_are_400_invalid_request(
    ts: Tokensmith, local_app: Starlette
) -> None:
    t = ts.issue(subject="alice", client_id="spa", scope="read", audience="api").access_token
    transport = httpx.ASGITransport(app=local_app)
    async with httpx.AsyncClient(transport=transport, base_url=API) as c:
        headers = [("Authorization", f"Bearer {t}"), ("Authorization", f"Bearer {t}")]
        r = await c.get("/me", headers=headers)
    assert r.status_code == 400


@pytest.mark.anyio
async def test_an_expired_token_is_401_invalid_token(ts: Tokensmith, local_app: Starlette) -> None:
    t = ts.issue(subject="alice", client_id="spa", scope="read", audience="api").access_token
    ts.clock.advance(3600)  # type: ignore[attr-defined]
    r = await call(local_app, token=t)
    assert r.status_code == 401
    assert re.fullmatch(
        r'Bearer realm="api", error="invalid_token", error_description="[^"\\]*"', challenge(r)
    )
    assert r.json()["error"] == "invalid_token"


@pytest.mark.anyio
async def test_a_token_for_another_audience_is_401(ts: Tokensmith, local_app: Starlette) -> None:
    t = ts.issue(subject="alice", client_id="spa", scope="read", audience="billing")
    r = await call(local_app, token=t.access_token)
    assert r.status_code == 401 and 'error="invalid_token"' in challenge(r)


@pytest.mark.anyio
async def test_an_id_token_presented_as_bearer_is_401(ts: Tokensmith, local_app: Starlette) -> None:
    t = ts.issue(subject="alice", client_id="api", scope="openid read", audience="api")
    assert t.id_token is not None
    r = await call(local_app, token=t.id_token)
    assert r.status_code == 401 and 'error="invalid_token"' in challenge(r)
    assert 'error_description="wrong token type"' in challenge(r)


@pytest.mark.anyio
async def test_a_refresh_token_presented_as_bearer_is_401(
    ts: Tokensmith, local_app: Starlette
) -> None:
    t = ts.issue(subject="alice", client_id="spa", scope="openid read", audience="api")
    assert t.refresh_token is not None and t.refresh_token.startswith("tsr_")
    r = await call(local_app, token=t.refresh_token)
    assert r.status_code == 401 and 'error="invalid_token"' in challenge(r)


@pytest.mark.anyio
async def test_a_revoked_token_is_401(ts: Tokensmith, local_app: Starlette) -> None:
    t = ts.issue(subject="alice", client_id="spa", scope="openid read", audience="api")
    assert (await call(local_app, token=t.access_token)).status_code == 200
    ts.revoke_subject("alice")
    r = await call(local_app, token=t.access_token)
    assert r.status_code == 401 and 'error_description="token revoked"' in challenge(r)


@pytest.mark.anyio
async def test_missing_scopes_are_403_insufficient_scope(ts: Tokensmith) -> None:
    app = api(BearerGuard(tokensmith=ts, audience="api", scopes=["read", "write"]))
    t = ts.issue(subject="alice", client_id="spa", scope="openid read", audience="api")
    r = await call(app, token=t.access_token)
    assert r.status_code == 403
    assert 'error="insufficient_scope"' in challenge(r)
    assert 'scope="read write"' in challenge(r)
    t = ts.issue(subject="alice", client_id="spa", scope="read write", audience="api")
    assert (await call(app, token=t.access_token)).status_code == 200


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["/health", "/public/docs/index.html"])
async def test_exempt_paths_need_no_token(local_app: Starlette, path: str) -> None:
    assert (await call(local_app, path)).status_code == 200


def test_a_guard_needs_exactly_one_key_source(ts: Tokensmith) -> None:
    with pytest.raises(ConfigError):
        BearerGuard(audience="api")
    with pytest.raises(ConfigError):
        BearerGuard(audience="api", tokensmith=ts, keys=ts.keys, issuer=ISSUER)
    with pytest.raises(ConfigError):
        BearerGuard(audience="api", keys=ts.keys)  # no issuer
    with pytest.raises(ConfigError):
        BearerGuard(audience="", tokensmith=ts)
    with pytest.raises(ConfigError):
        BearerGuard(audience="api", tokensmith=ts, scopes=['bad"scope'])


# -- a remote issuer (RemoteJwks over a real JWKS endpoint) ------------------------------
@pytest.fixture
def issuer_keys(tmp_path: Path, clock: ManualClock) -> KeyManager:
    return make_keys(tmp_path / "issuer", clock)


@pytest.fixture
def jwks_server(issuer_keys: KeyManager) -> JwksServer:
    return JwksServer(issuer_keys.jwks())


@pytest.fixture
def remote_keys(jwks_server: JwksServer, clock: ManualClock) -> RemoteJwks:
    return RemoteJwks(JWKS_URL, clock=clock, client=jwks_server.client())


@pytest.fixture
def remote_app(remote_keys: RemoteJwks, clock: ManualClock) -> Starlette:
    guard = BearerGuard(keys=remote_keys, issuer=ISSUER, clock=clock, audience="api")
    return api(guard)


def mint(keys: KeyManager, clock: ManualClock, scope: str = "read") -> str:
    now = int(clock.now())
    claims = AccessTokenClaims("alice", "spa", "api", scope, now, now + 300, "jti-1", "sid-1")
    return mint_access_token(keys.signer(), ISSUER, claims)


@pytest.mark.anyio
async def test_a_remote_jwks_verifies_tokens_with_one_fetch(
    remote_app: Starlette, issuer_keys: KeyManager, clock: ManualClock, jwks_server: JwksServer
) -> None:
    for _ in range(5):
        assert (await call(remote_app, token=mint(issuer_keys, clock))).status_code == 200
    assert jwks_server.fetches == 1


@pytest.mark.anyio
async def test_a_rotated_key_verifies_after_one_refetch(tmp_path: Path, clock: ManualClock) -> None:
    keys = make_keys(tmp_path / "rotating", clock)
    old = keys.signer().kid
    server = JwksServer({"keys": [k for k in keys.jwks()["keys"] if k["kid"] == old]})
    remote = RemoteJwks(JWKS_URL, clock=clock, client=server.client())
    app = api(BearerGuard(keys=remote, issuer=ISSUER, clock=clock, audience="api"))
    assert (await call(app, token=mint(keys, clock))).status_code == 200
    keys.rotate()
    server.jwks = keys.jwks()
    clock.advance(30)  # past the cooldown since the first fetch
    assert (await call(app, token=mint(keys, clock))).status_code == 200
    assert server.fetches == 2


@pytest.mark.anyio
async def test_random_kids_through_the_middleware_cost_at_most_one_fetch(
    remote_app: Starlette, issuer_keys: KeyManager, jwks_server: JwksServer
) -> None:
    for i in range(200):
        token = forge_access(issuer_keys, header={"kid": f"random-{i}"}, aud="api")
        r = await call(remote_app, token=token)
        assert r.status_code == 401
    assert jwks_server.fetches == 1


@pytest.mark.anyio
@pytest.mark.parametrize(("status", "body"), [(503, None), (200, b"<html>oops</html>")])
async def test_jwks_endpoint_down_keeps_the_last_good_set_and_unknown_kids_get_401(
    remote_app: Starlette,
    issuer_keys: KeyManager,
    clock: ManualClock,
    jwks_server: JwksServer,
    status: int,
    body: bytes | None,
) -> None:
    assert (await call(remote_app, token=mint(issuer_keys, clock))).status_code == 200
    jwks_server.status, jwks_server.raw_body = status, body
    clock.advance(601)
    assert (await call(remote_app, token=mint(issuer_keys, clock))).status_code == 200
    now = int(clock.now())
    unknown = forge_access(issuer_keys, header={"kid": "unknown"}, iat=now, nbf=now, exp=now + 300)
    r = await call(remote_app, token=unknown)
    assert r.status_code == 401 and 'error="invalid_token"' in challenge(r)
    assert 'error_description="unknown kid"' in challenge(r)
    assert jwks_server.fetches == 2  # the stale refetch; the unknown kid is in cooldown


@pytest.mark.anyio
async def test_jwks_endpoint_unreachable_from_the_start_gives_401_not_500(
    issuer_keys: KeyManager, clock: ManualClock, jwks_server: JwksServer
) -> None:
    with jwks_server.live() as url:
        pass  # the port is closed again: connection refused
    remote = RemoteJwks(url, clock=clock, allow_insecure_loopback=True, timeout=2)
    app = api(BearerGuard(keys=remote, issuer=ISSUER, clock=clock, audience="api"))
    r = await call(app, token=mint(issuer_keys, clock))
    assert r.status_code == 401 and 'error_description="unknown kid"' in challenge(r)
    remote.close()


@pytest.mark.anyio
@pytest.mark.parametrize("single", [True, False], ids=["single-key JWKS", "multi-key JWKS"])
async def test_a_token_without_kid_is_rejected_whatever_the_jwks_holds(
    issuer_keys: KeyManager, clock: ManualClock, single: bool
) -> None:
    """OIDF kid-absent-{single,multiple}-jwks. Decision: reject both. Our issuer always
    names its key (RFC 7638 thumbprint), ``JwkSet`` only holds keys with a ``kid``, and
    guessing "the only key" would silently bind a token to whatever a one-key set holds
    during a rotation; a kid-less token is a foreign or forged one."""
    jwks = issuer_keys.jwks()
    if single:
        jwks = {"keys": [k for k in jwks["keys"] if k["kid"] == issuer_keys.signer().kid]}
    server = JwksServer(jwks)
    remote = RemoteJwks(JWKS_URL, clock=clock, client=server.client())
    app = api(BearerGuard(keys=remote, issuer=ISSUER, clock=clock, audience="api"))
    r = await call(app, token=forge_access(issuer_keys, header={"kid": DROP}))
    assert r.status_code == 401 and 'error_description="unknown kid"' in challenge(r)
    with_kid = forge_access(issuer_keys)  # the same token with its kid verifies
    assert (await call(app, token=with_kid)).status_code == 200


@pytest.mark.anyio
async def test_a_local_key_set_works_without_a_tokensmith(
    issuer_keys: KeyManager, clock: ManualClock
) -> None:
    app = api(BearerGuard(keys=issuer_keys, issuer=ISSUER, clock=clock, audience="api"))
    assert (await call(app, token=mint(issuer_keys, clock))).status_code == 200


# -- H6: hypothesis over the three segments never yields a 500 ---------------------------
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=8,
)
_HEADERS = st.fixed_dictionaries(
    {},
    optional={
        "alg": st.sampled_from(["ES256", "none", "HS256", "EdDSA", "RS256"]) | st.text(),
        "kid": st.text(max_size=20) | _JSONISH,
        "typ": st.sampled_from(["at+jwt", "JWT"]) | _JSONISH,
        "crit": _JSONISH,
    },
)
_SEGMENT = st.one_of(
    st.binary(max_size=64).map(_b64),
    _HEADERS.map(lambda h: _b64(repr(h).replace("'", '"').encode())),
    st.text(alphabet="ABCxyz019-_=+/.~", max_size=40),
    st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
)


@pytest.fixture(scope="module")
def fuzz_app(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Starlette, str, BlockingPortal]]:
    clock = ManualClock(NOW)
    keys = make_keys(tmp_path_factory.mktemp("fuzz"), clock)
    server = JwksServer(keys.jwks())
    remote = RemoteJwks(JWKS_URL, clock=clock, client=server.client())
    app = api(BearerGuard(keys=remote, issuer=ISSUER, clock=clock, audience="api"))
    with start_blocking_portal("asyncio") as portal:  # one event loop for every example
        yield app, mint(keys, clock), portal


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(header=_SEGMENT, payload=_SEGMENT, signature=_SEGMENT, which=st.integers(0, 3))
def test_fuzzed_segments_never_yield_a_500(
    fuzz_app: tuple[Starlette, str, BlockingPortal],
    header: str,
    payload: str,
    signature: str,
    which: int,
) -> None:
    app, valid, portal = fuzz_app
    parts = [header, payload, signature]
    if which < 3:  # splice one fuzzed segment into a valid token
        parts = valid.split(".")
        parts[which] = (header, payload, signature)[which]
    value = ("Bearer " + ".".join(parts)).encode("latin-1")

    async def go() -> int:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=API) as c:
            r = await c.get("/me", headers=[(b"Authorization", value)])
            return r.status_code

    assert portal.call(go) in (400, 401)


# -- the event loop never waits on a fetch -----------------------------------------------
@pytest.mark.anyio
async def test_a_due_fetch_runs_in_the_thread_pool_not_on_the_event_loop(
    remote_app: Starlette, issuer_keys: KeyManager, clock: ManualClock, jwks_server: JwksServer
) -> None:
    loop_thread = threading.get_ident()
    assert (await call(remote_app, token=mint(issuer_keys, clock))).status_code == 200
    clock.advance(601)
    assert (await call(remote_app, token=mint(issuer_keys, clock))).status_code == 200
    assert jwks_server.fetches == 2
    assert loop_thread not in jwks_server.threads


# -- WebSocket handshakes ----------------------------------------------------------------
@pytest.mark.anyio
@pytest.mark.parametrize("with_token", [False, True])
async def test_a_websocket_handshake_without_a_valid_token_is_closed(
    remote_app: Starlette, issuer_keys: KeyManager, clock: ManualClock, with_token: bool
) -> None:
    reached: list[dict[str, Any]] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["state"]["token_claims"])

    guard = BearerGuard(keys=issuer_keys, issuer=ISSUER, clock=clock, audience="api")
    middleware = BearerAuthMiddleware(inner, guard=guard)
    headers = [(b"authorization", f"Bearer {mint(issuer_keys, clock)}".encode())]
    scope = {"type": "websocket", "path": "/ws", "headers": headers if with_token else []}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await middleware(scope, receive, send)
    if with_token:
        assert reached and reached[0]["sub"] == "alice" and not sent
    else:
        assert sent == [{"type": "websocket.close", "code": 1008, "reason": ""}] and not reached


# -- the documented examples run as written ----------------------------------------------
DOC = Path(__file__).resolve().parent.parent / "docs" / "resource-server.md"


def _doc_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text("utf-8"), flags=re.S)


@pytest.mark.anyio
@pytest.mark.parametrize("index", range(len(_doc_blocks())))
async def test_the_documented_examples_build_apps_that_demand_a_token(
    index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {}
    exec(compile(_doc_blocks()[index], f"resource-server.md block {index}", "exec"), namespace)
    r = await call(namespace["app"], "/items" if "FastAPI" in _doc_blocks()[index] else "/me")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer realm="api"'


def test_the_middleware_takes_a_guard_or_its_options_not_both(ts: Tokensmith) -> None:
    guard = BearerGuard(tokensmith=ts, audience="api")
    with pytest.raises(TypeError):
        BearerAuthMiddleware(health, guard=guard, audience="other")
    built = BearerAuthMiddleware(health, tokensmith=ts, audience="api", scopes="read write")
    assert built.guard.scopes == ("read", "write")

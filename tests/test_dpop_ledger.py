"""The shared DPoP replay ledger across instances that do not agree on everything (an
outside attack on live servers found each of these): instances with different
``dpop_iat_window``, a cleanup by an instance whose clock runs ahead, a ``jti`` that is a
lone surrogate, and a guard whose proof write must not stall the event loop (SECURITY D1)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tokensmith import ManualClock, Tokensmith
from tokensmith.errors import InvalidDPoPProof
from tokensmith.http import BearerAuthMiddleware, BearerGuard
from tokensmith.keys.algorithms import ALGORITHMS
from tokensmith.keys.jwk import public_members
from tokensmith.settings import MAX_LEEWAY
from tokensmith.tokens.jws import b64encode

from .conftest import make_tokensmith
from .dpop_helpers import DPoPKey

T0 = 1_800_000_000.0
ISSUER = "https://as.example.com"
TOKEN_URL = f"{ISSUER}/token"


def instance(tmp_path: Path, clock: ManualClock, window: int = 60) -> Tokensmith:
    """One instance on the shared database and keys in ``tmp_path``."""
    return make_tokensmith(tmp_path, clock, issuer=ISSUER, dpop_iat_window=window)


def spend(ts: Tokensmith, proof: str) -> None:
    ts.issue_client_token(client_id="svc", dpop_proof=proof)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def first(tmp_path: Path, clock: ManualClock) -> Tokensmith:
    ts = instance(tmp_path, clock)
    ts.register_client("svc", confidential=True, grant_types=("client_credentials",))
    return ts


def test_a_proof_spent_at_one_window_is_refused_at_an_instance_with_another(
    tmp_path: Path, clock: ManualClock, first: Tokensmith
) -> None:
    other = instance(tmp_path, clock, window=120)
    key = DPoPKey()
    for spender, replayer in ((first, other), (other, first)):
        proof = key.proof(TOKEN_URL, iat=T0 - 30)
        spend(spender, proof)
        with pytest.raises(InvalidDPoPProof, match="replayed"):
            spend(replayer, proof)


def test_cleanup_by_a_clock_that_runs_ahead_keeps_proofs_others_still_accept(
    tmp_path: Path, clock: ManualClock, first: Tokensmith
) -> None:
    ahead = instance(tmp_path, ManualClock(T0 + MAX_LEEWAY - 10))
    proof = DPoPKey().proof(TOKEN_URL, iat=T0 - 55)
    spend(first, proof)
    clock.advance(4)  # still inside the 60 s window here...
    ahead.cleanup()  # ...and long past it for the instance whose clock runs ahead
    with pytest.raises(InvalidDPoPProof, match="replayed"):
        spend(first, proof)
    clock.advance(60 + MAX_LEEWAY)
    first.cleanup()
    with sqlite3.connect(tmp_path / "ts.db") as db:
        assert db.execute("SELECT count(*) FROM ts_dpop_proofs").fetchone() == (0,)


def test_a_lone_surrogate_jti_is_a_proof_like_any_other(first: Tokensmith) -> None:
    """JSON may carry ``"\\ud800"``; it was a 500 where the replay key was computed."""
    private = ec.generate_private_key(ec.SECP256R1())
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": public_members(private.public_key())}
    claims = {"jti": "\ud800", "htm": "POST", "htu": TOKEN_URL, "iat": T0}
    signing_input = ".".join(b64encode(json.dumps(part).encode()) for part in (header, claims))
    signature = ALGORITHMS["ES256"].jws.sign(signing_input.encode(), private)
    proof = f"{signing_input}.{b64encode(signature)}"
    spend(first, proof)
    with pytest.raises(InvalidDPoPProof, match="replayed"):
        spend(first, proof)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_a_guard_that_shares_proofs_writes_them_off_the_event_loop(
    tmp_path: Path, clock: ManualClock, first: Tokensmith
) -> None:
    """While the database is locked, the proof write waits in a worker thread, and the
    app's other requests are answered meanwhile."""
    key = DPoPKey()
    token = first.issue(subject="alice", client_id="svc", audience="api", dpop_jkt=key.jkt)
    guard = BearerGuard(tokensmith=first, audience="api", share_proofs=True)

    async def ok(_request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(
        routes=[Route("/items", ok), Route("/health", ok)],
        middleware=[Middleware(BearerAuthMiddleware, guard=guard, exempt_paths=["/health"])],
    )
    locked, release = threading.Event(), threading.Event()

    def hold_the_write_lock() -> None:
        with sqlite3.connect(tmp_path / "ts.db", isolation_level=None) as db:
            db.execute("BEGIN IMMEDIATE")
            locked.set()
            release.wait(10)
            db.execute("ROLLBACK")

    holder = threading.Thread(target=hold_the_write_lock)
    holder.start()
    assert locked.wait(10)
    headers = {
        "Authorization": f"DPoP {token.access_token}",
        "DPoP": key.proof("http://api/items", htm="GET", iat=T0, access_token=token.access_token),
    }
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            guarded = asyncio.create_task(http.get("/items", headers=headers))
            await asyncio.sleep(0.2)  # the guarded request is waiting for the lock
            started = time.monotonic()
            assert (await http.get("/health")).status_code == 200
            assert time.monotonic() - started < 0.5
            assert not guarded.done()
            release.set()
            assert (await guarded).status_code == 200
    finally:
        release.set()
        holder.join(10)

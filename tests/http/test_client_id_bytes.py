"""A ``client_id`` no client can have (a NUL or another control character) is an unknown
client at every client-authenticated endpoint, on every store: PostgreSQL refuses a NUL in
a text parameter, which was a 500 and a logged traceback for anyone who sent one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tokensmith import ManualClock, Settings, Tokensmith
from tokensmith.http import create_app

from .conftest import ISSUER, T0, basic_auth

pytestmark = pytest.mark.anyio

HOSTILE = ["a\x00b", "backend\x00", "a\x01b", "a\nb"]


@pytest.fixture
async def http(database_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    ts = Tokensmith(
        Settings(issuer=ISSUER, database_url=database_url, keys_dir=str(tmp_path / "keys")),
        clock=ManualClock(T0),
    )
    ts.setup()
    ts.register_client("backend", confidential=True)
    transport = httpx.ASGITransport(app=create_app(ts))
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as client:
        yield client
    engine = getattr(ts.sessions.store, "engine", None)
    if engine is not None:
        engine.dispose()


@pytest.mark.parametrize("client_id", HOSTILE)
@pytest.mark.parametrize(
    ("path", "form"),
    [
        ("/token", {"grant_type": "refresh_token", "refresh_token": "x"}),
        ("/token", {"grant_type": "client_credentials"}),
        ("/revoke", {"token": "x"}),
        ("/introspect", {"token": "x"}),
    ],
)
async def test_a_control_character_in_a_form_client_id_is_an_unknown_client(
    http: httpx.AsyncClient, client_id: str, path: str, form: dict[str, str]
) -> None:
    response = await http.post(path, data={**form, "client_id": client_id})
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"


@pytest.mark.parametrize("client_id", HOSTILE)
async def test_a_control_character_in_a_basic_client_id_is_an_unknown_client(
    http: httpx.AsyncClient, client_id: str
) -> None:
    response = await http.post(
        "/token", data={"grant_type": "client_credentials"}, headers=basic_auth(client_id, "s")
    )
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"
    response = await http.get("/revocations", headers=basic_auth(client_id, "s"))
    assert response.status_code == 401, response.text

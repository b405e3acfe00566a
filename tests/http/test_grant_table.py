"""Grants as a table (issue #12 item 6): ``tokensmith.grants.GRANTS`` is the one source
that the token endpoint dispatches on, discovery advertises and client validation accepts;
``tokensmith.http.grants.HANDLERS`` has exactly one handler per row."""

from __future__ import annotations

import dataclasses

import pytest

from tests.http.conftest import Env
from tokensmith.clients import Client, validated
from tokensmith.errors import InvalidRequest
from tokensmith.grants import GRANTS
from tokensmith.http.grants import HANDLERS

pytestmark = pytest.mark.anyio


def test_every_grant_row_has_exactly_one_handler() -> None:
    assert list(HANDLERS) == list(GRANTS)


@pytest.mark.parametrize("name", list(GRANTS))
def test_client_validation_applies_each_rows_client_rule(name: str) -> None:
    confidential = Client("backend", confidential=True, grant_types=(name,))
    assert validated(confidential) is confidential
    public = dataclasses.replace(confidential, confidential=False)
    if GRANTS[name].confidential_only:
        with pytest.raises(InvalidRequest, match="confidential"):
            validated(public)
    else:
        assert validated(public) is public


async def test_dispatch_discovery_and_validation_all_follow_the_table(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dropping one row from the table (nothing else) withdraws the grant everywhere: no
    reader keeps a list of its own."""
    data = {"grant_type": "client_credentials", "scope": "read"}
    assert (await env.http.post("/token", data=data, headers=env.basic("backend"))).is_success

    monkeypatch.delitem(GRANTS, "client_credentials")

    r = await env.http.get("/.well-known/openid-configuration")
    assert r.json()["grant_types_supported"] == ["refresh_token"]
    with pytest.raises(InvalidRequest, match="unsupported grant types: client_credentials"):
        validated(Client("backend", confidential=True, grant_types=("client_credentials",)))
    r = await env.http.post("/token", data=data, headers=env.basic("backend"))
    assert (r.status_code, r.json()["error"]) == (400, "unsupported_grant_type")


def test_a_grant_row_without_a_handler_of_its_name_fails_at_import(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tokensmith.grants import GrantType
    from tokensmith.http import grants

    monkeypatch.setitem(GRANTS, "device_code", GrantType("device_code"))
    with pytest.raises(ImportError, match="device_code"):
        grants._handlers()

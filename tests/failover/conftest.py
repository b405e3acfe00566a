"""A fresh PostgreSQL schema per test, as ``tests/refresh/conftest.py`` makes them, and the
connection-cutting proxy in front of that PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from sqlalchemy import make_url

from tests.failover.cutter import Cutter
from tests.refresh.conftest import _pg_backend

PG_URL = os.environ.get("TOKENSMITH_TEST_PG_URL")


@pytest.fixture
def schema() -> Iterator[str]:
    """The schema's name (skips without ``TOKENSMITH_TEST_PG_URL``)."""
    for backend in _pg_backend():
        yield backend.connect_args["options"].removeprefix("-csearch_path=")


@pytest.fixture
def cutter() -> Iterator[Cutter]:
    url = make_url(PG_URL or "")
    proxy = Cutter(url.host or "127.0.0.1", url.port or 5432)
    yield proxy
    proxy.release()  # a held cut a failed test left behind
    proxy.close()


def via(port: int, schema: str) -> str:
    """The test database's URL on ``port`` (the cutter's, or the server's own), in ``schema``."""
    url = make_url(PG_URL or "")
    return (
        f"postgresql+psycopg://{url.username}@127.0.0.1:{port}/{url.database}"
        f"?options={quote(f'-csearch_path={schema}')}"
    )

"""A fresh PostgreSQL schema per test, as ``tests/refresh/conftest.py`` makes them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.refresh.conftest import _pg_backend


@pytest.fixture
def schema() -> Iterator[str]:
    """The schema's name (skips without ``TOKENSMITH_TEST_PG_URL``)."""
    for backend in _pg_backend():
        yield backend.connect_args["options"].removeprefix("-csearch_path=")

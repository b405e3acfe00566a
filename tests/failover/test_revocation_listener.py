"""The revocation listener (``store/sql/notify.py``) on the reference deployment's URL: a
multi-host URL with ``target_session_attrs=read-write`` (README "High availability"). It
must connect as the store does, to whichever host is the primary, or revocations reach the
other instances only at the polling interval."""

from __future__ import annotations

import socket
import time

import pytest
from sqlalchemy import create_engine, make_url, text

from tests.failover.conftest import PG_URL
from tokensmith.store.sql import SqlStore, create_store_engine
from tokensmith.store.sql.statements import NOTIFY_CHANNEL

pytestmark = pytest.mark.postgres


def _refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_listener_connects_through_a_multi_host_url_and_hears_a_notify(schema: str) -> None:
    url = make_url(PG_URL or "")
    # The first host is gone (a dead primary); the second is the live one.
    hosts = f"host=127.0.0.1:{_refused_port()}&host=127.0.0.1:{url.port or 5432}"
    store = SqlStore(
        create_store_engine(
            f"postgresql+psycopg://{url.username}@/{url.database}?{hosts}"
            "&target_session_attrs=read-write"
        )
    )
    signal = store.change_signal()
    assert signal is not None
    notifier = create_engine(PG_URL or "", isolation_level="AUTOCOMMIT")
    try:
        deadline = time.monotonic() + 10
        while not signal.live:
            assert time.monotonic() < deadline, "the listener never connected"
            signal.wait(0.2)
        with notifier.connect() as conn:
            conn.execute(text(f"NOTIFY {NOTIFY_CHANNEL}, '1'"))
        started = time.monotonic()
        signal.wait(30)
        assert time.monotonic() - started < 10, "the NOTIFY never woke the listener"
        assert signal.live
    finally:
        signal.close()
        notifier.dispose()
        store.engine.dispose()

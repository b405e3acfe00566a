"""Process entry points for the SQL key store's multi-process tests.

``multiprocessing`` spawn imports this module in every child, so it imports only what a
worker needs (no pytest, no fixtures) and takes the database as a URL and connect args.
"""

from __future__ import annotations

from typing import Any

from tokensmith.clock import ManualClock
from tokensmith.events import EventBus
from tokensmith.keys import KeyManager
from tokensmith.settings import Settings
from tokensmith.store.sql import SqlKeyStore, create_store_engine

ISSUER = "https://as.example.com"
PASSPHRASE = "correct horse battery staple"


def _manager(url: str, connect_args: dict[str, Any], now: float) -> KeyManager:
    store = SqlKeyStore(create_store_engine(url, connect_args=connect_args), PASSPHRASE)
    return KeyManager(store, Settings(issuer=ISSUER), ManualClock(now), EventBus())


def rotate_many(url: str, connect_args: dict[str, Any], now: float, times: int) -> None:
    km = _manager(url, connect_args, now)
    try:
        for _ in range(times):
            km.rotate()
    finally:
        km.store.engine.dispose()  # type: ignore[attr-defined]


def tick_together(
    url: str, connect_args: dict[str, Any], now: float, barrier: Any, results: Any
) -> None:
    """Connect and derive the sealing key first, line up with the others, then tick once."""
    km = _manager(url, connect_args, now)
    try:
        km.signer()
        barrier.wait(60)
        results.put(km.tick())
    finally:
        km.store.engine.dispose()  # type: ignore[attr-defined]

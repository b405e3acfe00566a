"""Process entry points for the multi-process tests (``multiprocessing`` spawn imports them)."""

from __future__ import annotations

import os
from typing import Any

from tokensmith.clock import ManualClock
from tokensmith.errors import InvalidGrant, TemporarilyUnavailable
from tokensmith.events import EventBus
from tokensmith.refresh.service import RefreshService
from tokensmith.settings import Settings

from .conftest import ISSUER, Backend


def _service(backend: Backend, clock: ManualClock, grace: float) -> RefreshService:
    settings = Settings(
        issuer=ISSUER,
        refresh_reuse_grace=grace,
        refresh_grace_retries=64,
        refresh_secret="shared by the worker processes",
    )
    return RefreshService(backend.store(), settings=settings, clock=clock, events=EventBus())


def rotate_once(
    backend: Backend, token: str, at: float, grace: float, barrier: Any, results: Any, n: int
) -> None:
    """Line up with the other processes, then present ``token`` once."""
    service = _service(backend, ManualClock(at), grace)
    outcome: tuple[str, str | None]
    try:
        barrier.wait(timeout=60)
        try:
            pending = service.rotate(
                token, client_id="spa", scope=None, access_jti=f"proc-{n}", access_exp=int(at) + 300
            )
            pending.durable()
            outcome = ("ok", pending.session.refresh_token)
        except InvalidGrant as exc:
            outcome = (type(exc).__name__, None)
        except TemporarilyUnavailable:
            outcome = ("TemporarilyUnavailable", None)
    finally:
        service.store.engine.dispose()  # type: ignore[attr-defined]
    results.put(outcome)


def rotate_forever(backend: Backend, token: str, at: float, progress: Any) -> None:
    """Rotate one chain until killed (bounded, in case nobody kills us)."""
    clock = ManualClock(at)
    service = _service(backend, clock, 0.0)
    for n in range(1_000_000):
        clock.advance(1)
        pending = service.rotate(
            token,
            client_id="spa",
            scope=None,
            access_jti=f"loop-{os.getpid()}-{n}",
            access_exp=1,
        )
        pending.durable()
        token = pending.session.refresh_token or ""
        progress.value = n + 1

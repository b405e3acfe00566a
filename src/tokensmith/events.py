"""Events (``issued``, ``rotated``, ``refresh_conflict``, ``reuse_detected``,
``family_revoked``, ``subject_revoked``, ``key_rotated``).

Each event goes to the ``tokensmith.events`` logger as a structured record and to every
registered hook. Payloads carry ids (family, jti hash prefixes, kid), never a token or a
secret. A failing hook is logged and never breaks the operation that emitted the event.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

logger = logging.getLogger("tokensmith.events")

EVENT_NAMES = frozenset(
    {
        "issued",
        "rotated",
        "refresh_conflict",
        "reuse_detected",
        "family_revoked",
        "subject_revoked",
        "key_rotated",
    }
)


@dataclass(frozen=True)
class Event:
    name: str
    at: float
    data: Mapping[str, Any] = field(default_factory=dict)


Hook = Callable[[Event], None]


class EventBus:
    def __init__(self) -> None:
        self._hooks: list[Hook] = []
        self._lock = threading.Lock()

    def register(self, hook: Hook) -> Hook:
        """Add a hook; usable as a decorator. Returns the hook for ``unregister``."""
        with self._lock:
            self._hooks = [*self._hooks, hook]
        return hook

    def unregister(self, hook: Hook) -> None:
        with self._lock:
            self._hooks = [h for h in self._hooks if h is not hook]

    def emit(self, name: str, at: float, **data: Any) -> None:
        if name not in EVENT_NAMES:
            raise ValueError(f"unknown event {name!r}")
        # Every refresh emits one: build the log record and the event only for a listener.
        level = logging.WARNING if name == "reuse_detected" else logging.INFO
        if logger.isEnabledFor(level):
            logger.log(level, "%s", name, extra={"event": name, "event_data": dict(data)})
        hooks = self._hooks
        if not hooks:
            return
        event = Event(name, at, MappingProxyType(data))
        for hook in hooks:
            try:
                hook(event)
            except Exception:
                logger.exception("event hook %r failed on %s", hook, name)

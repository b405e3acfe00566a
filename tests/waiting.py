"""Waiting for something another thread or process does, bounded in time."""

from __future__ import annotations

import time
from collections.abc import Callable


def eventually(predicate: Callable[[], bool], *, within: float, step: float = 0.005) -> bool:
    """Whether ``predicate`` became true within ``within`` seconds of wall-clock time."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)
    return True
